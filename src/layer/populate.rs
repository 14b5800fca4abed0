//! Filling a snapshot straight from a COPY's entries while the layer is being written: the tree ends up
//! exactly as applying that layer would leave it (same order, same rules, `place.rs`), but no tar is read
//! back — each regular file's bytes come from the layer writer through a tee as it reads them, so a source
//! is read once and the snapshot holds what the layer holds. Creating files (the snapshot's cost) and
//! compressing (the layer's) run at the same time.
//!
//! With a donor (the snapshot the same step made last time), a file whose digest and metadata match is
//! hard-linked from it and its bytes are skipped. When the donor was taken for this step alone (movable), a
//! directory the tree does not have yet and the donor holds exactly as the entries below it would make it is
//! moved over whole (`place/adopt.rs`), and those entries' bytes are skipped.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;

use super::apply::ApplyOptions;
use super::entry::{Entry, EntryKind};
use super::error::LayerError;
use super::place::{Content, ContentDigest, Donor, Item, ItemKind, Placed, Placer};
use super::tee::TeeReader;
use crate::confine::{self, Kind};

/// Places `entries` — [`super::normalize`]d, the order the layer writer writes them in — into the tree at
/// `root`, reading each regular file's bytes from `content`. `digests` are the files' content digests (by
/// entry path), `clamp` the layer's SOURCE_DATE_EPOCH.
pub fn populate(
    root: &Path,
    entries: &[Entry],
    digests: &HashMap<String, ContentDigest>,
    mut content: TeeReader,
    opts: &ApplyOptions,
    donor: Option<Donor>,
    clamp: Option<i64>,
) -> Result<Placed, LayerError> {
    let movable = donor.as_ref().is_some_and(Donor::is_movable) && all_clean(entries);
    let mut placer = Placer::new(root, opts, donor)?;
    // Entries already in place with a directory adopted from the donor.
    let mut adopted = vec![false; if movable { entries.len() } else { 0 }];
    for (i, entry) in entries.iter().enumerate() {
        let fail = |source| LayerError::Entry { path: entry.path.clone(), what: "receive the content".into(), source };
        if adopted.get(i) == Some(&true) {
            if matches!(entry.kind, EntryKind::File(_)) {
                let next = content.next_file().map_err(fail)?;
                content.file(next).skip_rest().map_err(fail)?;
            }
            continue;
        }
        let mtime = tar_mtime(entry, clamp);
        let mode = entry.mode & 0o7777;
        let kind = match &entry.kind {
            EntryKind::Whiteout => {
                let mut parts = confine::components(&entry.path);
                let Some(name) = parts.pop() else { continue };
                placer.whiteout(&parts.join("/"), &name, &entry.path)?;
                continue;
            }
            EntryKind::OpaqueDir => {
                placer.opaque(&confine::clean(&entry.path), &entry.path)?;
                continue;
            }
            EntryKind::File(_) => ItemKind::File,
            EntryKind::Dir => ItemKind::Dir,
            EntryKind::Symlink(target) => ItemKind::Symlink(OsStr::new(target)),
            EntryKind::Hardlink(target) => ItemKind::Hardlink(target),
            EntryKind::CharDevice(major, minor) => ItemKind::Node(Kind::CharDevice, (*major, *minor)),
            EntryKind::BlockDevice(major, minor) => ItemKind::Node(Kind::BlockDevice, (*major, *minor)),
            EntryKind::Fifo => ItemKind::Node(Kind::Fifo, (0, 0)),
        };
        let item = Item { raw: &entry.path, kind, mode, uid: entry.uid, gid: entry.gid, mtime, xattrs: &entry.xattrs };
        if movable
            && matches!(kind, ItemKind::Dir)
            && adopt_run(&mut placer, entries, i, digests, clamp, &mut adopted, &mut content)?
        {
            continue;
        }
        if !matches!(kind, ItemKind::File) {
            placer.place(&item, None)?;
            continue;
        }
        let next = content.next_file().map_err(fail)?;
        let len = next.0;
        let mut bytes = content.file(next);
        let digest = digests.get(&entry.path).copied();
        placer.place(&item, Some(Content { reader: &mut bytes, len, digest }))?;
        bytes.skip_rest().map_err(fail)?;
    }
    Ok(placer.finish())
}

/// An entry's mtime as the layer's tar header has it.
fn tar_mtime(entry: &Entry, clamp: Option<i64>) -> i64 {
    clamp.map_or(entry.mtime, |limit| entry.mtime.min(limit)).max(0)
}

/// Moves the directory at `i` over from the donor when it is exactly what the entries below it make, then
/// each directory that comes right after what it holds, while they can be moved too; whether `i` was.
/// The directories after it are moved before their turn, as soon as the one before them is in place
/// (nothing between them is left to place, so the tree is what their turn would find): the layer writer
/// is told at once that their files' bytes are not needed, before it gets to them. Marks every entry
/// it put in place in `adopted`.
fn adopt_run(
    placer: &mut Placer,
    entries: &[Entry],
    i: usize,
    digests: &HashMap<String, ContentDigest>,
    clamp: Option<i64>,
    adopted: &mut [bool],
    content: &mut TeeReader,
) -> Result<bool, LayerError> {
    let (mut at, mut files) = (i, 0u64);
    while let Some(entry) = entries.get(at).filter(|e| matches!(e.kind, EntryKind::Dir) && alone(entries, at)) {
        let (uid, gid, xattrs) = (entry.uid, entry.gid, &entry.xattrs);
        let mode = entry.mode & 0o7777;
        let item =
            Item { raw: &entry.path, kind: ItemKind::Dir, mode, uid, gid, mtime: tar_mtime(entry, clamp), xattrs };
        let below = block(entries, &entry.path);
        if !placer.adopt(&item, &entries[below.clone()], digests, clamp)? {
            break;
        }
        files += entries[below.clone()].iter().filter(|e| matches!(e.kind, EntryKind::File(_))).count() as u64;
        content.not_needed(files);
        adopted[at] = true;
        adopted[below.clone()].fill(true);
        at = below.end.max(at + 1);
    }
    Ok(at != i)
}

/// Whether every path is clean (no empty, `.` or `..` component): only then are the entries below a directory
/// `D` exactly the one block of paths starting with `D/`.
fn all_clean(entries: &[Entry]) -> bool {
    entries.iter().all(|e| e.path.split('/').all(|c| !c.is_empty() && c != "." && c != ".."))
}

/// Whether entry `i` is the only one with its path (no opaque marker or replacement beside it).
fn alone(entries: &[Entry], i: usize) -> bool {
    let path = &entries[i].path;
    !(i > 0 && entries[i - 1].path == *path) && entries.get(i + 1).is_none_or(|e| e.path != *path)
}

/// The range of `entries` (sorted by path) below the directory `path`: those starting with `path/`.
fn block(entries: &[Entry], path: &str) -> std::ops::Range<usize> {
    let (below, after) = (format!("{path}/"), format!("{path}0"));
    let start = entries.partition_point(|e| e.path.as_str() < below.as_str());
    let end = entries.partition_point(|e| e.path.as_str() < after.as_str());
    start..end.max(start)
}
