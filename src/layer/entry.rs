//! The entries a layer is made of, and reading them from a directory tree on disk.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::error::{LayerError, io};

/// Where a file's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// A file in a tree kiln made (a step's upper dir, a snapshot), streamed when the layer is written;
    /// opened without following a final symlink.
    Path(PathBuf),
    /// A file in a tree kiln does not own (the context, another stage's rootfs), reopened through its root
    /// when the layer is written.
    Rooted(crate::confine::RootedPath),
    /// Bytes in memory (heredocs, small generated files).
    Bytes(Vec<u8>),
}

impl FileSource {
    /// Opens the content of a `Path` or `Rooted` source for reading, never through a final symlink (bytes
    /// have nothing to open: `InvalidInput`).
    pub fn open(&self) -> std::io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        match self {
            FileSource::Path(path) => std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path),
            FileSource::Rooted(rooted) => rooted.open(),
            FileSource::Bytes(_) => Err(std::io::ErrorKind::InvalidInput.into()),
        }
    }

    /// Where the content lives on the host, for messages.
    pub fn display(&self) -> PathBuf {
        match self {
            FileSource::Path(path) => path.clone(),
            FileSource::Rooted(rooted) => rooted.display(),
            FileSource::Bytes(_) => PathBuf::from("<in memory>"),
        }
    }
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File(FileSource),
    /// A directory.
    Dir,
    /// A symlink with its target as written.
    Symlink(String),
    /// A hard link to an earlier entry of the same layer (its path).
    Hardlink(String),
    /// A character device (major, minor).
    CharDevice(u32, u32),
    /// A block device (major, minor).
    BlockDevice(u32, u32),
    /// A named pipe.
    Fifo,
    /// Deletes the path from lower layers (written as `.wh.<name>`).
    Whiteout,
    /// Hides the lower layers' content of this directory (written as `<dir>/.wh..wh..opq`).
    OpaqueDir,
}

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative path, no leading `/`, no trailing `/`.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits with setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes (file capabilities and the like).
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    /// A whiteout or opaque marker for `path`: no owner, mode or time of its own.
    pub fn marker(path: String, kind: EntryKind) -> Entry {
        Entry { path, kind, mode: 0, uid: 0, gid: 0, mtime: 0, xattrs: Vec::new() }
    }
}

/// Overlay's own xattrs, never carried into a layer.
pub(crate) fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

/// Extended attributes of a path (without following a final symlink), sorted, overlay's own left out.
pub fn read_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(names) = xattr::list(path) else { return Vec::new() };
    let mut out: Vec<(String, Vec<u8>)> = names
        .filter_map(|n| n.into_string().ok())
        .filter(|n| !is_overlay_xattr(n))
        .filter_map(|n| xattr::get(path, &n).ok().flatten().map(|v| (n, v)))
        .collect();
    out.sort();
    out
}

/// Builds the entry for one path on disk, named `rel` in the layer; `links` turns repeated inodes into
/// hard links to their first occurrence.
pub fn entry_from_disk(abs: &Path, rel: &str, links: &mut HashMap<(u64, u64), String>) -> Result<Entry, LayerError> {
    let meta = std::fs::symlink_metadata(abs).map_err(io("stat", abs))?;
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        let target = std::fs::read_link(abs).map_err(io("read link", abs))?;
        EntryKind::Symlink(target.to_string_lossy().into_owned())
    } else if ft.is_file() {
        let key = (meta.dev(), meta.ino());
        match links.get(&key) {
            Some(first) if meta.nlink() > 1 => EntryKind::Hardlink(first.clone()),
            _ => {
                if meta.nlink() > 1 {
                    links.insert(key, rel.to_string());
                }
                EntryKind::File(FileSource::Path(abs.to_path_buf()))
            }
        }
    } else if ft.is_char_device() {
        EntryKind::CharDevice(major(meta.rdev()), minor(meta.rdev()))
    } else if ft.is_block_device() {
        EntryKind::BlockDevice(major(meta.rdev()), minor(meta.rdev()))
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else {
        return Err(LayerError::BadEntry {
            path: rel.to_string(),
            reason: "sockets cannot be stored in a layer".into(),
        });
    };
    Ok(Entry {
        path: rel.to_string(),
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime(),
        xattrs: read_xattrs(abs),
    })
}

fn major(dev: u64) -> u32 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)) as u32
}

fn minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0xff)) as u32
}

/// Every entry under `root` (not `root` itself), named `prefix/<relative path>`, sorted; symlinks are not
/// followed and sockets are skipped.
pub fn entries_from_dir(root: &Path, prefix: &str) -> Result<Vec<Entry>, LayerError> {
    let mut links = HashMap::new();
    let mut out = Vec::new();
    for item in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let item = item.map_err(|e| LayerError::Io {
            op: "walk",
            path: root.to_path_buf(),
            source: e.into_io_error().unwrap_or_else(|| std::io::Error::other("walk failed")),
        })?;
        if item.file_type().is_socket() {
            continue;
        }
        let rel = item.path().strip_prefix(root).unwrap_or(item.path()).to_string_lossy();
        let name = if prefix.is_empty() { rel.to_string() } else { format!("{}/{rel}", prefix.trim_matches('/')) };
        out.push(entry_from_disk(item.path(), &name, &mut links)?);
    }
    Ok(out)
}
