//! Paths inside trees kiln does not own — a build context, a stage's or an image's rootfs, a layer being
//! applied, a RUN mount's source or target — resolved *inside* that tree, through kernel handles.
//!
//! A [`Root`] is an `O_PATH` descriptor of the tree's top, opened once from a path kiln trusts (the context
//! the user named, a snapshot in kiln's store). Every lookup below it is `openat2(2)` with
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` (cyphar's libpathrs, the path-safety library of runc's world):
//! `..` stops at the root, and a symlink, absolute or relative, resolves as if the root were `/` — BuildKit's
//! `fs.RootPath`, a chroot's view. A link to `/etc/shadow` in a context names `<context>/etc/shadow`, never
//! the host's file. What a lookup gives back is a descriptor ([`Handle`], [`Dir`], a `File`), so nothing can
//! be swapped between the check and the use; mounts go through `/proc/self/fd/N` of such a descriptor.
//!
//! [`Dir`] works one name at a time relative to a directory descriptor and never follows a symlink: trees
//! are walked and layers applied with it. [`RootedPath`] names a file for later (a layer entry's content)
//! and reopens it through its root when it is read.
//!
//! Input: a trusted root path and untrusted relative paths. Output: descriptors and metadata.
//! Must not know: images, layers, Dockerfiles.

mod copy;
mod dir;
mod ensure;
mod walk;

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pathrs::flags::OpenFlags;

pub use copy::private_copy;
pub use dir::{Dir, Kind, Meta};
pub use ensure::Leaf;
pub use walk::{Fail, Found, Judge, Verdict};

/// The top of a tree kiln does not own; everything below it is resolved inside it.
pub struct Root {
    inner: pathrs::Root,
    path: PathBuf,
    /// Whatever keeps the tree as it is while the root is used (the store's lease on a snapshot).
    _hold: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Root").field("path", &self.path).field("held", &self._hold.is_some()).finish()
    }
}

impl Root {
    /// Opens the tree at `path` (a path kiln trusts; made absolute, for messages).
    pub fn open(path: &Path) -> io::Result<Root> {
        let path = std::path::absolute(path)?;
        let inner = pathrs::Root::open(&path).map_err(os)?;
        Ok(Root { inner, path, _hold: None })
    }

    /// The root, keeping `hold` (a lease on the tree) for as long as it — or anything it resolved for later,
    /// like a COPY source read when the layer is written — is in use.
    pub fn holding(mut self, hold: impl std::any::Any + Send + Sync) -> Root {
        self._hold = Some(Box::new(hold));
        self
    }

    /// Where the tree was opened (for messages and for tools that take a path, never for resolving).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path` resolved inside the root, a final symlink followed (inside the root too).
    pub fn resolve(&self, path: &str) -> io::Result<Handle> {
        self.inner.resolve(inner_path(path)).map(|h| Handle(h.into())).map_err(os)
    }

    /// `path` resolved inside the root; a final symlink is the handle's subject, not followed.
    pub fn resolve_nofollow(&self, path: &str) -> io::Result<Handle> {
        self.inner.resolve_nofollow(inner_path(path)).map(|h| Handle(h.into())).map_err(os)
    }

    /// Metadata of `path` without following a final symlink (`lstat` inside the root).
    pub fn lstat(&self, path: &str) -> io::Result<Meta> {
        self.resolve_nofollow(path)?.meta()
    }

    /// Metadata of what `path` names, symlinks followed inside the root.
    pub fn stat(&self, path: &str) -> io::Result<Meta> {
        self.resolve(path)?.meta()
    }

    /// Opens the file `path` names for reading, symlinks followed inside the root.
    pub fn open_file(&self, path: &str) -> io::Result<File> {
        self.inner.open_subpath(inner_path(path), OpenFlags::O_RDONLY | OpenFlags::O_CLOEXEC).map_err(os)
    }

    /// Opens `path` for reading when it is not a symlink itself (`ELOOP` when it is): parents are followed
    /// inside the root, the file is what was listed.
    pub fn open_file_nofollow(&self, path: &str) -> io::Result<File> {
        let flags = OpenFlags::O_RDONLY | OpenFlags::O_NOFOLLOW | OpenFlags::O_CLOEXEC;
        self.inner.open_subpath(inner_path(path), flags).map_err(os)
    }

    /// The whole content of the file `path` names (symlinks followed inside the root).
    pub fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        io::Read::read_to_end(&mut self.open_file(path)?, &mut out)?;
        Ok(out)
    }

    /// The directory `path` names, symlinks followed inside the root.
    pub fn dir(&self, path: &str) -> io::Result<Dir> {
        let handle = self.resolve(path)?;
        if !handle.meta()?.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        Ok(Dir::from_fd(handle.0))
    }

    /// The target of the symlink `path` (parents followed inside the root), as written.
    pub fn read_link(&self, path: &str) -> io::Result<PathBuf> {
        self.inner.readlink(inner_path(path)).map_err(os)
    }

    /// Where `handle` sits inside this root, as a clean relative path ("" for the root itself), read from
    /// procfs as libpathrs checks its own resolutions. Needed where a followed link's *real* place matters
    /// (`.dockerignore` applies to the real paths of a context).
    pub fn relative(&self, handle: &Handle) -> io::Result<String> {
        let top = std::fs::read_link(format!("/proc/self/fd/{}", self.inner.as_fd().as_raw_fd()))?;
        let at = std::fs::read_link(handle.proc_path())?;
        match at.strip_prefix(&top) {
            Ok(rel) => Ok(rel.to_string_lossy().into_owned()),
            Err(_) => Err(io::Error::other(format!("{} is not inside {}", at.display(), top.display()))),
        }
    }

    /// Removes `path` (a file, a symlink or an empty directory) inside the root; a missing path is fine.
    pub fn remove(&self, path: &str) -> io::Result<()> {
        let Some((parent, name)) = split_last(path) else { return Ok(()) };
        let dir = match self.dir(&parent) {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        match dir.remove(std::ffi::OsStr::new(&name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// A descriptor (`O_PATH`) of something inside a root: usable for metadata, as a mount source or target
/// (through [`Handle::proc_path`]), or reopened.
#[derive(Debug)]
pub struct Handle(OwnedFd);

impl Handle {
    /// Its metadata (`fstat`; a symlink's own when the handle was resolved without following).
    pub fn meta(&self) -> io::Result<Meta> {
        rustix::fs::fstat(&self.0).map(Meta::from).map_err(io::Error::from)
    }

    /// `/proc/self/fd/N`: the path the kernel resolves to exactly this inode (for mount(2), `cp`).
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.0.as_raw_fd()))
    }

    /// The same path as seen from another process (a tool kiln starts) while this handle is open.
    pub fn path_for_child(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), self.0.as_raw_fd()))
    }

    /// Extended attributes of what the handle names, sorted, overlay's own left out (read through
    /// `/proc/self/fd/N`, which the kernel resolves to exactly this inode); none when unreadable.
    pub fn xattrs(&self) -> Vec<(String, Vec<u8>)> {
        let path = self.proc_path();
        let Ok(names) = xattr::list_deref(&path) else { return Vec::new() };
        dir::sorted_xattrs(names, |n| xattr::get_deref(&path, n))
    }

    /// The handle as a directory to work in, when it is one.
    pub fn into_dir(self) -> io::Result<Dir> {
        if !self.meta()?.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        Ok(Dir::from_fd(self.0))
    }
}

impl AsFd for Handle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A file inside a root, named for later: a layer entry's content, read when the layer is written. It is
/// reopened through its root, the final component never followed, so a file swapped for a symlink after
/// it was listed is refused rather than followed.
#[derive(Clone)]
pub struct RootedPath {
    root: Arc<Root>,
    path: String,
    listed: Option<Meta>,
}

impl RootedPath {
    /// `path` (relative, `/`-separated) inside `root`.
    pub fn new(root: Arc<Root>, path: String) -> RootedPath {
        RootedPath { root, path, listed: None }
    }

    /// `path` inside `root`, with the metadata it had when it was listed (what a content cache can key on
    /// without touching the file again).
    pub fn listed(root: Arc<Root>, path: String, meta: Meta) -> RootedPath {
        RootedPath { root, path, listed: Some(meta) }
    }

    /// The metadata the file had when it was listed, if it was.
    pub fn listed_meta(&self) -> Option<&Meta> {
        self.listed.as_ref()
    }

    /// Opens the file for reading (never through a final symlink).
    pub fn open(&self) -> io::Result<File> {
        self.root.open_file_nofollow(&self.path)
    }

    /// The root it lives in.
    pub fn root(&self) -> &Arc<Root> {
        &self.root
    }

    /// Where it is on the host, for messages only.
    pub fn display(&self) -> PathBuf {
        self.root.path().join(&self.path)
    }
}

/// Opens [`RootedPath`]s one after another, keeping the last parent directory open: files listed together
/// share it, and opening relative to it resolves one name (never followed) instead of the whole path from
/// the root. The directory itself was resolved inside the root, as [`Root::open_file_nofollow`] resolves
/// parents, so the result is the same file.
#[derive(Default)]
pub struct Opener {
    last: Option<(Arc<Root>, String, Dir)>,
}

impl Opener {
    /// Opens `file` for reading (never through a final symlink).
    pub fn open(&mut self, file: &RootedPath) -> io::Result<File> {
        let mut parts = components(&file.path);
        let Some(name) = parts.pop() else { return file.open() };
        let parent = parts.join("/");
        let known = self.last.as_ref().is_some_and(|(root, p, _)| Arc::ptr_eq(root, &file.root) && *p == parent);
        if !known {
            self.last = None;
            let dir = file.root.dir(&parent)?;
            self.last = Some((file.root.clone(), parent, dir));
        }
        match &self.last {
            Some((_, _, dir)) => dir.open_file(std::ffi::OsStr::new(&name)),
            None => file.open(),
        }
    }
}

impl PartialEq for RootedPath {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && (Arc::ptr_eq(&self.root, &other.root) || self.root.path == other.root.path)
    }
}

impl Eq for RootedPath {}

impl std::fmt::Debug for RootedPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RootedPath({} in {})", self.path, self.root.path.display())
    }
}

/// `path` made relative and clean for the root: `/`, `.` and empty parts dropped, `..` clamped at the top
/// (as `path.Clean("/" + p)` does before BuildKit resolves a path in a root).
pub fn clean(path: &str) -> String {
    components(path).join("/")
}

/// The clean components of `path` (see [`clean`]).
pub fn components(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p.to_string()),
        }
    }
    out
}

/// (parent, last name) of a clean path; `None` for the root itself.
fn split_last(path: &str) -> Option<(String, String)> {
    let mut parts = components(path);
    let last = parts.pop()?;
    Some((parts.join("/"), last))
}

/// The path libpathrs gets: never empty (the root itself is `.`).
fn inner_path(path: &str) -> String {
    let clean = clean(path);
    if clean.is_empty() { ".".to_string() } else { clean }
}

/// A libpathrs error as the OS error it carries, so callers can tell "not found" from the rest.
fn os(e: pathrs::error::Error) -> io::Error {
    match e.kind() {
        pathrs::error::ErrorKind::OsError(Some(errno)) => io::Error::from_raw_os_error(errno),
        _ => io::Error::other(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
