//! Unpacked rootfs directories keyed by layer chain id: `kiln/snapshots/<hex>/` (a full rootfs) and
//! `kiln/snapshots/<hex>.diff/` (a RUN step's overlay upper dir), each holding the tree in `fs/` and a
//! completion marker `complete` (the chain id).
//!
//! A snapshot is filled in this process's temp dir, its marker written and fsync'd last, and the whole
//! directory renamed into place: readers see all of it or nothing, and a directory without its marker is
//! never used (an older kiln's, or anything else half-made) — `fsck --repair` and `prune` remove those.
//! Two builds creating the same snapshot both succeed; the second discards its copy and uses the first.
//! Removal goes through the trash (`Store::discard`), never in place.

use std::path::{Path, PathBuf};

use oci_spec::image::Digest;

use super::error::{StoreError, io};
use super::{Store, blobs};

/// The completion marker inside a snapshot directory.
pub(super) const MARKER: &str = "complete";

/// The tree inside a snapshot directory.
pub(super) const TREE: &str = "fs";

impl Store {
    /// The directory holding all snapshots (overlay lower dirs are named relative to it).
    pub fn snapshot_dir(&self) -> PathBuf {
        self.kiln_dir().join("snapshots")
    }

    /// The full snapshot of `chain_id` (its rootfs), when it exists and is complete.
    pub fn snapshot(&self, chain_id: &Digest) -> Option<PathBuf> {
        complete_tree(&self.snapshot_dir().join(chain_id.digest()))
    }

    /// The diff snapshot for `chain_id` (a RUN step's overlay upper dir, kept as it was), when complete.
    pub fn diff_snapshot(&self, chain_id: &Digest) -> Option<PathBuf> {
        complete_tree(&self.snapshot_dir().join(diff_name(chain_id)))
    }

    /// Creates the snapshot for `chain_id` by filling an empty directory with `fill`, then publishing it.
    pub fn create_snapshot(
        &self,
        chain_id: &Digest,
        fill: impl FnOnce(&Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>>,
    ) -> Result<PathBuf, StoreError> {
        if let Some(existing) = self.snapshot(chain_id) {
            return Ok(existing);
        }
        let staging = self.staging_dir()?;
        let tree = staging.join(TREE);
        std::fs::create_dir(&tree).map_err(io("create", &tree))?;
        if let Err(e) = fill(&tree) {
            let _ = super::session::remove_tree(&staging);
            return Err(StoreError::Snapshot { chain_id: chain_id.to_string(), message: e.to_string() });
        }
        self.publish(chain_id, &staging, chain_id.digest())
    }

    /// Moves a finished overlay upper dir in as the diff snapshot of `chain_id` (renames, no copy).
    pub fn publish_diff_snapshot(&self, chain_id: &Digest, upper: &Path) -> Result<PathBuf, StoreError> {
        let staging = self.adopt(upper)?;
        self.publish(chain_id, &staging, &diff_name(chain_id))
    }

    /// Moves a finished rootfs directory in as the snapshot of `chain_id` (renames, no copy).
    pub fn publish_snapshot(&self, chain_id: &Digest, rootfs: &Path) -> Result<PathBuf, StoreError> {
        let staging = self.adopt(rootfs)?;
        self.publish(chain_id, &staging, chain_id.digest())
    }

    /// Takes the full snapshot of `chain_id` out of the store into `into` (a rename) for a step that will
    /// change it in place; returns its rootfs, or `None` when there is no complete snapshot to take.
    pub fn claim_snapshot(&self, chain_id: &Digest, into: &Path) -> Option<PathBuf> {
        let dir = self.snapshot_dir().join(chain_id.digest());
        complete_tree(&dir)?;
        std::fs::rename(&dir, into).ok()?;
        blobs::sync_dir(&self.snapshot_dir()).ok()?;
        Some(into.join(TREE))
    }

    /// An empty directory in this process's temp area to build a snapshot directory in.
    fn staging_dir(&self) -> Result<PathBuf, StoreError> {
        let dir = self.session_dir();
        Ok(tempfile::Builder::new().prefix("snap-").tempdir_in(&dir).map_err(io("create a temp dir in", &dir))?.keep())
    }

    /// A staging directory with `tree` moved in as its `fs/`.
    fn adopt(&self, tree: &Path) -> Result<PathBuf, StoreError> {
        let staging = self.staging_dir()?;
        let target = staging.join(TREE);
        std::fs::rename(tree, &target).map_err(io("rename into", &target))?;
        Ok(staging)
    }

    /// Marks `staging` complete and renames it to `snapshots/<name>`; when another process got there first
    /// with a complete snapshot, ours is discarded; an incomplete directory in the way is discarded instead.
    fn publish(&self, chain_id: &Digest, staging: &Path, name: &str) -> Result<PathBuf, StoreError> {
        let marker = staging.join(MARKER);
        let mut file = std::fs::File::create(&marker).map_err(io("create", &marker))?;
        std::io::Write::write_all(&mut file, format!("{chain_id}\n").as_bytes()).map_err(io("write", &marker))?;
        file.sync_all().map_err(io("fsync", &marker))?;
        blobs::sync_dir(staging)?;
        let target = self.snapshot_dir().join(name);
        for _ in 0..2 {
            match std::fs::rename(staging, &target) {
                Ok(()) => {
                    blobs::sync_dir(&self.snapshot_dir())?;
                    return Ok(target.join(TREE));
                }
                Err(_) if complete_tree(&target).is_some() => {
                    self.discard(staging)?;
                    return Ok(target.join(TREE));
                }
                Err(_) if target.exists() => {
                    self.discard(&target)?;
                }
                Err(e) => {
                    let _ = self.discard(staging);
                    return Err(io("rename into", &target)(e));
                }
            }
        }
        let _ = self.discard(staging);
        Err(io("rename into", &target)(std::io::Error::other("another process keeps replacing it")))
    }
}

/// `<hex>.diff`, the directory name of a diff snapshot.
fn diff_name(chain_id: &Digest) -> String {
    format!("{}.diff", chain_id.digest())
}

/// The tree of the snapshot directory `dir` when its completion marker is there.
pub(super) fn complete_tree(dir: &Path) -> Option<PathBuf> {
    let tree = dir.join(TREE);
    (dir.join(MARKER).is_file() && tree.is_dir()).then_some(tree)
}
