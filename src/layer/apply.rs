//! Applying a layer to a directory: OCI whiteouts and opaque directories, hard links, symlinks, devices,
//! xattrs (file capabilities survive), setuid/setgid bits, ownership and times. Every entry is placed
//! through in-root resolution, so no `..`, absolute name or symlink (in the tar or already on disk) can
//! reach outside the root.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::compress::decompress;
use super::error::{LayerError, io};
use super::resolve::{clean_components, resolve_dir};

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
    /// Entries that could not be given their owner or device (no privilege) and were kept as far as possible.
    pub degraded: usize,
}

/// Applies a (possibly compressed) layer tar to `root`.
pub fn apply_layer<R: Read>(reader: R, root: &Path, opts: &ApplyOptions) -> Result<ApplyStats, LayerError> {
    let stream = decompress(reader).map_err(LayerError::Tar)?;
    let mut archive = tar::Archive::new(stream);
    let mut stats = ApplyStats::default();
    let mut created: HashSet<PathBuf> = HashSet::new();
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    for entry in archive.entries().map_err(LayerError::Tar)? {
        let mut entry = entry.map_err(LayerError::Tar)?;
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut parts = clean_components(&raw_name);
        let Some(base) = parts.pop() else { continue };
        let dir = resolve_dir(root, &parts, true, &raw_name)?;
        if opts.whiteouts && base.starts_with(".wh.") {
            apply_whiteout(&dir, &base, &created, &raw_name)?;
            stats.whiteouts += 1;
            continue;
        }
        let target = dir.join(&base);
        place(&mut entry, root, &target, opts, &raw_name, &mut stats)?;
        created.insert(target.clone());
        if entry.header().entry_type().is_dir() {
            dir_times.push((target, entry.header().mtime().unwrap_or(0) as i64));
        }
        stats.entries += 1;
    }
    // Directory times last: creating children changed them.
    for (dir, mtime) in dir_times.into_iter().rev() {
        let t = filetime::FileTime::from_unix_time(mtime, 0);
        let _ = filetime::set_symlink_file_times(&dir, t, t);
    }
    Ok(stats)
}

/// Extracts a plain (possibly compressed) tar archive into `dest` with the same safety, no whiteouts,
/// ownership only when running as root. For ADD of local archives.
pub fn extract_archive<R: Read>(reader: R, dest: &Path) -> Result<ApplyStats, LayerError> {
    let opts = ApplyOptions { whiteouts: false, chown: nix::unistd::geteuid().is_root() };
    apply_layer(reader, dest, &opts)
}

fn apply_whiteout(dir: &Path, base: &str, created: &HashSet<PathBuf>, raw: &str) -> Result<(), LayerError> {
    if base == ".wh..wh..opq" {
        let read = std::fs::read_dir(dir).map_err(io("list", dir))?;
        for child in read.filter_map(Result::ok) {
            let path = child.path();
            if !created.contains(&path) {
                remove_any(&path)?;
            }
        }
        return Ok(());
    }
    let name = &base[".wh.".len()..];
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(LayerError::Escape { path: raw.to_string(), reason: "invalid whiteout name".into() });
    }
    remove_any(&dir.join(name))
}

fn remove_any(path: &Path) -> Result<(), LayerError> {
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => {
            make_writable(path);
            std::fs::remove_dir_all(path).map_err(io("remove", path))
        }
        Ok(_) => std::fs::remove_file(path).map_err(io("remove", path)),
    }
}

fn make_writable(dir: &Path) {
    for e in walkdir::WalkDir::new(dir).into_iter().filter_map(Result::ok) {
        if e.file_type().is_dir() {
            let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o700));
        }
    }
}

fn place<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    root: &Path,
    target: &Path,
    opts: &ApplyOptions,
    raw: &str,
    stats: &mut ApplyStats,
) -> Result<(), LayerError> {
    let header = entry.header().clone();
    let kind = header.entry_type();
    let existing = std::fs::symlink_metadata(target).ok();
    // Never write through what is already there: replace it, except a directory staying a directory.
    if let Some(m) = &existing
        && !(m.is_dir() && kind.is_dir())
    {
        remove_any(target)?;
    }
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    match kind {
        tar::EntryType::Directory => {
            if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                std::fs::create_dir(target).map_err(io("create", target))?;
            }
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            let mut file = std::fs::File::create(target).map_err(io("create", target))?;
            std::io::copy(entry, &mut file).map_err(io("write", target))?;
        }
        tar::EntryType::Symlink => {
            let link = entry.link_name().map_err(LayerError::Tar)?.unwrap_or_default().into_owned();
            std::os::unix::fs::symlink(&link, target).map_err(io("create symlink", target))?;
        }
        tar::EntryType::Link => {
            let link = entry.link_name().map_err(LayerError::Tar)?.unwrap_or_default();
            let mut parts = clean_components(&link.to_string_lossy());
            let Some(base) = parts.pop() else {
                return Err(LayerError::Escape { path: raw.to_string(), reason: "hard link to the root".into() });
            };
            let source = resolve_dir(root, &parts, false, raw)?.join(base);
            std::fs::hard_link(&source, target).map_err(io("create hard link", target))?;
            return Ok(());
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            if !make_node(target, &header, kind) {
                stats.degraded += 1;
                return Ok(());
            }
        }
        tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => return Ok(()),
        other => {
            return Err(LayerError::BadEntry {
                path: raw.to_string(),
                reason: format!("unsupported tar entry type {other:?}"),
            });
        }
    }
    finish_metadata(entry, target, mode, kind, opts, stats)
}

fn make_node(target: &Path, header: &tar::Header, kind: tar::EntryType) -> bool {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    let flag = match kind {
        tar::EntryType::Char => SFlag::S_IFCHR,
        tar::EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    let major = header.device_major().ok().flatten().unwrap_or(0);
    let minor = header.device_minor().ok().flatten().unwrap_or(0);
    mknod(target, flag, Mode::from_bits_truncate(0o600), makedev(major.into(), minor.into())).is_ok()
}

fn finish_metadata<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    target: &Path,
    mode: u32,
    kind: tar::EntryType,
    opts: &ApplyOptions,
    stats: &mut ApplyStats,
) -> Result<(), LayerError> {
    let header = entry.header();
    if opts.chown {
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        if std::os::unix::fs::lchown(target, Some(uid), Some(gid)).is_err() {
            stats.degraded += 1;
        }
    }
    if let Ok(Some(pax)) = entry.pax_extensions() {
        for ext in pax.flatten() {
            if let (Ok(key), value) = (ext.key(), ext.value_bytes())
                && let Some(name) = key.strip_prefix("SCHILY.xattr.")
                && xattr::set(target, name, value).is_err()
            {
                stats.degraded += 1;
            }
        }
    }
    if kind != tar::EntryType::Symlink {
        // After chown, which clears setuid/setgid bits.
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode)).map_err(io("chmod", target))?;
    }
    let mtime = entry.header().mtime().unwrap_or(0) as i64;
    let t = filetime::FileTime::from_unix_time(mtime, 0);
    let _ = filetime::set_symlink_file_times(target, t, t);
    Ok(())
}
