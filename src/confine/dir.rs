//! A directory descriptor inside a root and what can be done to one *name* in it: list, stat, open, read a
//! link, create, remove, change owner/mode/times/xattrs. A name is one path component; nothing here follows
//! a symlink, so whatever a tree holds, work through a `Dir` stays in the directory it was given.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{AtFlags, Mode, OFlags, Timestamps};

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
}

/// An inode's metadata (`stat`), read through a descriptor.
#[derive(Clone, Copy)]
pub struct Meta(rustix::fs::Stat);

impl From<rustix::fs::Stat> for Meta {
    fn from(stat: rustix::fs::Stat) -> Meta {
        Meta(stat)
    }
}

impl std::fmt::Debug for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Meta({:?} {:o} {}:{} size {})", self.kind(), self.mode(), self.uid(), self.gid(), self.size())
    }
}

#[allow(clippy::unnecessary_cast)] // the stat field types differ between architectures
impl Meta {
    /// What it is.
    pub fn kind(&self) -> Kind {
        match self.0.st_mode as u32 & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFCHR => Kind::CharDevice,
            libc::S_IFBLK => Kind::BlockDevice,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            _ => Kind::File,
        }
    }
    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.kind() == Kind::Dir
    }
    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.kind() == Kind::File
    }
    /// A symlink.
    pub fn is_symlink(&self) -> bool {
        self.kind() == Kind::Symlink
    }
    /// `st_mode`: type and permission bits.
    pub fn mode(&self) -> u32 {
        self.0.st_mode as u32
    }
    /// Permission bits with setuid/setgid/sticky.
    pub fn permissions(&self) -> u32 {
        self.mode() & 0o7777
    }
    /// Owner.
    pub fn uid(&self) -> u32 {
        self.0.st_uid as u32
    }
    /// Group.
    pub fn gid(&self) -> u32 {
        self.0.st_gid as u32
    }
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.0.st_size as u64
    }
    /// Modification time, seconds.
    pub fn mtime(&self) -> i64 {
        self.0.st_mtime as i64
    }
    /// Modification time, nanoseconds part.
    pub fn mtime_nsec(&self) -> i64 {
        self.0.st_mtime_nsec as i64
    }
    /// Change time, seconds.
    pub fn ctime(&self) -> i64 {
        self.0.st_ctime as i64
    }
    /// Change time, nanoseconds part.
    pub fn ctime_nsec(&self) -> i64 {
        self.0.st_ctime_nsec as i64
    }
    /// Device of the filesystem.
    pub fn dev(&self) -> u64 {
        self.0.st_dev as u64
    }
    /// Inode number.
    pub fn ino(&self) -> u64 {
        self.0.st_ino as u64
    }
    /// Hard link count.
    pub fn nlink(&self) -> u64 {
        self.0.st_nlink as u64
    }
    /// (major, minor) of a device node.
    pub fn device(&self) -> (u32, u32) {
        let rdev = self.0.st_rdev as u64;
        (rustix::fs::major(rdev), rustix::fs::minor(rdev))
    }
}

/// A directory inside a root, held by a descriptor; every operation names one entry of it.
#[derive(Debug)]
pub struct Dir(OwnedFd);

impl Dir {
    pub(super) fn from_fd(fd: OwnedFd) -> Dir {
        Dir(fd)
    }

    /// The directory's own metadata.
    pub fn meta(&self) -> io::Result<Meta> {
        Ok(Meta(rustix::fs::fstat(&self.0)?))
    }

    /// `/proc/self/fd/N`: the kernel's path to exactly this directory (for mount(2)).
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.0.as_raw_fd()))
    }

    /// The names in the directory, sorted, without `.` and `..`.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let fd = rustix::fs::openat(&self.0, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::new(fd)? {
            let name = entry?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(<OsString as std::os::unix::ffi::OsStringExt>::from_vec(name));
            }
        }
        names.sort();
        Ok(names)
    }

    /// Metadata of the entry `name` itself (a symlink's own).
    pub fn lstat(&self, name: &OsStr) -> io::Result<Meta> {
        Ok(Meta(rustix::fs::statat(&self.0, checked(name)?, AtFlags::SYMLINK_NOFOLLOW)?))
    }

    /// [`Dir::lstat`], `None` when there is no such entry.
    pub fn try_lstat(&self, name: &OsStr) -> io::Result<Option<Meta>> {
        match self.lstat(name) {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The subdirectory `name` (never through a symlink).
    pub fn dir(&self, name: &OsStr) -> io::Result<Dir> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        Ok(Dir(rustix::fs::openat(&self.0, checked(name)?, flags, Mode::empty())?))
    }

    /// Opens the file `name` for reading (never through a symlink).
    pub fn open_file(&self, name: &OsStr) -> io::Result<File> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
        Ok(File::from(rustix::fs::openat(&self.0, checked(name)?, flags, Mode::empty())?))
    }

    /// The target of the symlink `name`, as written.
    pub fn read_link(&self, name: &OsStr) -> io::Result<PathBuf> {
        let target = rustix::fs::readlinkat(&self.0, checked(name)?, Vec::new())?;
        Ok(PathBuf::from(<OsString as std::os::unix::ffi::OsStringExt>::from_vec(target.into_bytes())))
    }

    /// Extended attributes of the entry `name` (not following it), sorted; overlay's own are left out.
    /// Listed relative to this directory, values read through `/proc/self/fd/N/name`, which pins it; none
    /// when they cannot be read.
    pub fn xattrs(&self, name: &OsStr) -> Vec<(String, Vec<u8>)> {
        let Ok(name) = checked(name) else { return Vec::new() };
        let path = || self.proc_path().join(name);
        // Most files have none: one listxattrat relative to this directory answers that, where a path
        // through /proc costs a lookup of four components (a third of a COPY's walk of a large context).
        let listed = CString::new(name.as_bytes()).ok().and_then(|c| crate::sys::list_xattrs_at(self.0.as_fd(), &c));
        let names: Vec<OsString> = match listed {
            Some(Ok(list)) => {
                list.split(|b| *b == 0).filter(|n| !n.is_empty()).map(|n| OsStr::from_bytes(n).into()).collect()
            }
            // Any failure (a seccomp profile answering with an unexpected errno included) is left to the
            // path through /proc, as before this call existed: never an empty list by mistake.
            Some(Err(_)) | None => match xattr::list(path()) {
                Ok(names) => names.collect(),
                Err(_) => return Vec::new(),
            },
        };
        if names.is_empty() {
            return Vec::new();
        }
        let path = path();
        sorted_xattrs(names.into_iter(), |n| xattr::get(&path, n))
    }

    /// Sets one extended attribute on the entry `name` (not following it).
    pub fn set_xattr(&self, name: &OsStr, key: &str, value: &[u8]) -> io::Result<()> {
        xattr::set(self.proc_path().join(checked(name)?), key, value)
    }

    /// Creates the directory `name`.
    pub fn create_dir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        Ok(rustix::fs::mkdirat(&self.0, checked(name)?, Mode::from_raw_mode(mode))?)
    }

    /// Creates the regular file `name` (it must not exist) and opens it for writing.
    pub fn create_file(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        Ok(File::from(rustix::fs::openat(&self.0, checked(name)?, flags, Mode::from_raw_mode(mode))?))
    }

    /// Creates the symlink `name` pointing at `target` (never resolved here).
    pub fn symlink(&self, name: &OsStr, target: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::symlinkat(target, &self.0, checked(name)?)?)
    }

    /// Creates `name` as a hard link to `from_name` in `from` (a symlink is linked, not followed).
    pub fn hard_link(&self, name: &OsStr, from: &Dir, from_name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::linkat(&from.0, checked(from_name)?, &self.0, checked(name)?, AtFlags::empty())?)
    }

    /// Moves the entry `name` to `to_name` in `to` (one `renameat2`), never replacing anything there
    /// (`EEXIST`); both directories must be on one filesystem (`EXDEV` otherwise).
    pub fn rename_to(&self, name: &OsStr, to: &Dir, to_name: &OsStr) -> io::Result<()> {
        let flags = rustix::fs::RenameFlags::NOREPLACE;
        Ok(rustix::fs::renameat_with(&self.0, checked(name)?, &to.0, checked(to_name)?, flags)?)
    }

    /// Creates a device node or fifo `name`.
    pub fn mknod(&self, name: &OsStr, kind: Kind, mode: u32, device: (u32, u32)) -> io::Result<()> {
        let file_type = match kind {
            Kind::CharDevice => rustix::fs::FileType::CharacterDevice,
            Kind::BlockDevice => rustix::fs::FileType::BlockDevice,
            Kind::Fifo => rustix::fs::FileType::Fifo,
            _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        let dev = rustix::fs::makedev(device.0, device.1);
        Ok(rustix::fs::mknodat(&self.0, checked(name)?, file_type, Mode::from_raw_mode(mode), dev)?)
    }

    /// Changes the owner of `name` (a symlink's own).
    pub fn chown(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        let (uid, gid) = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid));
        Ok(rustix::fs::chownat(&self.0, checked(name)?, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)?)
    }

    /// Sets the permission bits of `name`, which must not be a symlink (checked through a descriptor).
    pub fn chmod(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.0, checked(name)?, flags, Mode::empty())?;
        if rustix::fs::fstat(&fd)?.st_mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        // fchmod refuses O_PATH descriptors; the magic link names exactly this inode.
        Ok(rustix::fs::chmod(format!("/proc/self/fd/{}", fd.as_raw_fd()), Mode::from_raw_mode(mode))?)
    }

    /// Sets the access and modification times of `name` (a symlink's own) to `mtime` seconds.
    pub fn set_mtime(&self, name: &OsStr, mtime: i64) -> io::Result<()> {
        let t = rustix::fs::Timespec { tv_sec: mtime, tv_nsec: 0 };
        let times = Timestamps { last_access: t, last_modification: t };
        Ok(rustix::fs::utimensat(&self.0, checked(name)?, &times, AtFlags::SYMLINK_NOFOLLOW)?)
    }

    /// Removes the entry `name`: a file, a symlink or an empty directory.
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        let meta = self.lstat(name)?;
        let flags = if meta.is_dir() { AtFlags::REMOVEDIR } else { AtFlags::empty() };
        Ok(rustix::fs::unlinkat(&self.0, checked(name)?, flags)?)
    }

    /// Removes the entry `name` and, for a directory, everything in it (made writable first, as an image's
    /// read-only directories must go too).
    pub fn remove_all(&self, name: &OsStr) -> io::Result<()> {
        let meta = self.lstat(name)?;
        if meta.is_dir() {
            if meta.permissions() & 0o700 != 0o700 {
                self.chmod(name, meta.permissions() | 0o700)?;
            }
            let child = self.dir(name)?;
            for inner in child.names()? {
                child.remove_all(&inner)?;
            }
        }
        self.remove(name)
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The attributes `names` lists with their values from `get`, sorted; overlay's own are never carried.
pub(super) fn sorted_xattrs(
    names: impl Iterator<Item = OsString>,
    get: impl Fn(&str) -> io::Result<Option<Vec<u8>>>,
) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = names
        .filter_map(|n| n.into_string().ok())
        .filter(|n| !n.starts_with("trusted.overlay.") && !n.starts_with("user.overlay."))
        .filter_map(|n| get(&n).ok().flatten().map(|v| (n, v)))
        .collect();
    out.sort();
    out
}

/// `name` when it is one plain component (no `/`, not empty, `.` or `..`), else `EINVAL`: what makes every
/// operation above stay in its directory.
fn checked(name: &OsStr) -> io::Result<&OsStr> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not a plain file name")));
    }
    Ok(name)
}
