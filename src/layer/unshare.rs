//! Giving a tree its own inodes before it is changed in place. Snapshots share files by hard links (see
//! `clone.rs`, `place.rs`); a chroot-mode RUN writes into its tree directly, and a write through a shared
//! inode would change every snapshot that links it. So before such a step, every inode the tree links fewer
//! times than its link count says is replaced — name by name, atomically, by `renameat` — with a copy of
//! the same content and metadata. Hard links *within* the tree stay links to one (new) inode.
//!
//! Only the tree's own names change; the other snapshots keep the old inode untouched. Directories are
//! resolved inside the tree (`confine`), and nothing is followed.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;

use rustix::fs::{AtFlags, FileType};

use super::clone::copy_entry;
use super::error::LayerError;
use crate::confine::{Kind, Root};

/// The names one inode has in the tree.
struct Inode {
    nlink: u64,
    kind: FileType,
    /// (directory inside the tree, name)
    names: Vec<(String, OsString)>,
}

/// Replaces every inode the tree at `root` shares with other trees by a copy of its own; returns how many.
pub fn unshare(root: &Path) -> Result<usize, LayerError> {
    let fail = |path: &str| {
        let path = root.join(path);
        move |source: std::io::Error| LayerError::Io { op: "unshare", path, source }
    };
    let tree = Root::open(root).map_err(fail(""))?;
    let mut inodes: HashMap<(u64, u64), Inode> = HashMap::new();
    let mut pending = vec![String::new()];
    while let Some(rel) = pending.pop() {
        let dir = tree.dir(&rel).map_err(fail(&rel))?;
        for name in dir.names().map_err(fail(&rel))? {
            let meta = dir.lstat(&name).map_err(fail(&rel))?;
            if meta.is_dir() {
                let text = name.to_string_lossy();
                pending.push(if rel.is_empty() { text.into_owned() } else { format!("{rel}/{text}") });
                continue;
            }
            if meta.nlink() < 2 {
                continue;
            }
            let kind = match meta.kind() {
                Kind::File => FileType::RegularFile,
                Kind::Symlink => FileType::Symlink,
                Kind::CharDevice => FileType::CharacterDevice,
                Kind::BlockDevice => FileType::BlockDevice,
                Kind::Fifo => FileType::Fifo,
                Kind::Socket => FileType::Socket,
                Kind::Dir => FileType::Directory,
            };
            let entry = inodes.entry((meta.dev(), meta.ino())).or_insert(Inode {
                nlink: meta.nlink(),
                kind,
                names: Vec::new(),
            });
            entry.names.push((rel.clone(), name));
        }
    }
    let shared: Vec<&Inode> = inodes.values().filter(|i| (i.names.len() as u64) < i.nlink).collect();
    // Replacing names changes their directories' times: put them back afterwards.
    let mut touched: Vec<&str> = shared.iter().flat_map(|i| i.names.iter().map(|(rel, _)| rel.as_str())).collect();
    touched.sort_unstable();
    touched.dedup();
    let times: Vec<(&str, rustix::fs::Stat)> = touched
        .iter()
        .map(|rel| Ok((*rel, at(&tree, root, rel, None)?)))
        .collect::<std::io::Result<_>>()
        .map_err(fail(""))?;
    for inode in &shared {
        replace(&tree, inode).map_err(fail(&inode.names[0].0))?;
    }
    for (rel, stat) in times {
        at(&tree, root, rel, Some(&stat)).map_err(fail(rel))?;
    }
    Ok(shared.len())
}

/// The metadata of directory `rel` (through its parent's descriptor), or, with `restore`, sets its access
/// and modification times back to those `restore` holds.
fn at(tree: &Root, root: &Path, rel: &str, restore: Option<&rustix::fs::Stat>) -> std::io::Result<rustix::fs::Stat> {
    let mut parts = crate::confine::components(rel);
    let (dir, name) = match parts.pop() {
        None => (None, String::new()),
        Some(name) => (Some(tree.dir(&parts.join("/"))?), name),
    };
    let stat = |d: &Option<crate::confine::Dir>| match d {
        Some(d) => rustix::fs::statat(d, name.as_str(), AtFlags::SYMLINK_NOFOLLOW),
        None => rustix::fs::stat(root),
    };
    if let Some(old) = restore {
        let times = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec { tv_sec: old.st_atime as _, tv_nsec: old.st_atime_nsec as _ },
            last_modification: rustix::fs::Timespec { tv_sec: old.st_mtime as _, tv_nsec: old.st_mtime_nsec as _ },
        };
        match &dir {
            Some(d) => rustix::fs::utimensat(d, name.as_str(), &times, AtFlags::SYMLINK_NOFOLLOW)?,
            None => rustix::fs::utimensat(rustix::fs::CWD, root, &times, AtFlags::empty())?,
        }
    }
    Ok(stat(&dir)?)
}

/// Gives the names of `inode` a new inode of their own: a copy under a temporary name renamed over the first
/// name, then linked over the others.
fn replace(tree: &Root, inode: &Inode) -> std::io::Result<()> {
    let (first_rel, first_name) = &inode.names[0];
    let first = tree.dir(first_rel)?;
    let temp = free_name(|name| copy_entry(&first, first_name, &first, name, inode.kind))?;
    rustix::fs::renameat(&first, &temp, &first, first_name)?;
    for (rel, name) in &inode.names[1..] {
        let other = tree.dir(rel)?;
        let temp = free_name(|temp| Ok(rustix::fs::linkat(&first, first_name, &other, temp, AtFlags::empty())?))?;
        rustix::fs::renameat(&other, &temp, &other, name)?;
    }
    Ok(())
}

/// Runs `create` with temporary names until one is free (a name the tree already has is never touched).
fn free_name(mut create: impl FnMut(&OsStr) -> std::io::Result<()>) -> std::io::Result<OsString> {
    for n in 0..1000 {
        let name = OsString::from(format!(".kiln-unshare-{}-{n}", std::process::id()));
        match create(&name) {
            Ok(()) => return Ok(name),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary name"))
}
