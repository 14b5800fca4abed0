//! Applying a layer to a directory: OCI whiteouts and opaque directories, hard links, symlinks, devices,
//! xattrs (file capabilities survive), setuid/setgid bits, ownership and times.
//!
//! The directory is a tree kiln does not own while a hostile layer is written into it, so every entry goes
//! through [`crate::confine`] (by way of `place.rs`): its name is cleaned (`..` clamped, a leading `/`
//! dropped), its parent directory is resolved — and created — *inside* the root, symlinks already on disk
//! followed there, and the entry itself is created, replaced or removed through that directory's
//! descriptor, one name at a time. A hard link's target is resolved inside the root too. No entry, whatever
//! its name, its type or the links before it, can touch anything outside the root.
//!
//! With a [`Donor`] (an earlier snapshot), files it already holds identically are hard-linked from it
//! instead of written: what a new snapshot costs is what changed.

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;

use super::compress::decompress;
use super::error::LayerError;
use super::place::{Content, Donor, Item, ItemKind, Placed, Placer};
use crate::confine::{self, Kind};

/// How to apply a layer.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Interpret `.wh.` entries (layers); off for plain archives (ADD).
    pub whiteouts: bool,
    /// Change ownership to the tar's uid/gid (needs root, or a user namespace that maps them).
    pub chown: bool,
}

impl ApplyOptions {
    /// Layer semantics; ownership applied when this process runs as root.
    pub fn for_current_user() -> ApplyOptions {
        ApplyOptions { whiteouts: true, chown: nix::unistd::geteuid().is_root() }
    }
}

/// What applying did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Entries created or replaced.
    pub entries: usize,
    /// Entries removed by whiteouts.
    pub whiteouts: usize,
    /// Entries that could not be given their owner or an xattr (no privilege) and were kept as far as possible.
    pub degraded: usize,
    /// Entries left out because this process may not create them (device nodes without privilege).
    pub dropped: Vec<String>,
}

/// Applies a (possibly compressed) layer tar to `root`.
pub fn apply_layer<R: Read>(reader: R, root: &Path, opts: &ApplyOptions) -> Result<ApplyStats, LayerError> {
    Ok(apply_layer_sharing(reader, root, opts, None)?.stats)
}

/// Applies a layer tar to `root`, hard-linking from `donor` the files it already holds identically.
pub fn apply_layer_sharing<R: Read>(
    reader: R,
    root: &Path,
    opts: &ApplyOptions,
    donor: Option<Donor>,
) -> Result<Placed, LayerError> {
    let stream = decompress(reader).map_err(LayerError::Tar)?;
    let mut archive = tar::Archive::new(stream);
    let mut placer = Placer::new(root, opts, donor)?;
    for entry in archive.entries().map_err(LayerError::Tar)? {
        let mut entry = entry.map_err(LayerError::Tar)?;
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut parts = confine::components(&raw_name);
        let Some(base) = parts.pop() else { continue };
        let parent = parts.join("/");
        if opts.whiteouts && base.starts_with(".wh.") {
            whiteout(&mut placer, &parent, &base, &raw_name)?;
            continue;
        }
        place(&mut placer, &mut entry, &raw_name)?;
    }
    Ok(placer.finish())
}

/// Extracts a plain (possibly compressed) tar archive into `dest` with the same safety, no whiteouts,
/// ownership only when running as root. For ADD of local archives.
pub fn extract_archive<R: Read>(reader: R, dest: &Path) -> Result<ApplyStats, LayerError> {
    let opts = ApplyOptions { whiteouts: false, chown: nix::unistd::geteuid().is_root() };
    apply_layer(reader, dest, &opts)
}

fn whiteout(placer: &mut Placer, parent: &str, base: &str, raw: &str) -> Result<(), LayerError> {
    if base == ".wh..wh..opq" {
        return placer.opaque(parent, raw);
    }
    let name = &base[".wh.".len()..];
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(LayerError::Escape { path: raw.to_string(), reason: "invalid whiteout name".into() });
    }
    placer.whiteout(parent, name, raw)
}

fn place<R: Read>(placer: &mut Placer, entry: &mut tar::Entry<'_, R>, raw: &str) -> Result<(), LayerError> {
    let header = entry.header().clone();
    let link = entry.link_name().map_err(LayerError::Tar)?.map(|l| l.into_owned());
    let link_text = link.as_ref().map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
    let kind = match header.entry_type() {
        tar::EntryType::Directory => ItemKind::Dir,
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => ItemKind::File,
        tar::EntryType::Symlink => ItemKind::Symlink(link.as_deref().map_or(OsStr::new(""), |l| l.as_os_str())),
        tar::EntryType::Link => ItemKind::Hardlink(&link_text),
        node @ (tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo) => {
            let kind = match node {
                tar::EntryType::Char => Kind::CharDevice,
                tar::EntryType::Block => Kind::BlockDevice,
                _ => Kind::Fifo,
            };
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            ItemKind::Node(kind, (major, minor))
        }
        tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => return Ok(()),
        other => {
            return Err(LayerError::BadEntry {
                path: raw.to_string(),
                reason: format!("unsupported tar entry type {other:?}"),
            });
        }
    };
    let xattrs = xattrs(entry);
    let item = Item {
        raw,
        kind,
        mode: header.mode().unwrap_or(0o644) & 0o7777,
        uid: header.uid().unwrap_or(0) as u32,
        gid: header.gid().unwrap_or(0) as u32,
        mtime: header.mtime().unwrap_or(0) as i64,
        xattrs: &xattrs,
    };
    if matches!(kind, ItemKind::File) {
        let len = entry.size();
        placer.place(&item, Some(Content { reader: entry, len, digest: None }))
    } else {
        placer.place(&item, None)
    }
}

/// The entry's `SCHILY.xattr.*` PAX records, sorted.
fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
    let Ok(Some(pax)) = entry.pax_extensions() else { return Vec::new() };
    let mut out: Vec<(String, Vec<u8>)> = pax
        .flatten()
        .filter_map(|ext| {
            let key = ext.key().ok()?.strip_prefix("SCHILY.xattr.")?.to_string();
            Some((key, ext.value_bytes().to_vec()))
        })
        .filter(|(key, _)| !key.is_empty())
        .collect();
    out.sort();
    out
}
