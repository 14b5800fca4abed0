//! Adopting whole directories from a movable donor: when a COPY's directory is exactly what the donor (the
//! snapshot the same step made last time, taken out of the store for this placement alone) already holds at
//! that path — every name, type, mode, owner, time, xattr and content digest — the donor's directory is
//! moved into the new tree with one `renameat2` instead of linking each of its files: a COPY of 20,000 files
//! in which one changed moves 199 directories and links 99 files.
//!
//! Everything is checked before the move, on the donor only, through directory descriptors (`confine`);
//! any doubt — an entry kind other than a file or directory, an xattr, a digest unknown on either side, a
//! name the entries do not have, an inode already given to another path — leaves the directory to the
//! file-by-file path (whose subdirectories may still be adopted as placing reaches them).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;

use super::{FileNote, Item, ItemKind, Placer, xattrs_digest};
use crate::confine::{Dir, Meta};
use crate::layer::entry::{Entry, EntryKind};
use crate::layer::error::LayerError;
use crate::layer::place::ContentDigest;

/// What adopting one directory brings along, known before anything moves.
struct Plan {
    /// The notes of its files, by clean path.
    notes: Vec<(String, FileNote)>,
    /// Their `(device, inode)`s (each given to one path only).
    inodes: Vec<(u64, u64)>,
}

/// One directory of the subtree as the entries make it.
struct Wanted<'a> {
    mode: u32,
    owner: (u32, u32),
    mtime: i64,
    children: Vec<&'a str>,
}

impl Placer {
    /// Moves the donor's directory at `item` (a directory entry that the tree does not have yet) into the tree
    /// when it is exactly what `block` — all the entries below it, in order — would make there; `digests` are
    /// the files' content digests, `clamp` the layer's SOURCE_DATE_EPOCH. False when nothing was done (then
    /// place the entries as usual); true when the directory and everything in `block` is in place.
    pub fn adopt(
        &mut self,
        item: &Item<'_>,
        block: &[Entry],
        digests: &HashMap<String, ContentDigest>,
        clamp: Option<i64>,
    ) -> Result<bool, LayerError> {
        if !self.donor.as_ref().is_some_and(|d| d.movable)
            || !matches!(item.kind, ItemKind::Dir)
            || !item.xattrs.is_empty()
            || block.is_empty()
        {
            return Ok(false);
        }
        let path = item.raw;
        let (parent, base) = path.rsplit_once('/').unwrap_or(("", path));
        let name = OsStr::new(base);
        self.enter(parent, path)?;
        if !matches!(self.current().dir.try_lstat(name), Ok(None)) {
            return Ok(false);
        }
        let Some(plan) = self.plan(item, block, digests, clamp) else { return Ok(false) };
        let Some(donor) = self.donor.as_mut() else { return Ok(false) };
        let Some(from) = donor.dir(parent) else { return Ok(false) };
        let into = &self.parent.as_ref().unwrap_or_else(|| unreachable!("entered")).dir;
        if from.rename_to(name, into, name).is_err() {
            return Ok(false);
        }
        // A directory the donor had open may have moved with it.
        donor.parent = None;
        let here = self.current().meta;
        self.created.insert((here.dev(), here.ino(), name.to_os_string()));
        // Renaming keeps a directory's time on the filesystems kiln runs on; set it anyway, with the others.
        self.dir_times.push((path.to_string(), item.mtime));
        self.linked.extend(plan.inodes.iter().copied());
        self.out.linked += plan.inodes.len();
        self.out.notes.extend(plan.notes);
        self.out.stats.entries += 1 + block.len();
        self.out.adopted += 1;
        Ok(true)
    }

    /// What adopting the donor's `item` would bring, when its subtree is exactly what `block` makes.
    fn plan(
        &mut self,
        item: &Item<'_>,
        block: &[Entry],
        digests: &HashMap<String, ContentDigest>,
        clamp: Option<i64>,
    ) -> Option<Plan> {
        let root_owner = self.wanted_owner(item);
        let mut dirs: HashMap<&str, Wanted<'_>> = HashMap::new();
        dirs.insert(
            item.raw,
            Wanted { mode: item.mode & 0o7777, owner: root_owner, mtime: item.mtime, children: Vec::new() },
        );
        let no_xattrs = xattrs_digest(&[]);
        let mut files = Vec::new();
        let mut previous = item.raw;
        // First what needs no system call: kinds, parents, owners, digests.
        for entry in block {
            if entry.path == previous || !entry.xattrs.is_empty() {
                return None;
            }
            previous = &entry.path;
            let (parent, name) = entry.path.rsplit_once('/')?;
            let wanted = dirs.get_mut(parent)?;
            wanted.children.push(name);
            let (parent_mode, parent_gid) = (wanted.mode, wanted.owner.1);
            let owner = if self.chown {
                (entry.uid, entry.gid)
            } else {
                (self.ids.0, if parent_mode & libc::S_ISGID != 0 { parent_gid } else { self.ids.1 })
            };
            let mtime = clamp.map_or(entry.mtime, |limit| entry.mtime.min(limit)).max(0);
            let mode = entry.mode & 0o7777;
            match entry.kind {
                EntryKind::Dir => {
                    dirs.insert(&entry.path, Wanted { mode, owner, mtime, children: Vec::new() });
                }
                EntryKind::File(_) => {
                    let digest = digests.get(&entry.path)?;
                    let note = *self.donor.as_ref()?.notes.get(&entry.path)?;
                    if note.content != *digest || note.xattrs != no_xattrs {
                        return None;
                    }
                    files.push((entry, parent, name, mode, owner, mtime, note));
                }
                _ => return None,
            }
        }
        // Then the donor: its directories (names included), then its files.
        let donor = self.donor.as_mut()?;
        let (parent, base) = item.raw.rsplit_once('/').unwrap_or(("", item.raw));
        let top = donor.dir(parent)?;
        let mut open: HashMap<&str, Dir> = HashMap::new();
        let mut order: Vec<&str> = vec![item.raw];
        order.extend(block.iter().filter(|e| matches!(e.kind, EntryKind::Dir)).map(|e| e.path.as_str()));
        for path in order {
            let (up, name) = path.rsplit_once('/').unwrap_or(("", path));
            let within = if path == item.raw { top } else { open.get(up)? };
            let name = OsStr::new(if path == item.raw { base } else { name });
            let wanted = dirs.get_mut(path)?;
            let meta = within.lstat(name).ok()?;
            if !meta.is_dir()
                || !same_meta(&meta, wanted.mode, wanted.owner, wanted.mtime)
                || !within.xattrs(name).is_empty()
            {
                return None;
            }
            let dir = within.dir(name).ok()?;
            wanted.children.sort_unstable();
            let names = dir.names().ok()?;
            if names.len() != wanted.children.len() || names.iter().zip(&wanted.children).any(|(a, b)| a != *b) {
                return None;
            }
            open.insert(path, dir);
        }
        let mut inodes = Vec::with_capacity(files.len());
        let mut seen = HashSet::with_capacity(files.len());
        let mut notes = Vec::with_capacity(files.len());
        for (entry, parent, name, mode, owner, mtime, note) in files {
            let meta = open.get(parent)?.lstat(OsStr::new(name)).ok()?;
            let key = (meta.dev(), meta.ino());
            if !meta.is_file()
                || !same_meta(&meta, mode, owner, mtime)
                || self.linked.contains(&key)
                || !seen.insert(key)
            {
                return None;
            }
            inodes.push(key);
            notes.push((entry.path.clone(), note));
        }
        Some(Plan { notes, inodes })
    }
}

/// Whether `meta` has exactly this mode, owner and time (whole seconds, as kiln places them).
fn same_meta(meta: &Meta, mode: u32, owner: (u32, u32), mtime: i64) -> bool {
    meta.permissions() == mode && (meta.uid(), meta.gid()) == owner && (meta.mtime(), meta.mtime_nsec()) == (mtime, 0)
}
