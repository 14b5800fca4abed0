//! The step cache: one key per step, BuildKit-style, and a record per key in the store saying what the
//! step produced (a layer, or nothing) and when, so an unchanged step is skipped and keeps its history time.
//!
//! A key is `sha256(version, platform, parent key, the step after expansion, digest of its sources)`; the
//! first parent is the base (`scratch`, the base image's manifest digest, or the key that ended the stage it
//! builds on). Build args and ENV enter through the expanded step (a RUN carries its environment); an ARG
//! line itself enters by name only, so a changed value misses only the steps that see it. For COPY/ADD the
//! sources enter as [`sources::digest`] of exactly the selected entries. Secrets enter by id, never by value.

pub mod sources;

use std::path::PathBuf;

use oci_spec::image::Digest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::store::Store;

/// Bumped when the meaning of a key changes, so old records are never mistaken for new ones.
const VERSION: &str = "kiln-cache-1";

/// A step's cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    /// The key a stage starts from: its base's identity (`scratch`, a manifest digest, a stage's last key).
    pub fn base(identity: &str, platform: &str) -> CacheKey {
        CacheKey(hash(&[VERSION, platform, identity]))
    }

    /// The key of the step `repr` (with `sources`, a digest of its inputs) on top of this one.
    pub fn child(&self, repr: &str, sources: Option<&str>) -> CacheKey {
        CacheKey(hash(&[VERSION, &self.0, repr, sources.unwrap_or("")]))
    }

    /// The key as hex.
    pub fn hex(&self) -> &str {
        &self.0
    }
}

fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// What a cached step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The layer, when the step made one.
    pub layer: Option<CachedLayer>,
    /// When the step first ran (its history time).
    pub created: String,
}

/// A cached layer (the fields of `build::state::LayerRef`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedLayer {
    /// Blob digest.
    pub digest: Digest,
    /// Uncompressed digest.
    pub diff_id: Digest,
    /// Blob size.
    pub size: u64,
    /// Blob media type.
    pub media_type: String,
}

/// The cache records of one store (`kiln/cache/records/<key>.json`).
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache of `store`.
    pub fn open(store: &Store) -> Cache {
        Cache { dir: store.kiln_dir().join("cache").join("records") }
    }

    /// The record for `key`, when there is one whose layer blob is still in `store`.
    pub fn get(&self, store: &Store, key: &CacheKey) -> Option<Record> {
        let text = std::fs::read(self.path(key)).ok()?;
        let record: Record = serde_json::from_slice(&text).ok()?;
        match &record.layer {
            Some(layer) if !store.has_blob(&layer.digest) => None,
            _ => {
                // The record's mtime is its last use, for `prune --keep-storage`.
                let now = filetime::FileTime::now();
                let _ = filetime::set_file_mtime(self.path(key), now);
                Some(record)
            }
        }
    }

    /// Keeps the most recently used records whose layers fit in `budget` bytes (a layer shared by several
    /// records counts once) and removes the others; returns the layers of the kept ones and how many went.
    pub fn evict_to(&self, budget: u64) -> (Vec<Digest>, usize) {
        let mut records: Vec<(PathBuf, std::time::SystemTime, Record)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let used = e.metadata().and_then(|m| m.modified()).ok()?;
                let record = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                Some((e.path(), used, record))
            })
            .collect();
        records.sort_by_key(|r| std::cmp::Reverse(r.1));
        let mut kept: Vec<Digest> = Vec::new();
        let (mut used, mut removed) = (0u64, 0usize);
        for (path, _, record) in records {
            let extra = record.layer.as_ref().filter(|l| !kept.contains(&l.digest)).map_or(0, |l| l.size);
            if used + extra <= budget {
                used += extra;
                kept.extend(record.layer.map(|l| l.digest));
            } else {
                let _ = std::fs::remove_file(path);
                removed += 1;
            }
        }
        (kept, removed)
    }

    /// Stores `record` under `key` (atomically; a failure only costs a later miss).
    pub fn put(&self, key: &CacheKey, record: &Record) {
        let Ok(bytes) = serde_json::to_vec(record) else { return };
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let path = self.path(key);
        let temp = self.dir.join(format!(".{}.{}", key.hex(), std::process::id()));
        if std::fs::write(&temp, bytes).is_ok() && std::fs::rename(&temp, &path).is_err() {
            let _ = std::fs::remove_file(&temp);
        }
    }

    /// Removes every record (`kiln prune` clears the build cache with the blobs it no longer keeps).
    pub fn clear(&self) -> usize {
        let count = std::fs::read_dir(&self.dir).map(|d| d.count()).unwrap_or(0);
        let _ = std::fs::remove_dir_all(&self.dir);
        count
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.hex()))
    }
}

/// The stat cache file of a store.
pub fn stat_cache_path(store: &Store) -> PathBuf {
    store.kiln_dir().join("cache").join("file-digests.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_with_every_part() {
        let base = CacheKey::base("scratch", "linux/amd64");
        let a = base.child("RUN echo a", None);
        assert_ne!(a, base.child("RUN echo b", None));
        assert_ne!(a, base.child("RUN echo a", Some("x")));
        assert_ne!(a, CacheKey::base("scratch", "linux/arm64").child("RUN echo a", None));
        assert_eq!(a, CacheKey::base("scratch", "linux/amd64").child("RUN echo a", None));
        // Length-prefixed parts: moving a boundary changes the key.
        assert_ne!(base.child("ab", Some("c")), base.child("a", Some("bc")));
    }
}
