//! A step's changes as layer entries: from an overlay upper directory (whiteout devices and opaque
//! markers become OCI whiteouts), or — where no overlay could be mounted — by comparing the changed tree
//! with its original by metadata (type, size, mode, owner, mtime, link target).

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::entry::{Entry, EntryKind, entry_from_disk};
use super::error::{LayerError, io};

fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| matches!(xattr::get(path, name), Ok(Some(v)) if v == b"y"))
}

fn walk_err(root: &Path) -> impl Fn(walkdir::Error) -> LayerError + '_ {
    move |e| LayerError::Io {
        op: "walk",
        path: root.to_path_buf(),
        source: e.into_io_error().unwrap_or_else(|| std::io::Error::other("walk failed")),
    }
}

/// Entries of an overlay upper directory: 0/0 character devices are whiteouts, opaque directories get an
/// opaque marker, overlay's own xattrs are dropped.
pub fn entries_from_overlay_upper(upper: &Path) -> Result<Vec<Entry>, LayerError> {
    let mut links = HashMap::new();
    let mut out = Vec::new();
    for item in walkdir::WalkDir::new(upper).min_depth(1).sort_by_file_name() {
        let item = item.map_err(walk_err(upper))?;
        let rel = item.path().strip_prefix(upper).unwrap_or(item.path()).to_string_lossy().into_owned();
        let meta = item.path().symlink_metadata().map_err(io("stat", item.path()))?;
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            out.push(Entry::marker(rel, EntryKind::Whiteout));
            continue;
        }
        if meta.file_type().is_socket() {
            continue;
        }
        let entry = entry_from_disk(item.path(), &rel, &mut links)?;
        let opaque = meta.is_dir() && is_opaque(item.path());
        out.push(entry);
        if opaque {
            out.push(Entry::marker(rel, EntryKind::OpaqueDir));
        }
    }
    Ok(out)
}

/// What identifies an unchanged file without reading it.
#[derive(PartialEq, Eq)]
struct Stamp {
    kind: u32,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    /// Inode and ctime: meaningful only when the tree was changed in place (a copy renews both).
    identity: (u64, i64, i64),
}

impl Stamp {
    fn same(&self, other: &Stamp, in_place: bool) -> bool {
        (self.kind, self.size, self.mode, self.uid, self.gid, self.mtime)
            == (other.kind, other.size, other.mode, other.uid, other.gid, other.mtime)
            && (!in_place || self.identity == other.identity)
    }
}

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    Stamp {
        kind: meta.mode() & 0o170000,
        size: meta.size(),
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        identity: (meta.ino(), meta.ctime(), meta.ctime_nsec()),
    }
}

/// A tree's paths with their stamps (and link targets), from one walk: what a later diff compares with.
pub struct TreeStamps {
    stamps: HashMap<String, Stamp>,
    targets: HashMap<String, std::path::PathBuf>,
    /// Paths in walk order (sorted by name), with their absolute path.
    order: Vec<(String, std::path::PathBuf)>,
}

impl TreeStamps {
    /// Mode bits, uid and gid of the directory `rel` as it was, if it was one.
    pub fn dir_mode_owner(&self, rel: &str) -> Option<(u32, u32, u32)> {
        self.stamps.get(rel).filter(|s| s.kind == 0o040000).map(|s| (s.mode & 0o7777, s.uid, s.gid))
    }

    /// Takes the stamp of `rel` anew from `meta`, for a path kiln itself put back as it was after a step
    /// (a placed CA bundle): the rewrite changed its ctime, not what the diff should record.
    pub fn restamp(&mut self, rel: &str, meta: &std::fs::Metadata) {
        if let Some(s) = self.stamps.get_mut(rel) {
            *s = stamp(meta);
        }
    }
}

/// Records the metadata of every path under `root`, to diff against after the tree changed in place.
pub fn stamp_tree(root: &Path) -> Result<TreeStamps, LayerError> {
    let mut walked = TreeStamps { stamps: HashMap::new(), targets: HashMap::new(), order: Vec::new() };
    for item in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let item = item.map_err(walk_err(root))?;
        let rel = item.path().strip_prefix(root).unwrap_or(item.path()).to_string_lossy().into_owned();
        let meta = item.path().symlink_metadata().map_err(io("stat", item.path()))?;
        if meta.file_type().is_symlink() {
            walked.targets.insert(rel.clone(), std::fs::read_link(item.path()).unwrap_or_default());
        }
        walked.stamps.insert(rel.clone(), stamp(&meta));
        walked.order.push((rel, item.into_path()));
    }
    Ok(walked)
}

/// Entries that turn `lower` into `changed`: new or modified paths, and whiteouts for deleted ones.
/// `changed` must be a copy of `lower` that preserved metadata (see [`copy_tree`]), so that unchanged
/// files compare equal by metadata alone. The two trees are walked in parallel.
pub fn diff_trees(lower: &Path, changed: &Path) -> Result<Vec<Entry>, LayerError> {
    let (before, after) = rayon::join(|| stamp_tree(lower), || stamp_tree(changed));
    diff_stamps(&before?, &after?, false)
}

/// Entries that turn the tree `before` described into what `changed` holds now, after it was changed in
/// place (so inode numbers and ctimes count too: a rewrite that kept size and mtime is still found).
pub fn diff_since(before: &TreeStamps, changed: &Path) -> Result<Vec<Entry>, LayerError> {
    diff_stamps(before, &stamp_tree(changed)?, true)
}

fn diff_stamps(before: &TreeStamps, after: &TreeStamps, in_place: bool) -> Result<Vec<Entry>, LayerError> {
    let mut links = HashMap::new();
    let mut out = Vec::new();
    for (rel, abs) in &after.order {
        let now = &after.stamps[rel];
        let same = match before.stamps.get(rel) {
            Some(old) => old.same(now, in_place) && before.targets.get(rel) == after.targets.get(rel),
            None => false,
        };
        if !same && now.kind != 0o140000 {
            out.push(entry_from_disk(abs, rel, &mut links)?);
        }
    }
    let mut deleted: Vec<&String> = before.stamps.keys().filter(|p| !after.stamps.contains_key(*p)).collect();
    deleted.sort();
    let mut last_deleted_dir: Option<String> = None;
    for path in deleted {
        if let Some(dir) = &last_deleted_dir
            && path.starts_with(&format!("{dir}/"))
        {
            continue;
        }
        out.push(Entry::marker(path.clone(), EntryKind::Whiteout));
        last_deleted_dir = Some(path.clone());
    }
    Ok(out)
}

/// Copies a tree preserving modes, owners, times, links and xattrs (`cp -a`, which also reflinks where the
/// filesystem can).
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), LayerError> {
    let status = std::process::Command::new("cp")
        .args(["-a", "--reflink=auto", "--no-target-directory"])
        .arg(from)
        .arg(to)
        .status()
        .map_err(io("run cp for", to))?;
    if status.success() {
        Ok(())
    } else {
        Err(LayerError::Io {
            op: "copy",
            path: to.to_path_buf(),
            source: std::io::Error::other(format!("cp exited with {status}")),
        })
    }
}
