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
    known: Mutex<Known>,
    dirty: Mutex<bool>,
}

/// (device, inode) → the rest of the stamp and the content digest.
type Known = HashMap<(u64, u64), (Stamp, [u8; 32])>;

/// The first bytes of the cache file (a file without them, or of another length than whole records, is
/// an empty cache).
const MAGIC: &[u8; 8] = b"KILNSTC1";

/// One record: device, inode, size, mtime and ctime (seconds, nanoseconds), content digest.
const RECORD: usize = 8 * 7 + 32;

impl StatCache {
    /// Loads the cache file at `path` (a missing or damaged file is an empty cache).
    pub fn load(path: PathBuf) -> StatCache {
        let known = std::fs::read(&path).ok().and_then(|b| decode(&b)).unwrap_or_default();
        StatCache { path, known: Mutex::new(known), dirty: Mutex::new(false) }
    }

    /// Writes the cache back when it learned something (atomically; failures only cost re-reading later).
    pub fn save(&self) {
        if !*self.dirty.lock().unwrap_or_else(|e| e.into_inner()) {
            return;
        }
        let bytes = encode(&self.known.lock().unwrap_or_else(|e| e.into_inner()));
        let temp = self.path.with_extension(format!("tmp{}", std::process::id()));
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
            // The JSON file earlier versions kept: replaced by this one, never read again.
            let _ = std::fs::remove_file(dir.join("file-digests.json"));
        }
        if std::fs::write(&temp, bytes).is_ok() && std::fs::rename(&temp, &self.path).is_err() {
            let _ = std::fs::remove_file(&temp);
        }
    }

    /// The content digest of `source`. A file listed with its metadata (a COPY source) is looked up by
    /// that stamp without touching it again; otherwise, or on a miss, it is opened (never through a final
    /// symlink), its stamp taken from the descriptor and its bytes hashed only when the stamp is new.
    fn file_digest(&self, source: &FileSource) -> Result<[u8; 32], SourceError> {
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
        if let Some(known) = listed.and_then(|(inode, stamp)| self.known(inode, stamp)) {
            return Ok(known);
        }
        let fail = |e| SourceError { path: source.display(), source: e };
        let mut file = source.open().map_err(fail)?;
        let m = file.metadata().map_err(fail)?;
        let (inode, stamp) = stamp(m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec());
        if let Some(known) = self.known(inode, stamp) {
            return Ok(known);
        }
        let digest = hash(&mut file).map_err(fail)?;
        self.known.lock().unwrap_or_else(|e| e.into_inner()).insert(inode, (stamp, digest));
        *self.dirty.lock().unwrap_or_else(|e| e.into_inner()) = true;
        Ok(digest)
    }

    fn known(&self, inode: (u64, u64), stamp: Stamp) -> Option<[u8; 32]> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get(&inode).filter(|(seen, _)| *seen == stamp).map(|(_, digest)| *digest)
    }
}

/// What, besides its inode, identifies an unchanged file without reading it: size, mtime and ctime.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn stamp(dev: u64, ino: u64, size: u64, mtime: i64, mtime_ns: i64, ctime: i64, ctime_ns: i64) -> ((u64, u64), Stamp) {
    ((dev, ino), Stamp { size, mtime: (mtime, mtime_ns), ctime: (ctime, ctime_ns) })
}

/// The cache file's records: fixed-size and binary, read without a parser or an allocation per file (the
/// JSON it replaces took a tenth of a large COPY's serial time to load and save).
fn encode(known: &Known) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + known.len() * RECORD);
    out.extend_from_slice(MAGIC);
    for (&(dev, ino), (s, digest)) in known {
        for n in [dev, ino, s.size] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        for n in [s.mtime.0, s.mtime.1, s.ctime.0, s.ctime.1] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(digest);
    }
    out
}

/// [`encode`]'s records back, `None` when the bytes are not such a file.
fn decode(bytes: &[u8]) -> Option<Known> {
    let records = bytes.strip_prefix(MAGIC.as_slice())?;
    if records.len() % RECORD != 0 {
        return None;
    }
    let word = |r: &[u8], i: usize| -> [u8; 8] { r[i * 8..i * 8 + 8].try_into().unwrap_or_default() };
    let (u, i) = (|r: &[u8], n| u64::from_le_bytes(word(r, n)), |r: &[u8], n| i64::from_le_bytes(word(r, n)));
    let known = records
        .chunks_exact(RECORD)
        .map(|r| {
            let stamp = Stamp { size: u(r, 2), mtime: (i(r, 3), i(r, 4)), ctime: (i(r, 5), i(r, 6)) };
            let digest: [u8; 32] = r[56..].try_into().unwrap_or_default();
            ((u(r, 0), u(r, 1)), (stamp, digest))
        })
        .collect();
    Some(known)
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

fn hash(file: &mut std::fs::File) -> std::io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
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
    let lines: Vec<Result<Line, SourceError>> = sorted.par_iter().map(|e| line(e, stats)).collect();
    let mut h = Sha256::new();
    let mut files = HashMap::with_capacity(lines.len());
    for (l, e) in lines.into_iter().zip(&sorted) {
        let (text, content) = l?;
        h.update(text.as_bytes());
        h.update(b"\n");
        if let Some(sum) = content {
            files.insert(e.path.clone(), sum);
        }
    }
    Ok((hex::encode(h.finalize()), files))
}

/// An entry's line in the digest, and its content digest when it is a regular file.
type Line = (String, Option<[u8; 32]>);

/// The entry's [`Line`].
fn line(e: &Entry, stats: &StatCache) -> Result<Line, SourceError> {
    let content = match &e.kind {
        EntryKind::File(source @ (FileSource::Path(_) | FileSource::Rooted(_))) => Some(stats.file_digest(source)?),
        EntryKind::File(FileSource::Bytes(b)) => Some(Sha256::digest(b).into()),
        _ => None,
    };
    let what = match &e.kind {
        EntryKind::File(_) => format!("file {}", content.map(hex::encode).unwrap_or_default()),
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
            let expected: [u8; 32] = Sha256::digest(std::fs::read(&file).unwrap()).into();
            assert_eq!(stats.file_digest(&source).unwrap(), expected);
            assert_eq!(stats.file_digest(&source).unwrap(), expected, "a second look answers from the cache");
        }
        assert_eq!(stats.known.lock().unwrap().len(), 1);
        stats.save();
        let again = StatCache::load(dir.path().join("cache.json"));
        assert_eq!(again.known.lock().unwrap().len(), 1);
        assert_eq!(again.file_digest(&source).unwrap(), stats.file_digest(&source).unwrap());
    }

    /// A cut or foreign file is an empty cache, never a wrong digest; the JSON of earlier versions goes.
    #[test]
    fn a_damaged_or_old_cache_file_is_an_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (file, path) = (dir.path().join("f"), dir.path().join("file-digests.bin"));
        std::fs::write(&file, b"content").unwrap();
        let stats = StatCache::load(path.clone());
        let digest = stats.file_digest(&FileSource::Path(file.clone())).unwrap();
        stats.save();
        let whole = std::fs::read(&path).unwrap();
        assert_eq!(whole.len(), MAGIC.len() + RECORD);
        assert_eq!(decode(&whole).unwrap().values().map(|(_, d)| *d).collect::<Vec<_>>(), [digest]);
        for damaged in [&whole[..whole.len() - 1], &whole[1..], b"{}".as_slice()] {
            assert!(decode(damaged).is_none());
        }
        std::fs::write(&path, &whole[..whole.len() - 5]).unwrap();
        assert!(StatCache::load(path.clone()).known.lock().unwrap().is_empty());
        let old = dir.path().join("file-digests.json");
        std::fs::write(&old, b"{}").unwrap();
        let stats = StatCache::load(path.clone());
        stats.file_digest(&FileSource::Path(file)).unwrap();
        stats.save();
        assert!(!old.exists(), "the old JSON cache is removed when the new one is written");
    }
}
