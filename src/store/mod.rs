//! kiln's content-addressed store: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`) that
//! skopeo and umoci read directly, plus kiln's own state under `kiln/` (format version, temp files,
//! snapshots, cache mounts, locks).
//!
//! Concurrency: blob writes need no lock (temp file + rename of content-addressed names); `index.json`
//! updates hold an exclusive lock around read-modify-write; builds hold a shared store lock that `prune`
//! takes exclusively, so nothing is collected under a running build. Knows nothing of Dockerfiles.

mod blobs;
mod error;
mod index;
mod prune;
mod snapshots;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::{Descriptor, Digest};

pub use blobs::{BlobWriter, digest_of};
pub use error::StoreError;
pub use index::REF_NAME;
pub use prune::PruneReport;

use error::io;

/// The on-disk format version this kiln writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// An opened store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A held lock on the store (shared for builds, exclusive for prune); released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _lock: Flock<File>,
}

impl Store {
    /// Opens the store at `root`, creating the layout when missing and checking its format version.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store { root: root.to_path_buf() };
        for dir in
            [store.blob_dir(), store.kiln_dir().join("tmp"), store.snapshot_dir(), store.kiln_dir().join("locks")]
        {
            std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_small(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = store.index_path();
        if !index.exists() {
            let _guard = store.lock_file("index", FlockArg::LockExclusive)?;
            if !index.exists() {
                index::write(&index, &index::empty())?;
            }
        }
        let version_path = store.kiln_dir().join("version");
        match std::fs::read_to_string(&version_path) {
            Ok(v) if v.trim() == FORMAT_VERSION.to_string() => {}
            Ok(v) => {
                return Err(StoreError::Version {
                    path: root.to_path_buf(),
                    found: v.trim().to_string(),
                    supported: FORMAT_VERSION,
                });
            }
            Err(_) => write_small(&version_path, format!("{FORMAT_VERSION}\n").as_bytes())?,
        }
        Ok(store)
    }

    /// Where the store lives by default: `$KILN_ROOT`, else `$XDG_DATA_HOME/kiln` (`~/.local/share/kiln`) for
    /// users and `/var/lib/kiln` for root. The caller passes the environment's values.
    pub fn default_root(
        kiln_root: Option<&OsStr>,
        xdg_data_home: Option<&OsStr>,
        home: Option<&OsStr>,
        is_root: bool,
    ) -> PathBuf {
        if let Some(root) = kiln_root.filter(|r| !r.is_empty()) {
            return PathBuf::from(root);
        }
        if is_root {
            return PathBuf::from("/var/lib/kiln");
        }
        match (xdg_data_home.filter(|x| !x.is_empty()), home) {
            (Some(xdg), _) => Path::new(xdg).join("kiln"),
            (None, Some(home)) => Path::new(home).join(".local/share/kiln"),
            (None, None) => PathBuf::from(".kiln"),
        }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    /// kiln's own state beside the OCI layout (`ROOT/kiln`).
    pub fn kiln_dir(&self) -> PathBuf {
        self.root.join("kiln")
    }

    /// The directory holding all snapshots (overlay lower dirs are named relative to it).
    pub fn snapshot_dir(&self) -> PathBuf {
        self.kiln_dir().join("snapshots")
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn lock_file(&self, name: &str, how: FlockArg) -> Result<Flock<File>, StoreError> {
        let path = self.kiln_dir().join("locks").join(format!("{name}.lock"));
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(io("open", &path))?;
        Flock::lock(file, how).map_err(|(_, e)| StoreError::Io { op: "lock", path, source: e.into() })
    }

    /// Whether the blob is present.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Where a blob lives (whether or not it is present).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.digest())
    }

    /// Opens a blob for streaming.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        File::open(self.blob_path(digest)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::MissingBlob(digest.to_string()),
            _ => io("open", self.blob_path(digest))(e),
        })
    }

    /// Reads a small blob (manifest, config) whole and checks its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::new();
        self.open_blob(digest)?.read_to_end(&mut bytes).map_err(io("read", self.blob_path(digest)))?;
        let actual = digest_of(&bytes);
        if actual.to_string() != digest.to_string() {
            return Err(StoreError::DigestMismatch { expected: digest.to_string(), actual: actual.to_string() });
        }
        Ok(bytes)
    }

    /// Starts writing a blob.
    pub fn ingest(&self) -> Result<BlobWriter, StoreError> {
        BlobWriter::new(&self.kiln_dir().join("tmp"), &self.blob_dir())
    }

    /// Stores a small blob held in memory.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(Digest, u64), StoreError> {
        let mut writer = self.ingest()?;
        std::io::Write::write_all(&mut writer, bytes).map_err(io("write", self.kiln_dir().join("tmp")))?;
        writer.commit(None)
    }

    /// Names `manifest` as `name`, replacing any image of that name.
    pub fn set_tag(&self, name: &str, manifest: &Descriptor) -> Result<(), StoreError> {
        self.update_index(|manifests| {
            manifests.retain(|d| index::name_of(d) != Some(name));
            manifests.push(index::named(manifest, name));
            true
        })
        .map(|_| ())
    }

    /// The manifest named `name`, if any.
    pub fn resolve_tag(&self, name: &str) -> Result<Option<Descriptor>, StoreError> {
        let index = index::read(&self.index_path())?;
        Ok(index.manifests().iter().find(|d| index::name_of(d) == Some(name)).cloned())
    }

    /// Removes the name; true when it existed.
    pub fn remove_tag(&self, name: &str) -> Result<bool, StoreError> {
        self.update_index(|manifests| {
            let before = manifests.len();
            manifests.retain(|d| index::name_of(d) != Some(name));
            manifests.len() != before
        })
    }

    /// Every named image, sorted by name.
    pub fn list_tags(&self) -> Result<Vec<(String, Descriptor)>, StoreError> {
        let index = index::read(&self.index_path())?;
        let mut out: Vec<(String, Descriptor)> =
            index.manifests().iter().filter_map(|d| index::name_of(d).map(|n| (n.to_string(), d.clone()))).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn update_index(&self, change: impl FnOnce(&mut Vec<Descriptor>) -> bool) -> Result<bool, StoreError> {
        let _guard = self.lock_file("index", FlockArg::LockExclusive)?;
        let path = self.index_path();
        let mut index = index::read(&path)?;
        let mut manifests = index.manifests().clone();
        let changed = change(&mut manifests);
        if changed {
            index.set_manifests(manifests);
            index::write(&path, &index)?;
        }
        Ok(changed)
    }

    /// The snapshot for `chain_id`, when it exists.
    pub fn snapshot(&self, chain_id: &Digest) -> Option<PathBuf> {
        let path = self.snapshot_dir().join(chain_id.digest());
        path.is_dir().then_some(path)
    }

    /// Creates the snapshot for `chain_id` by filling a temp directory with `fill`, then publishing it.
    pub fn create_snapshot(
        &self,
        chain_id: &Digest,
        fill: impl FnOnce(&Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>>,
    ) -> Result<PathBuf, StoreError> {
        if let Some(existing) = self.snapshot(chain_id) {
            return Ok(existing);
        }
        let temp = tempfile::Builder::new()
            .prefix("snap-")
            .tempdir_in(self.kiln_dir().join("tmp"))
            .map_err(io("create a temp dir in", self.kiln_dir().join("tmp")))?
            .keep();
        let rootfs = temp.join("rootfs");
        std::fs::create_dir(&rootfs).map_err(io("create", &rootfs))?;
        if let Err(e) = fill(&rootfs) {
            let _ = snapshots::remove_tree(&temp);
            return Err(StoreError::Snapshot { chain_id: chain_id.to_string(), message: e.to_string() });
        }
        let published = snapshots::publish(&rootfs, &self.snapshot_dir().join(chain_id.digest()));
        let _ = snapshots::remove_tree(&temp);
        published
    }

    /// The diff snapshot for `chain_id` (a RUN step's overlay upper dir, kept as it was), when it exists.
    pub fn diff_snapshot(&self, chain_id: &Digest) -> Option<PathBuf> {
        let path = self.snapshot_dir().join(format!("{}.diff", chain_id.digest()));
        path.is_dir().then_some(path)
    }

    /// Moves a finished overlay upper dir in as the diff snapshot of `chain_id` (a rename, no copy).
    pub fn publish_diff_snapshot(&self, chain_id: &Digest, upper: &Path) -> Result<PathBuf, StoreError> {
        snapshots::publish(upper, &self.snapshot_dir().join(format!("{}.diff", chain_id.digest())))
    }

    /// Moves a finished rootfs directory in as the snapshot of `chain_id` (a rename, no copy).
    pub fn publish_snapshot(&self, chain_id: &Digest, rootfs: &Path) -> Result<PathBuf, StoreError> {
        snapshots::publish(rootfs, &self.snapshot_dir().join(chain_id.digest()))
    }

    /// A temp directory inside the store (same filesystem as blobs and snapshots), removed on drop.
    pub fn temp_dir(&self) -> Result<tempfile::TempDir, StoreError> {
        let dir = self.kiln_dir().join("tmp");
        tempfile::Builder::new().prefix("work-").tempdir_in(&dir).map_err(io("create a temp dir in", dir))
    }

    /// The persistent directory of a `RUN --mount=type=cache` with this id.
    pub fn cache_mount_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        let dir = self.kiln_dir().join("cache-mounts").join(digest_of(id.as_bytes()).digest());
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        Ok(dir)
    }

    /// Takes the shared store lock a build holds, so prune waits for it.
    pub fn lock_shared(&self) -> Result<StoreLock, StoreError> {
        Ok(StoreLock { _lock: self.lock_file("store", FlockArg::LockShared)? })
    }

    /// Takes the exclusive lock `name` if no one holds it (`None` when someone does). Builds sharing a store
    /// take one per step being computed, so a step common to concurrent builds runs once.
    pub fn try_lock(&self, name: &str) -> Result<Option<StoreLock>, StoreError> {
        match self.lock_file(name, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(StoreLock { _lock: lock })),
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes unreachable blobs, snapshots not in `keep_snapshots`, and stale temp files.
    pub fn prune(&self, extra_roots: &[Digest], keep_snapshots: &HashSet<Digest>) -> Result<PruneReport, StoreError> {
        let _lock = self.lock_file("store", FlockArg::LockExclusive)?;
        prune::run(self, extra_roots, keep_snapshots)
    }
}

fn write_small(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io("create a temp file in", dir))?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(io("write", path))?;
    tmp.as_file().sync_all().map_err(io("fsync", path))?;
    tmp.persist(path).map_err(|e| StoreError::Io { op: "rename into", path: path.to_path_buf(), source: e.error })?;
    Ok(())
}

#[cfg(test)]
mod tests;
