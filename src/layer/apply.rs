//! Applying a layer to a directory: OCI whiteouts and opaque directories, hard links, symlinks, devices,
//! xattrs (file capabilities survive), setuid/setgid bits, ownership and times.
//!
//! The directory is a tree kiln does not own while a hostile layer is written into it, so every entry goes
//! through [`crate::confine`]: its name is cleaned (`..` clamped, a leading `/` dropped), its parent
//! directory is resolved — and created — *inside* the root, symlinks already on disk followed there, and
//! the entry itself is created, replaced or removed through that directory's descriptor, one name at a
//! time. A hard link's target is resolved inside the root too. No entry, whatever its name, its type or the
//! links before it, can touch anything outside the root.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::Path;

use super::compress::decompress;
use super::error::{LayerError, io};
use crate::confine::{self, Dir, Kind, Root};

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

/// `(device, inode)` of a directory and a name in it: what this layer created, which an opaque marker
/// later in the same layer must keep.
type Created = HashSet<(u64, u64, OsString)>;

/// Applies a (possibly compressed) layer tar to `root`.
pub fn apply_layer<R: Read>(reader: R, root: &Path, opts: &ApplyOptions) -> Result<ApplyStats, LayerError> {
    let stream = decompress(reader).map_err(LayerError::Tar)?;
    let tree = Root::open(root).map_err(io("open", root))?;
    let mut archive = tar::Archive::new(stream);
    let mut stats = ApplyStats::default();
    let mut created = Created::new();
    let mut dir_times: Vec<(String, i64)> = Vec::new();
    let mut last: Option<Parent> = None;
    for entry in archive.entries().map_err(LayerError::Tar)? {
        let mut entry = entry.map_err(LayerError::Tar)?;
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut parts = confine::components(&raw_name);
        let Some(base) = parts.pop() else { continue };
        let parent = parts.join("/");
        let dir = match last.take() {
            Some(cached) if cached.path == parent => cached,
            _ => Parent::resolve(&tree, parent.clone(), &raw_name)?,
        };
        if opts.whiteouts && base.starts_with(".wh.") {
            apply_whiteout(&dir.dir, &base, &created, &raw_name)?;
            stats.whiteouts += 1;
            // Something was removed: the next entry resolves its parent afresh.
            continue;
        }
        let name = OsStr::new(&base);
        let replaced = place(&mut entry, &tree, &dir.dir, name, opts, &raw_name, &mut stats)?;
        created.insert((dir.dev, dir.ino, name.to_os_string()));
        if entry.header().entry_type().is_dir() {
            let path = if parent.is_empty() { base.clone() } else { format!("{parent}/{base}") };
            dir_times.push((path, entry.header().mtime().unwrap_or(0) as i64));
        }
        stats.entries += 1;
        // Consecutive entries of one directory reuse its descriptor, until something is replaced: a
        // replacement can change what a path resolves to, so the next entry resolves its parent afresh.
        if !replaced {
            last = Some(dir);
        }
    }
    // Directory times last: creating children changed them.
    for (path, mtime) in dir_times.into_iter().rev() {
        let mut parts = confine::components(&path);
        if let Some(name) = parts.pop()
            && let Ok(dir) = tree.dir(&parts.join("/"))
        {
            let _ = dir.set_mtime(OsStr::new(&name), mtime);
        }
    }
    Ok(stats)
}

/// Extracts a plain (possibly compressed) tar archive into `dest` with the same safety, no whiteouts,
/// ownership only when running as root. For ADD of local archives.
pub fn extract_archive<R: Read>(reader: R, dest: &Path) -> Result<ApplyStats, LayerError> {
    let opts = ApplyOptions { whiteouts: false, chown: nix::unistd::geteuid().is_root() };
    apply_layer(reader, dest, &opts)
}

/// The directory entries are being placed in: its lexical path in the layer, its descriptor (resolved and
/// created inside the root) and its identity for opaque markers.
struct Parent {
    path: String,
    dir: Dir,
    dev: u64,
    ino: u64,
}

impl Parent {
    fn resolve(tree: &Root, path: String, raw: &str) -> Result<Parent, LayerError> {
        let dir = tree.mkdir_all(&path, 0o755).map_err(at(raw, "create its parent directory"))?;
        let meta = dir.meta().map_err(at(raw, "stat its parent directory"))?;
        Ok(Parent { path, dir, dev: meta.dev(), ino: meta.ino() })
    }
}

/// An error while applying the entry `raw`, doing `what`.
fn at(raw: &str, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LayerError {
    let (path, what) = (raw.to_string(), what.into());
    move |source| LayerError::Entry { path, what, source }
}

fn apply_whiteout(dir: &Dir, base: &str, created: &Created, raw: &str) -> Result<(), LayerError> {
    if base == ".wh..wh..opq" {
        let here = dir.meta().map_err(at(raw, "stat the opaque directory"))?;
        for name in dir.names().map_err(at(raw, "list the opaque directory"))? {
            if !created.contains(&(here.dev(), here.ino(), name.clone())) {
                dir.remove_all(&name).map_err(at(raw, format!("remove {}", name.to_string_lossy())))?;
            }
        }
        return Ok(());
    }
    let name = &base[".wh.".len()..];
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(LayerError::Escape { path: raw.to_string(), reason: "invalid whiteout name".into() });
    }
    match dir.remove_all(OsStr::new(name)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(at(raw, "remove the whited-out path")),
    }
}

/// Creates the entry `name` in `dir`; true when it replaced something that was there.
fn place<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    root: &Root,
    dir: &Dir,
    name: &OsStr,
    opts: &ApplyOptions,
    raw: &str,
    stats: &mut ApplyStats,
) -> Result<bool, LayerError> {
    let header = entry.header().clone();
    let kind = header.entry_type();
    let existing = dir.try_lstat(name).map_err(at(raw, "inspect what is there"))?;
    // Never write through what is already there: replace it, except a directory staying a directory.
    let replaced = existing.as_ref().is_some_and(|m| !(m.is_dir() && kind.is_dir()));
    if replaced {
        dir.remove_all(name).map_err(at(raw, "replace what is there"))?;
    }
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    match kind {
        tar::EntryType::Directory => {
            if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                dir.create_dir(name, 0o700).map_err(at(raw, "create the directory"))?;
            }
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            let mut file = dir.create_file(name, 0o600).map_err(at(raw, "create the file"))?;
            std::io::copy(entry, &mut file).map_err(at(raw, "write the file"))?;
            return finish_file(entry, &file, mode, opts, stats, raw).map(|()| replaced);
        }
        tar::EntryType::Symlink => {
            let link = entry.link_name().map_err(LayerError::Tar)?.unwrap_or_default().into_owned();
            dir.symlink(name, link.as_os_str()).map_err(at(raw, "create the symlink"))?;
        }
        tar::EntryType::Link => return hard_link(entry, root, dir, name, raw).map(|()| replaced),
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let node = match kind {
                tar::EntryType::Char => Kind::CharDevice,
                tar::EntryType::Block => Kind::BlockDevice,
                _ => Kind::Fifo,
            };
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            if dir.mknod(name, node, 0o600, (major, minor)).is_err() {
                stats.degraded += 1;
                stats.dropped.push(confine::clean(raw));
                return Ok(replaced);
            }
        }
        tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => return Ok(replaced),
        other => {
            return Err(LayerError::BadEntry {
                path: raw.to_string(),
                reason: format!("unsupported tar entry type {other:?}"),
            });
        }
    }
    finish_metadata(entry, dir, name, mode, kind, opts, stats, raw).map(|()| replaced)
}

/// A hard link entry: its target is resolved inside the root (its parents may be links there) and linked
/// as it is (a symlink is linked, not followed); a target that is not there is an error naming the entry.
fn hard_link<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    root: &Root,
    dir: &Dir,
    name: &OsStr,
    raw: &str,
) -> Result<(), LayerError> {
    let link = entry.link_name().map_err(LayerError::Tar)?.unwrap_or_default().into_owned();
    let shown = link.display().to_string();
    let mut parts = confine::components(&link.to_string_lossy());
    let Some(target) = parts.pop() else {
        return Err(LayerError::Escape { path: raw.to_string(), reason: "hard link to the root".into() });
    };
    let from = root.dir(&parts.join("/")).map_err(at(raw, format!("hard link to {shown}")))?;
    dir.hard_link(name, &from, OsStr::new(&target)).map_err(at(raw, format!("hard link to {shown}")))
}

/// Owner, xattrs, mode and time of a regular file, through the descriptor it was written with.
fn finish_file<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    file: &std::fs::File,
    mode: u32,
    opts: &ApplyOptions,
    stats: &mut ApplyStats,
    raw: &str,
) -> Result<(), LayerError> {
    let header = entry.header();
    if opts.chown {
        let (uid, gid) = (header.uid().unwrap_or(0) as u32, header.gid().unwrap_or(0) as u32);
        if std::os::unix::fs::fchown(file, Some(uid), Some(gid)).is_err() {
            stats.degraded += 1;
        }
    }
    for (key, value) in xattrs(entry) {
        if rustix::fs::fsetxattr(file, key.as_str(), &value, rustix::fs::XattrFlags::empty()).is_err() {
            stats.degraded += 1;
        }
    }
    // After chown, which clears setuid/setgid bits.
    let perms = std::os::unix::fs::PermissionsExt::from_mode(mode);
    file.set_permissions(perms).map_err(at(raw, "set the mode"))?;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(entry.header().mtime().unwrap_or(0));
    let _ = file.set_times(std::fs::FileTimes::new().set_accessed(t).set_modified(t));
    Ok(())
}

/// Owner, xattrs, mode and time of any other entry, through its directory.
#[allow(clippy::too_many_arguments)]
fn finish_metadata<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    dir: &Dir,
    name: &OsStr,
    mode: u32,
    kind: tar::EntryType,
    opts: &ApplyOptions,
    stats: &mut ApplyStats,
    raw: &str,
) -> Result<(), LayerError> {
    let header = entry.header();
    if opts.chown {
        let (uid, gid) = (header.uid().unwrap_or(0) as u32, header.gid().unwrap_or(0) as u32);
        if dir.chown(name, uid, gid).is_err() {
            stats.degraded += 1;
        }
    }
    let mtime = header.mtime().unwrap_or(0) as i64;
    for (key, value) in xattrs(entry) {
        if dir.set_xattr(name, &key, &value).is_err() {
            stats.degraded += 1;
        }
    }
    if kind != tar::EntryType::Symlink {
        dir.chmod(name, mode).map_err(at(raw, "set the mode"))?;
    }
    let _ = dir.set_mtime(name, mtime);
    Ok(())
}

/// The entry's `SCHILY.xattr.*` PAX records.
fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
    let Ok(Some(pax)) = entry.pax_extensions() else { return Vec::new() };
    pax.flatten()
        .filter_map(|ext| {
            let key = ext.key().ok()?.strip_prefix("SCHILY.xattr.")?.to_string();
            Some((key, ext.value_bytes().to_vec()))
        })
        .filter(|(key, _)| !key.is_empty())
        .collect()
}
