//! Unpacked rootfs directories keyed by layer chain id: `kiln/snapshots/<hex>/` (a full rootfs) and
//! `kiln/snapshots/<hex>.diff/` (a RUN step's overlay upper dir), each holding the tree in `fs/`, a
//! completion marker `complete` (the chain id), and optional notes beside them (what the snapshot was made
//! from, the content digests of its files: see `build/snapshot/`).
//!
//! A snapshot is filled in this process's temp dir ([`Staged`]), its marker written and fsync'd last, and the
//! whole directory renamed into place: readers see all of it or nothing, and a directory without its marker is
//! never used (an older kiln's, or anything else half-made) — `fsck --repair` and `prune` remove those.
//! Two builds creating the same snapshot both succeed; the second discards its copy and uses the first.
//! Removal goes through the trash (`Store::discard`), never in place.
//!
//! Snapshots share inodes (a new one hard-links the unchanged files of an older one), so a snapshot may be
//! changed in place only when nothing else can see it: readers hold a [`Lease`] (a shared `flock` on the
//! marker) while they use a snapshot, and [`Store::claim_snapshot`] — the one way to take a snapshot for
//! changing — needs the exclusive lock, so it never takes a tree someone is reading or linking from.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::Digest;

use super::error::{StoreError, io};
use super::{Store, blobs};

/// The completion marker inside a snapshot directory.
pub(super) const MARKER: &str = "complete";

/// The tree inside a snapshot directory.
pub(super) const TREE: &str = "fs";

/// A snapshot being filled in this process's temp area, published under its chain id once that is known.
/// Dropped unpublished, it is removed (and a killed process's is removed by the next start).
#[derive(Debug)]
pub struct Staged {
    dir: Option<PathBuf>,
}

impl Staged {
    /// The (empty at first) tree to fill.
    pub fn tree(&self) -> PathBuf {
        self.dir().join(TREE)
    }

    /// Keeps `bytes` as the note `name` beside the tree (published with it).
    pub fn set_note(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.dir().join(note_name(name));
        std::fs::write(&path, bytes).map_err(io("write", &path))
    }

    /// Publishes the tree as the full snapshot of `chain_id`; returns its tree (another process's, when one
    /// got there first).
    pub fn publish(mut self, store: &Store, chain_id: &Digest) -> Result<PathBuf, StoreError> {
        let dir = self.dir.take().unwrap_or_default();
        store.publish(chain_id, &dir, chain_id.digest())
    }

    fn dir(&self) -> &Path {
        self.dir.as_deref().unwrap_or(Path::new(""))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = super::session::remove_tree(&dir);
        }
    }
}

/// A complete snapshot held for reading: while a lease is held, no step claims the snapshot to change it in
/// place. Released on drop.
#[derive(Debug)]
pub struct Lease {
    tree: PathBuf,
    _lock: Flock<File>,
}

impl Lease {
    /// The snapshot's tree.
    pub fn tree(&self) -> &Path {
        &self.tree
    }
}

impl std::ops::Deref for Lease {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.tree
    }
}

/// A full snapshot taken out of the store whole ([`Store::take_snapshot`]) for one step to use up: its
/// directory lives in this process's temp area, no other build can lease it any more, and whatever is left
/// of it is removed when this is dropped (a killed process's is removed by the next start).
#[derive(Debug)]
pub struct Claimed {
    dir: PathBuf,
}

impl Claimed {
    /// The claimed tree (the step may move things out of it).
    pub fn tree(&self) -> PathBuf {
        self.dir.join(CLAIMED).join(TREE)
    }

    /// The note `name` the snapshot had when it was claimed.
    pub fn note(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(CLAIMED).join(note_name(name))).ok()
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        let _ = super::session::remove_tree(&self.dir);
    }
}

/// The name a claimed snapshot directory gets inside its temp dir.
const CLAIMED: &str = "claimed";

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

    /// A lease on the full snapshot of `chain_id`, when it exists, is complete and is not being claimed.
    pub fn lease_snapshot(&self, chain_id: &Digest) -> Option<Lease> {
        lease(&self.snapshot_dir().join(chain_id.digest()))
    }

    /// A lease on the diff snapshot of `chain_id`, when it exists and is complete.
    pub fn lease_diff_snapshot(&self, chain_id: &Digest) -> Option<Lease> {
        lease(&self.snapshot_dir().join(diff_name(chain_id)))
    }

    /// The note `name` of the full snapshot of `chain_id`, when it has one.
    pub fn snapshot_note(&self, chain_id: &Digest, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.snapshot_dir().join(chain_id.digest()).join(note_name(name))).ok()
    }

    /// The chain ids of the complete full snapshots, newest first.
    pub fn full_snapshots(&self) -> Vec<Digest> {
        let mut found: Vec<(std::time::SystemTime, Digest)> = std::fs::read_dir(self.snapshot_dir())
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let digest: Digest = format!("sha256:{name}").parse().ok()?;
                let made = e.path().join(MARKER).symlink_metadata().ok()?.modified().ok()?;
                Some((made, digest))
            })
            .collect();
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        found.into_iter().map(|(_, d)| d).collect()
    }

    /// An empty snapshot to fill, in this process's temp area.
    pub fn stage_snapshot(&self) -> Result<Staged, StoreError> {
        let dir = self.staging_dir()?;
        let tree = dir.join(TREE);
        std::fs::create_dir(&tree).map_err(io("create", &tree))?;
        Ok(Staged { dir: Some(dir) })
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
        let staged = self.stage_snapshot()?;
        if let Err(e) = fill(&staged.tree()) {
            return Err(StoreError::Snapshot { chain_id: chain_id.to_string(), message: e.to_string() });
        }
        staged.publish(self, chain_id)
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
    /// change it in place; returns its rootfs, or `None` when there is no complete snapshot to take or someone
    /// holds a lease on it. Its notes stay behind with the directory: a changed tree has other contents.
    pub fn claim_snapshot(&self, chain_id: &Digest, into: &Path) -> Option<PathBuf> {
        let dir = self.snapshot_dir().join(chain_id.digest());
        complete_tree(&dir)?;
        let marker = File::open(dir.join(MARKER)).ok()?;
        // Readers lock shared; a reader that opened the marker but locks after the rename finds the path
        // gone and treats the snapshot as absent.
        let _exclusive = Flock::lock(marker, FlockArg::LockExclusiveNonblock).ok()?;
        std::fs::rename(&dir, into).ok()?;
        blobs::sync_dir(&self.snapshot_dir()).ok()?;
        Some(into.join(TREE))
    }

    /// Takes the full snapshot of `chain_id` out of the store ([`Store::claim_snapshot`]) into this process's
    /// temp area, notes and all; `None` when there is none or someone holds a lease on it.
    pub fn take_snapshot(&self, chain_id: &Digest) -> Option<Claimed> {
        let claimed = Claimed { dir: self.staging_dir().ok()? };
        self.claim_snapshot(chain_id, &claimed.dir.join(CLAIMED))?;
        Some(claimed)
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

/// The file a note is kept in (beside `fs` and `complete`, never either of them).
fn note_name(name: &str) -> String {
    format!("note.{name}")
}

/// The tree of the snapshot directory `dir` when its completion marker is there.
pub(super) fn complete_tree(dir: &Path) -> Option<PathBuf> {
    let tree = dir.join(TREE);
    (dir.join(MARKER).is_file() && tree.is_dir()).then_some(tree)
}

/// A shared lock on the complete snapshot `dir`, taken only while it is still in place after locking.
fn lease(dir: &Path) -> Option<Lease> {
    let tree = complete_tree(dir)?;
    let marker_path = dir.join(MARKER);
    let marker = File::open(&marker_path).ok()?;
    let lock = Flock::lock(marker, FlockArg::LockSharedNonblock).ok()?;
    let (held, now) = (lock.metadata().ok()?, marker_path.metadata().ok()?);
    ((held.dev(), held.ino()) == (now.dev(), now.ino())).then_some(Lease { tree, _lock: lock })
}
