//! Placing entries into a tree kiln is building — a snapshot being filled from a layer tar (`apply.rs`) or
//! straight from a COPY's entries (`populate.rs`) — with their metadata exact, as few system calls as a plain
//! copy makes, and the files an earlier snapshot already holds shared instead of written again.
//!
//! Exact: type, content, permission bits (setuid, setgid and sticky included), owner, modification time
//! (whole seconds, as a tar carries them) and xattrs, so what is placed here is the tree applying the layer
//! gives. Cheap: a regular file is created with its final mode, written with one `write` when it is small,
//! and given its time on the open descriptor; `fchown` and `fchmod` are skipped when creating already gave
//! the right owner and mode (the caller's ids, a setgid parent's group, the umask read once).
//!
//! Shared: a [`Donor`] is an earlier snapshot — immutable, like every snapshot — and where it has a file at
//! the same path with the same type, mode, owner, time, size, xattrs and content, the new tree gets a hard
//! link to that inode instead of a copy (content known equal by digest, or compared byte by byte while the
//! layer streams past). A donor inode is linked for one path only: two names become one file only when the
//! layer says so.
//!
//! Every name is created, replaced or removed through its parent's descriptor, and parents are resolved
//! inside the root (`confine`): nothing a layer holds can make a write land outside it, and nothing is ever
//! written through an inode that is already there — whatever is in the way is removed first.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use rustix::fs::{AtFlags, Mode};
use sha2::{Digest as _, Sha256};

use super::apply::{ApplyOptions, ApplyStats};
use super::error::LayerError;
use crate::confine::{self, Dir, Kind, Meta, Root};

mod adopt;
mod content;
mod donor;

use content::{compare, copy_range};
pub use donor::Donor;

/// Files up to this size are read whole and written with one call; larger ones are streamed in pieces.
const WHOLE: usize = 4 << 20;

/// A file's content digest (sha256).
pub type ContentDigest = [u8; 32];

/// What is known of a file a snapshot holds: its content and its xattrs, by digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileNote {
    /// sha256 of the content.
    pub content: ContentDigest,
    /// sha256 of the sorted xattrs ([`xattrs_digest`]).
    pub xattrs: ContentDigest,
}

/// The digest of a sorted list of xattrs, as recorded in a [`FileNote`].
pub fn xattrs_digest(xattrs: &[(String, Vec<u8>)]) -> ContentDigest {
    let mut h = Sha256::new();
    for (name, value) in xattrs {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((value.len() as u64).to_le_bytes());
        h.update(value);
    }
    h.finalize().into()
}

/// What an item is.
#[derive(Debug, Clone, Copy)]
pub enum ItemKind<'a> {
    /// A regular file (its content comes with it).
    File,
    /// A directory.
    Dir,
    /// A symlink to this target (never resolved).
    Symlink(&'a OsStr),
    /// A hard link to this earlier path of the tree.
    Hardlink(&'a str),
    /// A device node or fifo, with its (major, minor).
    Node(Kind, (u32, u32)),
}

/// One entry to place.
pub struct Item<'a> {
    /// Its name as the layer writes it (cleaned here; shown in errors).
    pub raw: &'a str,
    /// What it is.
    pub kind: ItemKind<'a>,
    /// Permission bits with setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Extended attributes, sorted.
    pub xattrs: &'a [(String, Vec<u8>)],
}

/// A regular file's content: a stream of exactly `len` bytes, and its digest when known beforehand.
pub struct Content<'a> {
    /// The bytes.
    pub reader: &'a mut dyn Read,
    /// How many.
    pub len: u64,
    /// sha256 of the bytes, when known (then the donor's note decides without reading either).
    pub digest: Option<ContentDigest>,
}

/// What placing produced besides the tree.
#[derive(Debug, Default)]
pub struct Placed {
    /// Counts and what could not be created.
    pub stats: ApplyStats,
    /// Notes of the regular files whose digest was known, by clean path: the new snapshot's own note.
    pub notes: HashMap<String, FileNote>,
    /// Files shared with the donor (linked, or moved with their directory).
    pub linked: usize,
    /// Directories moved whole out of a movable donor.
    pub adopted: usize,
}

/// The parent directory entries are being placed into, kept while consecutive entries share it.
struct Parent {
    path: String,
    dir: Dir,
    meta: Meta,
}

/// Places items into one tree.
pub struct Placer {
    root: Root,
    chown: bool,
    umask: Option<u32>,
    ids: (u32, u32),
    donor: Option<Donor>,
    parent: Option<Parent>,
    dir_times: Vec<(String, i64)>,
    /// `(device, inode)` of a directory and a name in it that this placement created: an opaque marker
    /// keeps them.
    created: HashSet<(u64, u64, OsString)>,
    /// Donor inodes already linked (each is given to one path only).
    linked: HashSet<(u64, u64)>,
    buf: Vec<u8>,
    out: Placed,
}

impl Placer {
    /// A placer writing into the tree at `root`, sharing `donor`'s identical files.
    pub fn new(root: &Path, opts: &ApplyOptions, donor: Option<Donor>) -> Result<Placer, LayerError> {
        let tree = Root::open(root).map_err(super::error::io("open", root))?;
        Ok(Placer {
            root: tree,
            chown: opts.chown,
            umask: process_umask(),
            ids: (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw()),
            donor,
            parent: None,
            dir_times: Vec::new(),
            created: HashSet::new(),
            linked: HashSet::new(),
            buf: Vec::new(),
            out: Placed::default(),
        })
    }

    /// The tree's root (for hard link targets and whiteouts).
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Places one item; a file's content comes with it.
    pub fn place(&mut self, item: &Item<'_>, content: Option<Content<'_>>) -> Result<(), LayerError> {
        let mut parts = confine::components(item.raw);
        let Some(base) = parts.pop() else { return Ok(()) };
        let parent = parts.join("/");
        self.enter(&parent, item.raw)?;
        let path = if parent.is_empty() { base.clone() } else { format!("{parent}/{base}") };
        let name = OsString::from(base);
        match item.kind {
            ItemKind::Dir => self.dir(item, &path, &name)?,
            ItemKind::File => {
                let mut empty = io::empty();
                match content {
                    Some(content) => self.file(item, &path, &name, content)?,
                    None => self.file(item, &path, &name, Content { reader: &mut empty, len: 0, digest: None })?,
                }
            }
            ItemKind::Symlink(target) => self.symlink(item, &name, target)?,
            ItemKind::Hardlink(target) => self.hard_link(item, &name, target)?,
            ItemKind::Node(kind, device) => self.node(item, &name, kind, device)?,
        }
        let here = &self.current().meta;
        self.created.insert((here.dev(), here.ino(), name));
        self.out.stats.entries += 1;
        Ok(())
    }

    /// Removes `name` (a whiteout `.wh.<name>` in directory `parent`), whatever it is; a missing name is fine.
    /// (Only children of the current directory are ever removed, so the directory kept for the next entries
    /// stays valid.)
    pub fn whiteout(&mut self, parent: &str, name: &str, raw: &str) -> Result<(), LayerError> {
        self.enter(parent, raw)?;
        self.out.stats.whiteouts += 1;
        match self.current().dir.remove_all(OsStr::new(name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other.map_err(at(raw, "remove the whited-out path")),
        }
    }

    /// Empties directory `parent` of everything this placement did not create (an opaque marker).
    pub fn opaque(&mut self, parent: &str, raw: &str) -> Result<(), LayerError> {
        self.enter(parent, raw)?;
        let Parent { dir, meta, .. } = self.current();
        let (dev, ino) = (meta.dev(), meta.ino());
        for name in dir.names().map_err(at(raw, "list the opaque directory"))? {
            if !self.created.contains(&(dev, ino, name.clone())) {
                dir.remove_all(&name).map_err(at(raw, format!("remove {}", name.to_string_lossy())))?;
            }
        }
        self.out.stats.whiteouts += 1;
        Ok(())
    }

    /// Sets the directories' times (creating their children changed them) and returns what was placed.
    pub fn finish(mut self) -> Placed {
        self.parent = None;
        for (path, mtime) in self.dir_times.iter().rev() {
            let mut parts = confine::components(path);
            if let Some(name) = parts.pop()
                && let Ok(dir) = self.root.dir(&parts.join("/"))
            {
                let _ = dir.set_mtime(OsStr::new(&name), *mtime);
            }
        }
        self.out
    }

    /// Makes `parent` (created with its missing parents, inside the root) the current directory.
    fn enter(&mut self, parent: &str, raw: &str) -> Result<(), LayerError> {
        if self.parent.as_ref().is_some_and(|p| p.path == parent) {
            return Ok(());
        }
        let dir = self.root.mkdir_all(parent, 0o755).map_err(at(raw, "create its parent directory"))?;
        let meta = dir.meta().map_err(at(raw, "stat its parent directory"))?;
        self.parent = Some(Parent { path: parent.to_string(), dir, meta });
        Ok(())
    }

    fn current(&self) -> &Parent {
        self.parent.as_ref().unwrap_or_else(|| unreachable!("enter() always runs first"))
    }

    /// Removes whatever is at `name` in the current directory so it can be created anew.
    fn clear(&self, name: &OsStr, raw: &str) -> Result<(), LayerError> {
        self.current().dir.remove_all(name).map_err(at(raw, "replace what is there"))
    }

    /// The owner and group a new inode in the current directory gets without `chown`.
    fn born_owner(&self) -> (u32, u32) {
        let meta = &self.current().meta;
        let gid = if meta.mode() & libc::S_ISGID != 0 { meta.gid() } else { self.ids.1 };
        (self.ids.0, gid)
    }

    /// The owner the item must end up with: its own with `chown`, else what creating gives.
    fn wanted_owner(&self, item: &Item<'_>) -> (u32, u32) {
        if self.chown { (item.uid, item.gid) } else { self.born_owner() }
    }

    /// Whether creating with `mode & 0o777` leaves bits to fix with a chmod.
    fn mode_needs_fixing(&self, mode: u32, dir: bool) -> bool {
        let inherits_setgid = dir && self.current().meta.mode() & libc::S_ISGID != 0;
        mode & 0o7000 != 0 || inherits_setgid || self.umask.is_none_or(|u| mode & 0o777 & u != 0)
    }

    fn dir(&mut self, item: &Item<'_>, path: &str, name: &OsStr) -> Result<(), LayerError> {
        let raw = item.raw;
        let mode = item.mode & 0o7777;
        let existing = match self.current().dir.create_dir(name, mode & 0o777) {
            Ok(()) => None,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let m = self.current().dir.lstat(name).map_err(at(raw, "inspect what is there"))?;
                if m.is_dir() {
                    Some(m)
                } else {
                    self.clear(name, raw)?;
                    self.current().dir.create_dir(name, mode & 0o777).map_err(at(raw, "create the directory"))?;
                    None
                }
            }
            Err(e) => return Err(at(raw, "create the directory")(e)),
        };
        let owner = self.wanted_owner(item);
        let (has_owner, fix_mode) = match &existing {
            Some(m) => ((m.uid(), m.gid()) == owner, m.permissions() != mode),
            None => (self.born_owner() == owner, self.mode_needs_fixing(mode, true)),
        };
        let dir = &self.current().dir;
        let mut degraded = 0;
        if !has_owner && dir.chown(name, owner.0, owner.1).is_err() {
            degraded += 1;
        }
        if fix_mode || !has_owner {
            // A directory kiln just made or found in its own tree: not a symlink, nothing races it.
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(mode), AtFlags::empty())
                .map_err(|e| at(raw, "set the mode")(e.into()))?;
        }
        for (key, value) in item.xattrs {
            if dir.set_xattr(name, key, value).is_err() {
                degraded += 1;
            }
        }
        self.out.stats.degraded += degraded;
        self.dir_times.push((path.to_string(), item.mtime));
        Ok(())
    }

    fn file(&mut self, item: &Item<'_>, path: &str, name: &OsStr, mut content: Content<'_>) -> Result<(), LayerError> {
        let raw = item.raw;
        if let Some(note) = content.digest.map(|d| FileNote { content: d, xattrs: xattrs_digest(item.xattrs) }) {
            self.out.notes.insert(path.to_string(), note);
        }
        let parent = self.current().path.clone();
        match self.donor_file(item, &parent, path, name, &mut content)? {
            Shared::Linked => {
                // The content was known equal by digest and still has to be consumed.
                io::copy(content.reader, &mut io::sink()).map_err(at(raw, "read the content"))?;
                Ok(())
            }
            Shared::LinkedAfterReading => Ok(()),
            Shared::No { prefix, pending, donor } => {
                let mut file = self.create_file(item, name)?;
                if prefix > 0
                    && let Some(donor) = donor
                {
                    copy_range(&donor, &file, prefix).map_err(at(raw, "write the file"))?;
                }
                file.write_all(&pending).map_err(at(raw, "write the file"))?;
                let left = content.len - prefix - pending.len() as u64;
                self.copy_content(content.reader, left, &mut file, raw)?;
                self.finish_file(item, &file)
            }
        }
    }

    fn create_file(&mut self, item: &Item<'_>, name: &OsStr) -> Result<File, LayerError> {
        let mode = item.mode & 0o777;
        match self.current().dir.create_file(name, mode) {
            Ok(file) => Ok(file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.clear(name, item.raw)?;
                self.current().dir.create_file(name, mode).map_err(at(item.raw, "create the file"))
            }
            Err(e) => Err(at(item.raw, "create the file")(e)),
        }
    }

    /// Copies `len` bytes from `reader` into `file`, one write per buffer (one in all for a small file).
    fn copy_content(&mut self, reader: &mut dyn Read, len: u64, file: &mut File, raw: &str) -> Result<(), LayerError> {
        let mut left = len;
        while left > 0 {
            let want = left.min(WHOLE as u64) as usize;
            self.buf.resize(want, 0);
            reader.read_exact(&mut self.buf[..want]).map_err(at(raw, "read the content"))?;
            file.write_all(&self.buf[..want]).map_err(at(raw, "write the file"))?;
            left -= want as u64;
        }
        Ok(())
    }

    /// Owner, mode, xattrs and time of a regular file just written, through its descriptor; each call only
    /// when creating did not already give the right value. Order matters: `chown` clears setuid/setgid bits
    /// and file capabilities, and writing clears capabilities, so those come after.
    fn finish_file(&mut self, item: &Item<'_>, file: &File) -> Result<(), LayerError> {
        let mode = item.mode & 0o7777;
        let owner = self.wanted_owner(item);
        let chowned = owner != self.born_owner();
        if chowned && std::os::unix::fs::fchown(file, Some(owner.0), Some(owner.1)).is_err() {
            self.out.stats.degraded += 1;
        }
        if chowned || self.mode_needs_fixing(mode, false) {
            let perms = std::os::unix::fs::PermissionsExt::from_mode(mode);
            file.set_permissions(perms).map_err(at(item.raw, "set the mode"))?;
        }
        for (key, value) in item.xattrs {
            if rustix::fs::fsetxattr(file, key.as_str(), value, rustix::fs::XattrFlags::empty()).is_err() {
                self.out.stats.degraded += 1;
            }
        }
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(item.mtime.max(0) as u64);
        let _ = file.set_times(std::fs::FileTimes::new().set_accessed(t).set_modified(t));
        Ok(())
    }

    /// Whether the donor has this very file; links it when it does.
    fn donor_file(
        &mut self,
        item: &Item<'_>,
        parent: &str,
        path: &str,
        name: &OsStr,
        content: &mut Content<'_>,
    ) -> Result<Shared, LayerError> {
        let owner = self.wanted_owner(item);
        let Some(donor) = self.donor.as_mut() else { return Ok(Shared::none()) };
        let note = donor.notes.get(path).copied();
        let Some(dir) = donor.dir(parent) else { return Ok(Shared::none()) };
        let Ok(meta) = dir.lstat(name) else { return Ok(Shared::none()) };
        let same_meta = meta.is_file()
            && meta.permissions() == item.mode & 0o7777
            && (meta.uid(), meta.gid()) == owner
            && (meta.mtime(), meta.mtime_nsec()) == (item.mtime.max(0), 0)
            && meta.size() == content.len
            && !self.linked.contains(&(meta.dev(), meta.ino()));
        if !same_meta {
            return Ok(Shared::none());
        }
        let same_xattrs = match note {
            Some(n) => n.xattrs == xattrs_digest(item.xattrs),
            None => dir.xattrs(name) == item.xattrs,
        };
        if !same_xattrs {
            return Ok(Shared::none());
        }
        let read_first = match (note, content.digest) {
            (Some(n), Some(d)) if n.content == d => false,
            (Some(_), Some(_)) => return Ok(Shared::none()),
            _ => true,
        };
        let open = |dir: &Dir| dir.open_file(name).map_err(at(item.raw, "read the earlier snapshot's file"));
        // Opened only to compare or copy: a file known equal by digest is linked by name alone.
        let donor_file = if read_first { Some(open(dir)?) } else { None };
        if let Some(donor_file) = donor_file {
            let (prefix, pending) =
                compare(&donor_file, content, &mut self.buf).map_err(at(item.raw, "read the content"))?;
            if prefix < content.len {
                return Ok(Shared::No { prefix, pending, donor: Some(donor_file) });
            }
        }
        let key = (meta.dev(), meta.ino());
        let linked = self.link_from_donor(name, item.raw)?;
        if !linked {
            // Too many links to that inode (or none allowed): a copy of it is the same file.
            let donor_file = match self.donor.as_mut().and_then(|d| d.dir(parent)) {
                Some(dir) => open(dir)?,
                None => return Err(at(item.raw, "read the earlier snapshot's file")(io::ErrorKind::NotFound.into())),
            };
            let mut file = self.create_file(item, name)?;
            copy_range(&donor_file, &file, content.len).map_err(at(item.raw, "write the file"))?;
            if !read_first {
                io::copy(content.reader, &mut io::sink()).map_err(at(item.raw, "read the content"))?;
            }
            file.flush().map_err(at(item.raw, "write the file"))?;
            self.finish_file(item, &file)?;
            return Ok(Shared::LinkedAfterReading);
        }
        self.linked.insert(key);
        self.out.linked += 1;
        Ok(if read_first { Shared::LinkedAfterReading } else { Shared::Linked })
    }

    /// Hard-links the donor's `name` (in the donor directory matching the current parent) into the tree;
    /// false when the inode cannot take another link.
    fn link_from_donor(&mut self, name: &OsStr, raw: &str) -> Result<bool, LayerError> {
        let parent = self.current().path.clone();
        for attempt in 0..2 {
            let Some(donor) = self.donor.as_mut() else { return Ok(false) };
            let Some(from) = donor.dir(&parent) else { return Ok(false) };
            let into = &self.parent.as_ref().unwrap_or_else(|| unreachable!("entered")).dir;
            match into.hard_link(name, from, name) {
                Ok(()) => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt == 0 => self.clear(name, raw)?,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMLINK | libc::EPERM)) => return Ok(false),
                Err(e) => return Err(at(raw, "link the earlier snapshot's file")(e)),
            }
        }
        Ok(false)
    }

    fn symlink(&mut self, item: &Item<'_>, name: &OsStr, target: &OsStr) -> Result<(), LayerError> {
        let raw = item.raw;
        let owner = self.wanted_owner(item);
        let parent = self.current().path.clone();
        if let Some(donor) = self.donor.as_mut()
            && let Some(dir) = donor.dir(&parent)
            && let Ok(meta) = dir.lstat(name)
            && meta.is_symlink()
            && (meta.uid(), meta.gid()) == owner
            && (meta.mtime(), meta.mtime_nsec()) == (item.mtime.max(0), 0)
            && !self.linked.contains(&(meta.dev(), meta.ino()))
            && dir.read_link(name).is_ok_and(|t| t.as_os_str() == target)
            && dir.xattrs(name) == item.xattrs
        {
            let key = (meta.dev(), meta.ino());
            if self.link_from_donor(name, raw)? {
                self.linked.insert(key);
                self.out.linked += 1;
                return Ok(());
            }
        }
        match self.current().dir.symlink(name, target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.clear(name, raw)?;
                self.current().dir.symlink(name, target).map_err(at(raw, "create the symlink"))?;
            }
            Err(e) => return Err(at(raw, "create the symlink")(e)),
        }
        self.finish_other(item, name, false)
    }

    fn hard_link(&mut self, item: &Item<'_>, name: &OsStr, target: &str) -> Result<(), LayerError> {
        let raw = item.raw;
        let mut parts = confine::components(target);
        let Some(target_name) = parts.pop() else {
            return Err(LayerError::Escape { path: raw.to_string(), reason: "hard link to the root".into() });
        };
        let from = self.root.dir(&parts.join("/")).map_err(at(raw, format!("hard link to {target}")))?;
        if self.current().dir.try_lstat(name).map_err(at(raw, "inspect what is there"))?.is_some() {
            self.clear(name, raw)?;
        }
        self.current()
            .dir
            .hard_link(name, &from, OsStr::new(&target_name))
            .map_err(at(raw, format!("hard link to {target}")))
    }

    fn node(&mut self, item: &Item<'_>, name: &OsStr, kind: Kind, device: (u32, u32)) -> Result<(), LayerError> {
        if self.current().dir.try_lstat(name).map_err(at(item.raw, "inspect what is there"))?.is_some() {
            self.clear(name, item.raw)?;
        }
        if self.current().dir.mknod(name, kind, 0o600, device).is_err() {
            self.out.stats.degraded += 1;
            self.out.stats.dropped.push(confine::clean(item.raw));
            return Ok(());
        }
        self.finish_other(item, name, true)
    }

    /// Owner, xattrs, mode and time of a symlink or node, through its directory.
    fn finish_other(&mut self, item: &Item<'_>, name: &OsStr, chmod: bool) -> Result<(), LayerError> {
        let owner = self.wanted_owner(item);
        let dir = &self.current().dir;
        let chowned = owner != self.born_owner();
        let mut degraded = 0;
        if chowned && dir.chown(name, owner.0, owner.1).is_err() {
            degraded += 1;
        }
        for (key, value) in item.xattrs {
            if dir.set_xattr(name, key, value).is_err() {
                degraded += 1;
            }
        }
        if chmod {
            dir.chmod(name, item.mode & 0o7777).map_err(at(item.raw, "set the mode"))?;
        }
        let _ = dir.set_mtime(name, item.mtime.max(0));
        self.out.stats.degraded += degraded;
        Ok(())
    }
}

/// Whether a file could be shared with the donor.
enum Shared {
    /// Linked; the content (known equal by digest) is still to be consumed.
    Linked,
    /// Linked (or copied from the donor) after the content was read and compared.
    LinkedAfterReading,
    /// Not shared: the first `prefix` bytes equal the donor's (open in `donor`), `pending` was read after
    /// them, and the rest is still to be read.
    No { prefix: u64, pending: Vec<u8>, donor: Option<File> },
}

impl Shared {
    fn none() -> Shared {
        Shared::No { prefix: 0, pending: Vec::new(), donor: None }
    }
}

/// This process's umask, read where the kernel shows it (`Umask:` in /proc/self/status, Linux 4.7+):
/// setting it to read it would change it for every thread for a moment.
fn process_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

/// An error while placing the entry `raw`, doing `what`.
fn at(raw: &str, what: impl Into<String>) -> impl FnOnce(io::Error) -> LayerError {
    let (path, what) = (raw.to_string(), what.into());
    move |source| LayerError::Entry { path, what, source }
}
