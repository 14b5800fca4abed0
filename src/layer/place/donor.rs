//! The donor: an earlier snapshot (immutable, like every snapshot) whose identical files a new tree links,
//! and — when it was taken out of the store for one placement alone — whose unchanged directories it may
//! move over whole (`adopt.rs`).

use std::collections::HashMap;
use std::io;
use std::path::Path;

use super::FileNote;
use crate::confine::{Dir, Root};

/// An earlier snapshot whose identical files a new one links instead of writing, with what its note says of
/// its files (by clean path).
pub struct Donor {
    pub(super) root: Root,
    pub(super) notes: HashMap<String, FileNote>,
    /// The donor directory matching the parent being placed into (`None`: the donor has none there).
    pub(super) parent: Option<(String, Option<Dir>)>,
    /// Whether whole directories may be moved out of it into the new tree (`adopt.rs`): it was taken out of
    /// the store for this placement alone.
    pub(super) movable: bool,
    /// Whatever keeps the donor unchanged while it is used (the store's lease on it), or removes what is left
    /// of a movable one.
    _hold: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Donor {
    /// The snapshot tree at `tree`, with the notes of its files.
    pub fn open(tree: &Path, notes: HashMap<String, FileNote>) -> io::Result<Donor> {
        Ok(Donor { root: Root::open(tree)?, notes, parent: None, movable: false, _hold: None })
    }

    /// The donor, keeping `hold` (a lease on it) for as long as it is used.
    pub fn holding(mut self, hold: impl std::any::Any + Send + Sync) -> Donor {
        self._hold = Some(Box::new(hold));
        self
    }

    /// The donor, taken for this placement alone: whole directories that are exactly what the entries make
    /// are moved into the new tree instead of linked file by file. `leftovers` removes what is left of it
    /// when the donor is dropped.
    pub fn movable(mut self, leftovers: impl std::any::Any + Send + Sync) -> Donor {
        self.movable = true;
        self._hold = Some(Box::new(leftovers));
        self
    }

    /// Whether directories may be moved out of it ([`Donor::movable`]).
    pub fn is_movable(&self) -> bool {
        self.movable
    }

    /// The donor's directory at `parent` (kept while consecutive entries share it).
    pub(super) fn dir(&mut self, parent: &str) -> Option<&Dir> {
        if self.parent.as_ref().is_none_or(|(p, _)| p != parent) {
            self.parent = Some((parent.to_string(), self.root.dir(parent).ok()));
        }
        self.parent.as_ref().and_then(|(_, d)| d.as_ref())
    }
}
