//! The digest of a step's selected sources — relative path, type, mode, owner, content, link target and
//! xattrs of each entry, never mtimes — with file contents hashed in parallel and remembered per store by
//! (device, inode, size, mtime, ctime), so an unchanged context is never read twice.
//!
//! The cache keeps one entry per inode (device, inode → the rest of the stamp and the digest): a file that
//! changes replaces its entry instead of adding one, so the cache stays as large as the set of files it has
//! seen, whatever the number of builds.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::layer::{Entry, EntryKind, FileSource};

/// Remembered content digests of files, by what identifies an unchanged file without reading it.
pub struct StatCache {
    path: PathBuf,
    /// `dev:ino` → (`size:mtime:ctime`, content digest).
    known: Mutex<HashMap<String, (String, String)>>,
    dirty: Mutex<bool>,
}

impl StatCache {
    /// Loads the cache file at `path` (a missing or damaged file is an empty cache).
    pub fn load(path: PathBuf) -> StatCache {
        let known = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        StatCache { path, known: Mutex::new(known), dirty: Mutex::new(false) }
    }

    /// Writes the cache back when it learned something (atomically; failures only cost re-reading later).
    pub fn save(&self) {
        if !*self.dirty.lock().unwrap_or_else(|e| e.into_inner()) {
            return;
        }
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(bytes) = serde_json::to_vec(&*known) else { return };
        let temp = self.path.with_extension(format!("tmp{}", std::process::id()));
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if std::fs::write(&temp, bytes).is_ok() && std::fs::rename(&temp, &self.path).is_err() {
            let _ = std::fs::remove_file(&temp);
        }
    }

    /// The content digest of `source`. A file listed with its metadata (a COPY source) is looked up by
    /// that stamp without touching it again; otherwise, or on a miss, it is opened (never through a final
    /// symlink), its stamp taken from the descriptor and its bytes hashed only when the stamp is new.
    fn file_digest(&self, source: &FileSource) -> Result<String, SourceError> {
        let listed = match source {
            FileSource::Rooted(rooted) => rooted
                .listed_meta()
                .map(|m| stamp(m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec())),
            // A file in a tree kiln made: its own lstat is as good a stamp.
            FileSource::Path(path) => std::fs::symlink_metadata(path)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| stamp(m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec())),
            FileSource::Bytes(_) => None,
        };
        if let Some(known) = listed.and_then(|stamp| self.known(&stamp)) {
            return Ok(known);
        }
        let fail = |e| SourceError { path: source.display(), source: e };
        let mut file = source.open().map_err(fail)?;
        let m = file.metadata().map_err(fail)?;
        let stamp = stamp(m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec());
        if let Some(known) = self.known(&stamp) {
            return Ok(known);
        }
        let digest = hash(&mut file).map_err(fail)?;
        let Stamp { inode, rest } = stamp;
        self.known.lock().unwrap_or_else(|e| e.into_inner()).insert(inode, (rest, digest.clone()));
        *self.dirty.lock().unwrap_or_else(|e| e.into_inner()) = true;
        Ok(digest)
    }

    fn known(&self, stamp: &Stamp) -> Option<String> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get(&stamp.inode).filter(|(rest, _)| *rest == stamp.rest).map(|(_, digest)| digest.clone())
    }
}

/// What identifies an unchanged file without reading it: which inode, and its size, mtime and ctime.
struct Stamp {
    inode: String,
    rest: String,
}

fn stamp(dev: u64, ino: u64, size: u64, mtime: i64, mtime_ns: i64, ctime: i64, ctime_ns: i64) -> Stamp {
    Stamp { inode: format!("{dev}:{ino}"), rest: format!("{size}:{mtime}.{mtime_ns}:{ctime}.{ctime_ns}") }
}

/// A source file that could not be read for its digest.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct SourceError {
    /// The file (on the host, for the message).
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

fn hash(file: &mut std::fs::File) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The digest of `entries` (order-independent: they are sorted by path first).
pub fn digest(entries: &[Entry], stats: &StatCache) -> Result<String, SourceError> {
    Ok(digest_with_files(entries, stats)?.0)
}

/// The content digest of each regular file of a step's sources, by entry path.
pub type FileDigests = HashMap<String, [u8; 32]>;

/// [`digest`], and the content digest of each regular file (by entry path): what a snapshot records of its
/// files so a later one can share them.
pub fn digest_with_files(entries: &[Entry], stats: &StatCache) -> Result<(String, FileDigests), SourceError> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let lines: Vec<Result<(String, Option<String>), SourceError>> = sorted.par_iter().map(|e| line(e, stats)).collect();
    let mut h = Sha256::new();
    let mut files = HashMap::new();
    for (l, e) in lines.into_iter().zip(&sorted) {
        let (text, content) = l?;
        h.update(text.as_bytes());
        h.update(b"\n");
        if let Some(sum) = content.and_then(|c| <[u8; 32]>::try_from(hex::decode(c).ok()?).ok()) {
            files.insert(e.path.clone(), sum);
        }
    }
    Ok((hex::encode(h.finalize()), files))
}

/// The entry's line in the digest, and its content digest when it is a regular file.
fn line(e: &Entry, stats: &StatCache) -> Result<(String, Option<String>), SourceError> {
    let content = match &e.kind {
        EntryKind::File(source @ (FileSource::Path(_) | FileSource::Rooted(_))) => Some(stats.file_digest(source)?),
        EntryKind::File(FileSource::Bytes(b)) => Some(hex::encode(Sha256::digest(b))),
        _ => None,
    };
    let what = match &e.kind {
        EntryKind::File(_) => format!("file {}", content.as_deref().unwrap_or_default()),
        EntryKind::Dir => "dir".to_string(),
        EntryKind::Symlink(t) => format!("symlink {t:?}"),
        EntryKind::Hardlink(t) => format!("hardlink {t:?}"),
        EntryKind::CharDevice(a, b) => format!("char {a}:{b}"),
        EntryKind::BlockDevice(a, b) => format!("block {a}:{b}"),
        EntryKind::Fifo => "fifo".to_string(),
        EntryKind::Whiteout => "whiteout".to_string(),
        EntryKind::OpaqueDir => "opaque".to_string(),
    };
    let xattrs: Vec<String> = e.xattrs.iter().map(|(k, v)| format!("{k}={}", hex::encode(v))).collect();
    Ok((format!("{:?} {what} {:o} {}:{} [{}]", e.path, e.mode, e.uid, e.gid, xattrs.join(",")), content))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that keeps changing keeps one entry, and every change is seen.
    #[test]
    fn a_changing_file_keeps_one_entry_and_a_fresh_digest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        let stats = StatCache::load(dir.path().join("cache.json"));
        let source = FileSource::Path(file.clone());
        for round in 0..5u8 {
            std::fs::write(&file, vec![round; 100 + usize::from(round)]).unwrap();
            let expected = hex::encode(Sha256::digest(std::fs::read(&file).unwrap()));
            assert_eq!(stats.file_digest(&source).unwrap(), expected);
            assert_eq!(stats.file_digest(&source).unwrap(), expected, "a second look answers from the cache");
        }
        assert_eq!(stats.known.lock().unwrap().len(), 1);
        stats.save();
        let again = StatCache::load(dir.path().join("cache.json"));
        assert_eq!(again.known.lock().unwrap().len(), 1);
        assert_eq!(again.file_digest(&source).unwrap(), stats.file_digest(&source).unwrap());
    }
}
