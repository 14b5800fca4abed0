//! kiln's content-addressed store: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`) that
//! skopeo and umoci read directly, plus kiln's own state under `kiln/`:
//!
//! ```text
//!  ROOT/                      mode 0700: snapshots hold setuid binaries and world-writable dirs
//!    oci-layout  index.json  blobs/sha256/<hex>
//!    kiln/version             on-disk format (2)
//!    kiln/locks/              store.lock (shared: builds, pulls; exclusive: prune, fsck --repair),
//!                             index.lock, sessions.lock
//!    kiln/tmp/<id>.lock       held by a live kiln process (session.rs)
//!    kiln/tmp/<id>/           that process's temp files: blobs being written, snapshots being filled
//!    kiln/trash/<id>.<n>      renamed out of use, being removed
//!    kiln/snapshots/<hex>[.diff]/{fs/, complete}   a rootfs (or RUN diff) and its completion marker
//!    kiln/cache/, kiln/cache-mounts/              step cache records, RUN --mount=type=cache dirs
//! ```
//!
//! Concurrency: blob writes need no lock (temp file + rename of content-addressed names); `index.json`
//! updates hold an exclusive lock around read-modify-write; builds and pulls hold a shared store lock that
//! `prune` and `fsck --repair` take exclusively, so nothing is collected under them. Crash safety: nothing
//! becomes visible before it is whole (rename into place), nothing is deleted in place (rename into the
//! trash first), and a start cleans what killed processes left. Knows nothing of Dockerfiles.

mod blobs;
mod error;
mod fsck;
mod index;
mod layout;
mod prune;
mod referrers;
mod session;
mod snapshots;
mod usage;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::{Descriptor, Digest};

pub use blobs::{BlobWriter, digest_of};
pub use error::StoreError;
pub use fsck::{Finding, FsckReport, Problem};
pub use index::REF_NAME;
pub use prune::PruneReport;
pub use referrers::SUBJECT_ANNOTATION;
pub use session::{Leftover, Recovered};
pub use snapshots::{Claimed, Lease, Staged};
pub use usage::InodeTally;

use error::io;

/// The on-disk format version this kiln writes and reads (2: snapshots carry a completion marker).
pub const FORMAT_VERSION: u32 = 2;

/// An opened store; clones share one session (temp area), which ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    session: Arc<session::Session>,
    opened: Opened,
}

/// What opening the store found and fixed, for the caller to tell the user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Opened {
    /// The root's mode when it was wider than 0700 (it is 0700 now).
    pub tightened_from: Option<u32>,
    /// The format version the store was migrated from.
    pub migrated_from: Option<u32>,
    /// What killed kiln processes had left and this start removed.
    pub recovered: Recovered,
}

/// A held lock on the store (shared for builds, exclusive for prune); released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _lock: Flock<File>,
}

impl Store {
    /// Opens the store at `root`: creates the layout (private) when missing, tightens a root other users
    /// can reach, checks the format version, and removes what killed kiln processes left behind.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let mut store = Store::open_without_recovery(root)?;
        store.opened.recovered = store.session.recover(&store.locks_dir().join("sessions.lock"))?;
        Ok(store)
    }

    /// Opens the store like [`Store::open`] but leaves killed processes' files where they are (`fsck`
    /// reports them before repairing).
    pub fn open_without_recovery(root: &Path) -> Result<Store, StoreError> {
        let tightened_from = layout::make_private(root)?;
        let kiln = root.join("kiln");
        for dir in [
            root.join("blobs/sha256"),
            kiln.join("tmp"),
            kiln.join("trash"),
            kiln.join("snapshots"),
            kiln.join("locks"),
        ] {
            layout::create_private(&dir)?;
        }
        let session = session::Session::start(&kiln, &kiln.join("locks/sessions.lock"))?;
        let mut store = Store {
            root: root.to_path_buf(),
            session: Arc::new(session),
            opened: Opened { tightened_from, ..Opened::default() },
        };
        let layout = root.join("oci-layout");
        if !layout.exists() {
            store.write_small(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = store.index_path();
        if !index.exists() {
            let _guard = store.lock_file("index", FlockArg::LockExclusive)?;
            if !index.exists() {
                index::write(&index, &index::empty(), &store.session_dir())?;
            }
        }
        store.opened.migrated_from = store.check_version()?;
        Ok(store)
    }

    /// What opening found and fixed.
    pub fn opened(&self) -> Opened {
        self.opened
    }

    /// Checks the format version, migrating older stores; returns the version migrated from.
    fn check_version(&self) -> Result<Option<u32>, StoreError> {
        let version_path = self.kiln_dir().join("version");
        let found = match std::fs::read_to_string(&version_path) {
            Ok(v) => v.trim().to_string(),
            Err(_) => {
                self.write_small(&version_path, format!("{FORMAT_VERSION}\n").as_bytes())?;
                return Ok(None);
            }
        };
        if found == FORMAT_VERSION.to_string() {
            return Ok(None);
        }
        if found != "1" {
            return Err(StoreError::Version { path: self.root.clone(), found, supported: FORMAT_VERSION });
        }
        // Version 1 kept snapshots without a completion marker (and deleted them in place): none of them
        // can be trusted. Snapshots are re-created from layers on demand, so they all go.
        let _lock = self.lock_file("store", FlockArg::LockExclusive)?;
        if std::fs::read_to_string(&version_path).is_ok_and(|v| v.trim() == "1") {
            self.session.discard(&self.snapshot_dir())?;
            layout::create_private(&self.snapshot_dir())?;
            self.write_small(&version_path, format!("{FORMAT_VERSION}\n").as_bytes())?;
        }
        Ok(Some(1))
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

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn locks_dir(&self) -> PathBuf {
        self.kiln_dir().join("locks")
    }

    fn lock_file(&self, name: &str, how: FlockArg) -> Result<Flock<File>, StoreError> {
        lock_at(&self.locks_dir().join(format!("{name}.lock")), how)
    }

    /// This process's temp directory in the store.
    fn session_dir(&self) -> PathBuf {
        self.session.dir()
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
        BlobWriter::new(&self.session_dir(), &self.blob_dir())
    }

    /// Stores a small blob held in memory.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(Digest, u64), StoreError> {
        let mut writer = self.ingest()?;
        std::io::Write::write_all(&mut writer, bytes).map_err(io("write", self.session_dir()))?;
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
            index::write(&path, &index, &self.session_dir())?;
        }
        Ok(changed)
    }

    /// A temp directory inside the store (same filesystem as blobs and snapshots), removed on drop.
    pub fn temp_dir(&self) -> Result<tempfile::TempDir, StoreError> {
        let dir = self.session_dir();
        tempfile::Builder::new().prefix("work-").tempdir_in(&dir).map_err(io("create a temp dir in", dir))
    }

    /// The persistent directory of a `RUN --mount=type=cache` with this id.
    pub fn cache_mount_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        let dir = self.kiln_dir().join("cache-mounts").join(digest_of(id.as_bytes()).digest());
        layout::create_private(&dir)?;
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

    /// Removes unreachable blobs, snapshots not in `keep_snapshots`, and what killed processes left.
    pub fn prune(&self, extra_roots: &[Digest], keep_snapshots: &HashSet<Digest>) -> Result<PruneReport, StoreError> {
        let _lock = self.lock_file("store", FlockArg::LockExclusive)?;
        prune::run(self, extra_roots, keep_snapshots)
    }

    /// Checks the store; with `repair`, fixes what can be fixed (waiting for running builds first).
    pub fn fsck(&self, repair: bool) -> Result<FsckReport, StoreError> {
        let how = if repair { FlockArg::LockExclusive } else { FlockArg::LockShared };
        let _lock = self.lock_file("store", how)?;
        fsck::run(self, repair)
    }

    /// Takes `path` (inside the store) out of use at once, then removes it: the deletion protocol.
    pub fn discard(&self, path: &Path) -> Result<bool, StoreError> {
        self.session.discard(path)
    }

    /// For a run that was interrupted and exits without unwinding: removes the temp files of process
    /// `pid`'s sessions in the store at `root` (session ids start with their pid), then what dead
    /// sessions left — its own children's, just killed.
    pub fn clean_up_after_interrupt(root: &Path, pid: u32) {
        let kiln = root.join("kiln");
        if !kiln.join("tmp").is_dir() {
            return;
        }
        session::abandon_sessions_of(&kiln, pid);
        session::recover_for(&kiln, &kiln.join("locks/sessions.lock"), &format!("{pid}-exit"));
    }

    /// Writes a small file inside the store atomically: a temp file in this session, fsync, rename over
    /// `path` — a crash leaves either the old file or the new one, and no temp file beside it.
    pub fn write_small(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let dir = self.session_dir();
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io("create a temp file in", &dir))?;
        std::io::Write::write_all(&mut tmp, bytes).map_err(io("write", path))?;
        tmp.as_file().sync_all().map_err(io("fsync", path))?;
        tmp.persist(path).map_err(|e| StoreError::Io {
            op: "rename into",
            path: path.to_path_buf(),
            source: e.error,
        })?;
        blobs::sync_dir(path.parent().unwrap_or(Path::new(".")))
    }
}

/// Opens (creating) a lock file and locks it.
fn lock_at(path: &Path, how: FlockArg) -> Result<Flock<File>, StoreError> {
    let file = File::options().create(true).truncate(false).write(true).open(path).map_err(io("open", path))?;
    Flock::lock(file, how).map_err(|(_, e)| StoreError::Io { op: "lock", path: path.to_path_buf(), source: e.into() })
}

#[cfg(test)]
mod tests;
