//! Deriving a tree from earlier ones by hard links: a copy of a snapshot that shares every file with it
//! ([`link_tree`], what `cp -al` does, in one `linkat` per file), and an overlay upper directory laid over a
//! tree by links ([`merge_upper`]: whiteouts remove, opaque directories hide what was below, everything else
//! is linked). Snapshots are immutable, so sharing their inodes is safe: a tree that will be changed in
//! place is [`super::unshare`]d first.
//!
//! Directories cannot be shared: each is created (private until its children are in), then given the
//! source's owner, mode, xattrs and times. The walk works from directory descriptors, one name at a time,
//! never following a symlink, and needs no stack of its own for deep trees.

use std::ffi::{CStr, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use super::entry::is_overlay_xattr;
use super::error::LayerError;

/// What a derivation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Linked {
    /// Inodes shared with the source (one `linkat` each).
    pub linked: usize,
    /// Files copied because their inode could take no more links.
    pub copied: usize,
    /// Directories created.
    pub dirs: usize,
    /// Names removed (whiteouts, opaque directories, replaced entries).
    pub removed: usize,
}

impl Linked {
    /// How many entries the tree got (linked, copied or created).
    pub fn entries(&self) -> usize {
        self.linked + self.copied + self.dirs
    }
}

/// Makes the empty directory `to` a copy of the tree `from` whose files are hard links to `from`'s.
pub fn link_tree(from: &Path, to: &Path) -> Result<Linked, LayerError> {
    walk(from, to, false)
}

/// Lays the overlay upper directory `upper` (a RUN step's diff snapshot) over the tree `into`, as the
/// overlay mount showed it: a 0/0 character device removes the name below, an opaque directory hides what
/// was below it, a directory over a directory merges, anything else replaces what is there — by a link.
pub fn merge_upper(upper: &Path, into: &Path) -> Result<Linked, LayerError> {
    walk(upper, into, true)
}

/// One directory being copied: its descriptors, its entries, how far the walk is.
struct Level {
    from: OwnedFd,
    to: OwnedFd,
    names: Vec<(OsString, FileType)>,
    next: usize,
    path: String,
}

fn walk(from: &Path, to: &Path, overlay: bool) -> Result<Linked, LayerError> {
    let mut out = Linked::default();
    let fail = |path: &str, what: &str| {
        let (path, what) = (path.to_string(), what.to_string());
        move |e: rustix::io::Errno| LayerError::Entry { path, what, source: e.into() }
    };
    let open = |dir: &Path| {
        rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| LayerError::Io { op: "open", path: dir.to_path_buf(), source: e.into() })
    };
    let (src, dst) = (open(from)?, open(to)?);
    let names = list(&src).map_err(fail("", "list"))?;
    let mut stack = vec![Level { from: src, to: dst, names, next: 0, path: String::new() }];
    while let Some(top) = stack.last_mut() {
        let Some((name, kind)) = top.names.get(top.next).cloned() else {
            let done = stack.pop().unwrap_or_else(|| unreachable!("the loop holds a level"));
            // An upper dir's own root is kiln's scratch directory, not part of the diff: the tree's root stays.
            if overlay && done.path.is_empty() {
                continue;
            }
            copy_dir_meta(&done.from, &done.to).map_err(|e| LayerError::Entry {
                path: done.path.clone(),
                what: "set the directory's metadata".into(),
                source: e,
            })?;
            continue;
        };
        top.next += 1;
        let path = if top.path.is_empty() {
            name.to_string_lossy().into_owned()
        } else {
            format!("{}/{}", top.path, name.to_string_lossy())
        };
        let kind = match kind {
            FileType::Unknown => {
                let stat =
                    rustix::fs::statat(&top.from, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(fail(&path, "stat"))?;
                FileType::from_raw_mode(stat.st_mode)
            }
            known => known,
        };
        if overlay && is_whiteout(&top.from, &name, kind).map_err(fail(&path, "stat"))? {
            out.removed += remove_any(&top.to, &name).map_err(fail(&path, "remove the whited-out path"))?;
            continue;
        }
        if kind == FileType::Directory {
            let child = enter(top, &name, overlay, &mut out).map_err(fail(&path, "create the directory"))?;
            let names = list(&child.0).map_err(fail(&path, "list"))?;
            out.dirs += 1;
            stack.push(Level { from: child.0, to: child.1, names, next: 0, path });
            continue;
        }
        if overlay {
            out.removed += remove_any(&top.to, &name).map_err(fail(&path, "replace what is there"))?;
        }
        match rustix::fs::linkat(&top.from, &name, &top.to, &name, AtFlags::empty()) {
            Ok(()) => out.linked += 1,
            Err(rustix::io::Errno::MLINK) => {
                copy_entry(&top.from, &name, &top.to, &name, kind).map_err(|e| LayerError::Entry {
                    path: path.clone(),
                    what: "copy a file that can take no more links".into(),
                    source: e,
                })?;
                out.copied += 1;
            }
            Err(e) => return Err(fail(&path, "link")(e)),
        }
    }
    Ok(out)
}

/// Creates (or, merging, finds or replaces) the directory `name` in the level's target and opens both sides.
fn enter(level: &Level, name: &OsStr, overlay: bool, out: &mut Linked) -> rustix::io::Result<(OwnedFd, OwnedFd)> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let from = rustix::fs::openat(&level.from, name, flags, Mode::empty())?;
    let existing = match rustix::fs::statat(&level.to, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Some(FileType::from_raw_mode(stat.st_mode)),
        Err(rustix::io::Errno::NOENT) => None,
        Err(e) => return Err(e),
    };
    match existing {
        Some(FileType::Directory) if overlay => {
            if is_opaque(&from) {
                let to = rustix::fs::openat(&level.to, name, flags, Mode::empty())?;
                for (child, _) in list(&to)? {
                    out.removed += remove_any(&to, &child)?;
                }
            }
        }
        Some(_) => {
            out.removed += remove_any(&level.to, name)?;
            rustix::fs::mkdirat(&level.to, name, Mode::from_raw_mode(0o700))?;
        }
        None => rustix::fs::mkdirat(&level.to, name, Mode::from_raw_mode(0o700))?,
    }
    let to = rustix::fs::openat(&level.to, name, flags, Mode::empty())?;
    // Writable by us until its children are in (its own mode comes last).
    rustix::fs::fchmod(&to, Mode::from_raw_mode(0o700))?;
    Ok((from, to))
}

/// The names in a directory with their types (`Unknown` where the filesystem does not say).
fn list(dir: &OwnedFd) -> rustix::io::Result<Vec<(OsString, FileType)>> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name: &CStr = entry.file_name();
        let bytes = name.to_bytes();
        if bytes != b"." && bytes != b".." {
            out.push((OsStr::from_bytes(bytes).to_os_string(), entry.file_type()));
        }
    }
    Ok(out)
}

/// Whether `name` is an overlay whiteout (a character device 0/0).
fn is_whiteout(dir: &OwnedFd, name: &OsStr, kind: FileType) -> rustix::io::Result<bool> {
    if kind != FileType::CharacterDevice {
        return Ok(false);
    }
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?.st_rdev == 0)
}

/// Whether an upper directory is opaque (overlay's own xattr, privileged or user namespace).
fn is_opaque(dir: &OwnedFd) -> bool {
    let file = File::from(dir.try_clone().ok().unwrap_or_else(|| unreachable!("dup of a live descriptor")));
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|n| matches!(xattr::FileExt::get_xattr(&file, n), Ok(Some(v)) if v == b"y"))
}

/// Removes `name` from `dir`, a whole tree if it is a directory (made writable first); 0 when absent.
pub(super) fn remove_any(dir: &OwnedFd, name: &OsStr) -> rustix::io::Result<usize> {
    let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(rustix::io::Errno::NOENT) => return Ok(0),
        Err(e) => return Err(e),
    };
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        return Ok(1);
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let child = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    rustix::fs::fchmod(&child, Mode::from_raw_mode(0o700))?;
    let mut removed = 0;
    // Deep trees: removal recurses once per level, which a hostile tree could make deep; entries are few
    // per level in practice, and a failure only fails this derivation.
    for (inner, _) in list(&child)? {
        removed += remove_any(&child, &inner)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    Ok(removed + 1)
}

/// Owner, mode, xattrs (overlay's own left out) and times of directory `from` onto `to`.
fn copy_dir_meta(from: &OwnedFd, to: &OwnedFd) -> io::Result<()> {
    let stat = rustix::fs::fstat(from)?;
    let now = rustix::fs::fstat(to)?;
    if (now.st_uid, now.st_gid) != (stat.st_uid, stat.st_gid) {
        let owner = (rustix::fs::Uid::from_raw(stat.st_uid), rustix::fs::Gid::from_raw(stat.st_gid));
        // Without the privilege (a single-id user namespace) the caller's owner stays, as applying would.
        let _ = rustix::fs::fchown(to, Some(owner.0), Some(owner.1));
    }
    copy_xattrs(from, to)?;
    rustix::fs::fchmod(to, Mode::from_raw_mode(stat.st_mode & 0o7777))?;
    rustix::fs::futimens(to, &times(&stat))?;
    Ok(())
}

fn times(stat: &rustix::fs::Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec { tv_sec: stat.st_atime as _, tv_nsec: stat.st_atime_nsec as _ },
        last_modification: Timespec { tv_sec: stat.st_mtime as _, tv_nsec: stat.st_mtime_nsec as _ },
    }
}

fn copy_xattrs(from: &OwnedFd, to: &OwnedFd) -> io::Result<()> {
    let source = File::from(from.try_clone()?);
    let target = File::from(to.try_clone()?);
    let Ok(names) = xattr::FileExt::list_xattr(&source) else { return Ok(()) };
    for name in names {
        if name.to_str().is_some_and(is_overlay_xattr) {
            continue;
        }
        if let Ok(Some(value)) = xattr::FileExt::get_xattr(&source, &name) {
            // What this process may not set (a privileged namespace's) is left out, as applying does.
            let _ = xattr::FileExt::set_xattr(&target, &name, &value);
        }
    }
    Ok(())
}

/// Copies the non-directory `name` of directory `from` to `to_name` in `to`, with its content and metadata:
/// a new inode equal to the old one.
pub(super) fn copy_entry(
    from: impl AsFd,
    name: &OsStr,
    to: impl AsFd,
    to_name: &OsStr,
    kind: FileType,
) -> io::Result<()> {
    let (from, to) = (from.as_fd(), to.as_fd());
    let stat = rustix::fs::statat(from, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let perms = stat.st_mode & 0o7777;
    let owner = (rustix::fs::Uid::from_raw(stat.st_uid), rustix::fs::Gid::from_raw(stat.st_gid));
    match kind {
        FileType::RegularFile => {
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let source = File::from(rustix::fs::openat(from, name, flags, Mode::empty())?);
            let create = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let target = File::from(rustix::fs::openat(to, to_name, create, Mode::from_raw_mode(0o600))?);
            std::io::copy(&mut &source, &mut &target)?;
            let _ = rustix::fs::fchown(&target, Some(owner.0), Some(owner.1));
            let (source_fd, target_fd): (OwnedFd, OwnedFd) = (source.into(), target.into());
            copy_xattrs(&source_fd, &target_fd)?;
            rustix::fs::fchmod(&target_fd, Mode::from_raw_mode(perms))?;
            rustix::fs::futimens(&target_fd, &times(&stat))?;
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(from, name, Vec::new())?;
            rustix::fs::symlinkat(target.as_c_str(), to, to_name)?;
            let _ = rustix::fs::chownat(to, to_name, Some(owner.0), Some(owner.1), AtFlags::SYMLINK_NOFOLLOW);
            rustix::fs::utimensat(to, to_name, &times(&stat), AtFlags::SYMLINK_NOFOLLOW)?;
        }
        other => {
            rustix::fs::mknodat(to, to_name, other, Mode::from_raw_mode(perms), stat.st_rdev)?;
            let _ = rustix::fs::chownat(to, to_name, Some(owner.0), Some(owner.1), AtFlags::SYMLINK_NOFOLLOW);
            rustix::fs::chmodat(to, to_name, Mode::from_raw_mode(perms), AtFlags::empty())?;
            rustix::fs::utimensat(to, to_name, &times(&stat), AtFlags::SYMLINK_NOFOLLOW)?;
        }
    }
    Ok(())
}
