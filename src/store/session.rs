//! Who owns a temporary file, and how things leave the store.
//!
//! Every process that opens the store gets a *session*: a lock file `kiln/tmp/<id>.lock` it holds with
//! `flock` for as long as it lives, and a directory `kiln/tmp/<id>/` for all its temporary files (blobs
//! being written, snapshots being filled, a step's work dirs). The kernel drops a `flock` when its holder
//! dies, however it dies, so a later start tells a killed process's leftovers from a live one's by trying
//! the lock — no pids, which get reused. Sessions are created and leftovers inspected under
//! `kiln/locks/sessions.lock`, so a session is never seen half-made.
//!
//! Deletion protocol: whatever leaves the store (a snapshot, a blob, a dead session's files) is first
//! renamed to `kiln/trash/<id>.<n>` — one atomic step that takes it out of use — and only then removed.
//! A crash during the removal leaves a trash entry whose session is dead; the next start claims it by
//! renaming it to its own id (only one claimer's rename can succeed) and removes it. Nothing is ever
//! half-deleted in place.

use std::collections::HashMap;
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};

use super::error::{StoreError, io};

/// Suffix of a session's lock file in `kiln/tmp`.
const LOCK_SUFFIX: &str = ".lock";

/// One process's claim on the store: its temp directory and the lock that says it is alive.
#[derive(Debug)]
pub(super) struct Session {
    id: String,
    tmp: PathBuf,
    trash: PathBuf,
    lock: Option<Flock<File>>,
    next: AtomicU64,
}

/// What a start-up clean-up removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Leftover entries (dead sessions' temp dirs, trash, stray temp files).
    pub entries: usize,
    /// Their size in bytes.
    pub bytes: u64,
}

/// Something a dead process left behind, found without changing anything (for `fsck`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// The entry in `kiln/tmp` or `kiln/trash`.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

impl Session {
    /// Starts a session in `kiln_dir`; `sessions_lock` is the lock file that serialises session creation
    /// with leftover inspection.
    pub(super) fn start(kiln_dir: &Path, sessions_lock: &Path) -> Result<Session, StoreError> {
        let tmp = kiln_dir.join("tmp");
        let trash = kiln_dir.join("trash");
        let _guard = super::lock_at(sessions_lock, FlockArg::LockExclusive)?;
        let (file, lock_path) = tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .suffix(LOCK_SUFFIX)
            .rand_bytes(8)
            .tempfile_in(&tmp)
            .map_err(io("create a lock file in", &tmp))?
            .keep()
            .map_err(|e| StoreError::Io { op: "keep", path: tmp.clone(), source: e.error })?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| StoreError::Io {
            op: "lock",
            path: lock_path.clone(),
            source: e.into(),
        })?;
        let name = lock_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let id = name.strip_suffix(LOCK_SUFFIX).unwrap_or(&name).to_string();
        let dir = tmp.join(&id);
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(io("create", &dir))?;
        Ok(Session { id, tmp, trash, lock: Some(lock), next: AtomicU64::new(0) })
    }

    /// This session's temp directory (same filesystem as blobs and snapshots, so renames publish).
    pub(super) fn dir(&self) -> PathBuf {
        self.tmp.join(&self.id)
    }

    /// A fresh name in the trash that belongs to this session.
    fn trash_slot(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.trash.join(format!("{}.{n}", self.id))
    }

    /// Takes `path` out of use (rename into the trash), then removes it. `Ok(false)` when it was not there.
    /// A failed removal still leaves it out of use; a later start finishes it.
    pub(super) fn discard(&self, path: &Path) -> Result<bool, StoreError> {
        let slot = self.trash_slot();
        match std::fs::rename(path, &slot) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io("move to the trash", path)(e)),
        }
        // The rename must be on disk before any removal inside it is.
        super::blobs::sync_dir(&self.trash)?;
        remove_tree(&slot)?;
        Ok(true)
    }

    fn lock_path(&self) -> PathBuf {
        self.tmp.join(format!("{}{LOCK_SUFFIX}", self.id))
    }

    fn own_trash(&self) -> Vec<PathBuf> {
        let prefix = format!("{}.", self.id);
        list(&self.trash).into_iter().filter(|p| file_name(p).starts_with(&prefix)).collect()
    }

    fn has_trash(&self) -> bool {
        !self.own_trash().is_empty()
    }

    fn remove_own_trash(&self) {
        for entry in self.own_trash() {
            let _ = remove_tree(&entry);
        }
    }

    /// Claims and removes what dead sessions left in `kiln/tmp` and `kiln/trash`; entries of live
    /// sessions are left alone.
    pub(super) fn recover(&self, sessions_lock: &Path) -> Result<Recovered, StoreError> {
        let claimed = claim_dead(&self.tmp, &self.trash, &self.id, sessions_lock, || self.trash_slot())?;
        Ok(remove_claimed(claimed))
    }

    /// This session's id (its temp directory's name).
    pub(super) fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let dir = self.dir();
        let removed = remove_tree(&dir).is_ok();
        self.remove_own_trash();
        if removed && !self.has_trash() {
            let _ = std::fs::remove_file(self.lock_path());
        }
        drop(self.lock.take());
    }
}

/// Removes the temp dirs and trash of the sessions of process `pid` (named `<pid>-…`), and their lock
/// files when nothing is left: for a run that was interrupted and exits without unwinding.
pub(super) fn abandon_sessions_of(kiln_dir: &Path, pid: u32) {
    let (tmp, trash) = (kiln_dir.join("tmp"), kiln_dir.join("trash"));
    let prefix = format!("{pid}-");
    for lock_path in list(&tmp) {
        let name = file_name(&lock_path);
        let Some(id) = name.strip_suffix(LOCK_SUFFIX).filter(|id| id.starts_with(&prefix)) else { continue };
        let dir = tmp.join(id);
        let parked = trash.join(format!("{id}.abandoned"));
        let target = if std::fs::rename(&dir, &parked).is_ok() { parked } else { dir };
        // Children killed a moment ago may still be letting go of the tree: try a few times.
        for _ in 0..5 {
            if remove_tree(&target).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let own = format!("{id}.");
        let mut left = target.exists();
        for entry in list(&trash).into_iter().filter(|p| file_name(p).starts_with(&own)) {
            left |= remove_tree(&entry).is_err();
        }
        if !left {
            let _ = std::fs::remove_file(lock_path);
        }
    }
}

/// Renames every entry of a dead session (and every entry without one) to `slot()`, a trash name of the
/// claimer's, and removes dead sessions' lock files; all under `sessions_lock`. Returns the claimed trash
/// entries with their sizes.
fn claim_dead(
    tmp: &Path,
    trash: &Path,
    claimer: &str,
    sessions_lock: &Path,
    mut slot: impl FnMut() -> PathBuf,
) -> Result<Vec<(PathBuf, u64)>, StoreError> {
    let mut claimed = Vec::new();
    let _guard = super::lock_at(sessions_lock, FlockArg::LockExclusive)?;
    // The scan holds the dead sessions' locks until their files have moved.
    let found = scan(tmp, trash, claimer);
    for path in &found.entries {
        let slot = slot();
        if std::fs::rename(path, &slot).is_ok() {
            let bytes = size_of(&slot);
            claimed.push((slot, bytes));
        }
    }
    for lock_path in &found.dead_locks {
        let _ = std::fs::remove_file(lock_path);
    }
    Ok(claimed)
}

/// Removes claimed trash entries; counts those that are gone (one this process may not remove — a
/// rootless command outside its user namespace, facing sub-id owned files — stays for a later start).
fn remove_claimed(claimed: Vec<(PathBuf, u64)>) -> Recovered {
    let mut recovered = Recovered::default();
    for (path, bytes) in claimed {
        if remove_tree(&path).is_ok() {
            recovered.entries += 1;
            recovered.bytes += bytes;
        }
    }
    recovered
}

/// Claims and removes what dead sessions left, for a process without a session of its own (an
/// interrupted run on its way out), under the claimer name `claimer`.
pub(super) fn recover_for(kiln_dir: &Path, sessions_lock: &Path, claimer: &str) {
    let (tmp, trash) = (kiln_dir.join("tmp"), kiln_dir.join("trash"));
    let mut n = 0;
    let slot = || {
        n += 1;
        trash.join(format!("{claimer}.{n}"))
    };
    if let Ok(claimed) = claim_dead(&tmp, &trash, claimer, sessions_lock, slot) {
        remove_claimed(claimed);
    }
}

/// Whether the session whose lock file is `lock_path` is alive; when dead, its lock is returned held.
enum Liveness {
    Live,
    Dead(Option<Flock<File>>),
}

fn liveness(lock_path: &Path) -> Liveness {
    let file = match File::open(lock_path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Liveness::Dead(None),
        // Unsure (cannot open it): treat as alive, never remove what might be in use.
        Err(_) => return Liveness::Live,
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(held) => Liveness::Dead(Some(held)),
        Err(_) => Liveness::Live,
    }
}

/// What belongs to no live session.
struct Scan {
    /// Entries of `kiln/tmp` and `kiln/trash` whose session is dead (or that never had one).
    entries: Vec<PathBuf>,
    /// Lock files of dead sessions.
    dead_locks: Vec<PathBuf>,
    /// The dead sessions' locks, held so that the answer stays true while the caller acts on it.
    _held: Vec<Flock<File>>,
}

/// Sorts the entries of `tmp` and `trash` by the liveness of their session (never `own_id`'s).
fn scan(tmp: &Path, trash: &Path, own_id: &str) -> Scan {
    let mut verdicts: HashMap<String, bool> = HashMap::new();
    let mut held = Vec::new();
    let mut is_dead = |id: &str| -> bool {
        if id == own_id {
            return false;
        }
        if let Some(dead) = verdicts.get(id) {
            return *dead;
        }
        let dead = match liveness(&tmp.join(format!("{id}{LOCK_SUFFIX}"))) {
            Liveness::Live => false,
            Liveness::Dead(lock) => {
                held.extend(lock);
                true
            }
        };
        verdicts.insert(id.to_string(), dead);
        dead
    };
    let (mut entries, mut dead_locks) = (Vec::new(), Vec::new());
    for path in list(tmp) {
        let name = file_name(&path);
        match name.strip_suffix(LOCK_SUFFIX) {
            Some(id) if is_dead(id) => dead_locks.push(path),
            Some(_) => {}
            None if is_dead(&name) => entries.push(path),
            None => {}
        }
    }
    for path in list(trash) {
        let name = file_name(&path);
        let owner = name.rsplit_once('.').map_or(name.as_str(), |(id, _)| id);
        if is_dead(owner) {
            entries.push(path);
        }
    }
    Scan { entries, dead_locks, _held: held }
}

/// What dead sessions left, without changing anything (for `fsck`). Under `sessions_lock` like every scan:
/// the scan briefly holds the lock of each session it finds unlocked, and a session being started has its
/// lock file before it holds it — a scan outside the lock could make that start fail.
pub(super) fn leftovers(kiln_dir: &Path, sessions_lock: &Path, own_id: &str) -> Result<Vec<Leftover>, StoreError> {
    let entries = {
        let _guard = super::lock_at(sessions_lock, FlockArg::LockExclusive)?;
        scan(&kiln_dir.join("tmp"), &kiln_dir.join("trash"), own_id).entries
    };
    Ok(entries.into_iter().map(|path| Leftover { bytes: size_of(&path), path }).collect())
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).into_iter().flatten().filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    entries
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Bytes of regular files under `path` (symlinks not followed).
pub(super) fn size_of(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Removes a file or a directory tree, even one holding read-only directories (a rootfs often does).
pub(super) fn remove_tree(path: &Path) -> Result<(), StoreError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Ok(m) if !m.is_dir() => return std::fs::remove_file(path).map_err(io("remove", path)),
        _ => {}
    }
    if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(path).into_iter().filter_map(Result::ok) {
        if entry.file_type().is_dir() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o700));
        }
    }
    std::fs::remove_dir_all(path).map_err(io("remove", path))
}
