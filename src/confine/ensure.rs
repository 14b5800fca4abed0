//! Making a path exist inside a root: the parents of a layer entry, a RUN mount point. Symlinks on the way
//! are followed inside the root; a *dangling* one gets its target created there (an image's
//! `/etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf`, a layer's `a -> b` before `a/file`), as
//! containerd's applier and runc's mount-point creation do. libpathrs' `mkdir_all` refuses dangling links,
//! so it is the fast path and the walk below is the fallback.
//!
//! The walk starts at the root's descriptor and opens one name at a time without following; a symlink
//! restarts it from the root with the link's target spliced in (lexically cleaned, `..` clamped at the
//! root), so every step is an `openat` of a plain name below a descriptor already inside the root.

use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::PermissionsExt;

use super::dir::Dir;
use super::{Handle, Root, components, os};

/// How many symlinks one walk may follow (Linux's own limit).
const MAX_LINKS: usize = 40;

/// What to create at the end of the path when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// A directory.
    Dir,
    /// An empty regular file (a bind mount's target).
    File,
}

impl Root {
    /// The directory `path`, created with its missing parents (mode `mode`); symlinks followed inside the
    /// root, dangling ones by creating their target.
    pub fn mkdir_all(&self, path: &str, mode: u32) -> io::Result<Dir> {
        // The common case, one `openat2`: the directory is there.
        if let Ok(handle) = self.resolve(path) {
            return handle.into_dir();
        }
        let perm = std::fs::Permissions::from_mode(mode);
        match self.inner.mkdir_all(super::inner_path(path), &perm) {
            Ok(handle) => Handle(handle.into()).into_dir(),
            Err(first) => match self.ensure(path, Leaf::Dir, mode) {
                Ok((handle, _)) => handle.into_dir(),
                // The walk's error names a dangling link's target; libpathrs' names the original path.
                Err(_) => Err(os(first)),
            },
        }
    }

    /// `path` resolved inside the root, created (with its parents) where missing: a directory, or an empty
    /// file for [`Leaf::File`]. Returns a handle to it and the in-root paths this call created, parents
    /// first. A symlink at the end is followed inside the root too.
    pub fn ensure(&self, path: &str, leaf: Leaf, mode: u32) -> io::Result<(Handle, Vec<String>)> {
        let mut created = Vec::new();
        let mut target = components(path);
        'restart: for _ in 0..=MAX_LINKS {
            let mut dir = self.dir("")?;
            for (i, name) in target.iter().enumerate() {
                let last = i + 1 == target.len();
                let os_name = OsStr::new(name);
                match dir.try_lstat(os_name)? {
                    Some(meta) if meta.is_symlink() => {
                        let link = dir.read_link(os_name)?;
                        let link = link.to_string_lossy();
                        let mut next = if link.starts_with('/') { Vec::new() } else { target[..i].to_vec() };
                        next.push(link.into_owned());
                        next.extend(target[i + 1..].iter().cloned());
                        target = components(&next.join("/"));
                        continue 'restart;
                    }
                    Some(meta) if last => match (leaf, meta.is_dir()) {
                        (Leaf::Dir, false) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
                        (Leaf::File, true) => return Err(io::Error::from_raw_os_error(libc::EISDIR)),
                        _ => return Ok((open_entry(&dir, os_name)?, created)),
                    },
                    Some(meta) if meta.is_dir() => dir = dir.dir(os_name)?,
                    Some(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
                    None => {
                        if last && leaf == Leaf::File {
                            drop(dir.create_file(os_name, mode & 0o666)?);
                        } else {
                            create_dir(&dir, os_name, mode)?;
                        }
                        created.push(target[..=i].join("/"));
                        if last {
                            return Ok((open_entry(&dir, os_name)?, created));
                        }
                        dir = dir.dir(os_name)?;
                    }
                }
            }
            // Only an empty path gets here: the root itself.
            if leaf == Leaf::File {
                return Err(io::Error::from_raw_os_error(libc::EISDIR));
            }
            return Ok((self.resolve_nofollow("")?, created));
        }
        Err(io::Error::from_raw_os_error(libc::ELOOP))
    }
}

/// mkdir that accepts losing a race to another creator of the same directory.
fn create_dir(dir: &Dir, name: &OsStr, mode: u32) -> io::Result<()> {
    match dir.create_dir(name, mode) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// An `O_PATH` handle of the entry `name` of `dir`, refused if it turned into a symlink meanwhile.
fn open_entry(dir: &Dir, name: &OsStr) -> io::Result<Handle> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    let handle = Handle(fd);
    if handle.meta()?.is_symlink() {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    Ok(handle)
}
