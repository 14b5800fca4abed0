//! The step cache: one key per step, BuildKit-style, and a record per key in the store saying what the
//! step produced (a layer, or nothing) and when, so an unchanged step is skipped and keeps its history time.
//!
//! A key is `sha256(version, platform, parent key, the step after expansion, digest of its sources)`; the
//! first parent is the base (`scratch`, the base image's manifest digest, or the key that ended the stage it
//! builds on). Build args and ENV enter through the expanded step (a RUN carries its environment); an ARG
//! line itself enters by name only, so a changed value misses only the steps that see it. For COPY/ADD the
//! sources enter as [`sources::digest`] of exactly the selected entries. Secrets enter by id, never by value.

pub mod lineage;
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
    /// The chain id of the rootfs after the step: `prune --keep-storage` keeps its snapshots with the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<Digest>,
}

/// What `prune --keep-storage` keeps: the layers and chains (snapshots) of the records that fit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Eviction {
    /// Layers the kept records name.
    pub layers: Vec<Digest>,
    /// Chains whose snapshots are kept with them.
    pub chains: Vec<Digest>,
    /// Records removed.
    pub removed: usize,
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
    store: Store,
}

/// A problem `kiln fsck` finds in the cache's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheProblem {
    /// A record that does not parse.
    Unreadable {
        /// The record file.
        path: PathBuf,
    },
    /// A record whose layer blob is not in the store (a lookup treats it as a miss).
    MissingLayer {
        /// The record file.
        path: PathBuf,
        /// The layer blob.
        digest: String,
    },
    /// A temp file of a kiln process that is gone.
    Leftover {
        /// The file.
        path: PathBuf,
    },
}

impl std::fmt::Display for CacheProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheProblem::Unreadable { path } => write!(f, "cache record {} cannot be read", path.display()),
            CacheProblem::MissingLayer { path, digest } => {
                write!(f, "cache record {} names layer {digest}, which is not in the store", path.display())
            }
            CacheProblem::Leftover { path } => write!(f, "{} was left by a killed kiln process", path.display()),
        }
    }
}

impl Cache {
    /// The cache of `store`.
    pub fn open(store: &Store) -> Cache {
        Cache { dir: store.kiln_dir().join("cache").join("records"), store: store.clone() }
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

    /// Keeps the most recently used records whose layers and snapshots fit in `budget` bytes and removes the
    /// others. A layer shared by several records counts once, and so does a file several snapshots share
    /// (hard links); a record that fits only without its snapshots keeps its layer, and its snapshots go
    /// (they are made again from the layers when needed).
    pub fn evict_to(&self, budget: u64) -> Eviction {
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
        let mut out = Eviction::default();
        let mut tally = crate::store::InodeTally::new();
        let mut used = 0u64;
        for (path, _, record) in records {
            let layer = record.layer.as_ref().filter(|l| !out.layers.contains(&l.digest)).map_or(0, |l| l.size);
            let snapshots = record.chain.as_ref().filter(|c| !out.chains.contains(c)).map(|chain| {
                let dir = self.store.snapshot_dir();
                let mut inodes = std::collections::HashSet::new();
                let mut bytes = 0;
                for name in [chain.digest().to_string(), format!("{}.diff", chain.digest())] {
                    let (more, found) = tally.cost(&dir.join(name));
                    bytes += more;
                    inodes.extend(found);
                }
                (chain.clone(), bytes, inodes)
            });
            if used + layer > budget {
                let _ = std::fs::remove_file(path);
                out.removed += 1;
                continue;
            }
            used += layer;
            out.layers.extend(record.layer.map(|l| l.digest));
            if let Some((chain, bytes, inodes)) = snapshots
                && used + bytes <= budget
            {
                used += bytes;
                tally.take(inodes);
                out.chains.push(chain);
            }
        }
        out
    }

    /// Stores `record` under `key` (atomically; a failure only costs a later miss).
    pub fn put(&self, key: &CacheKey, record: &Record) {
        let Ok(bytes) = serde_json::to_vec(record) else { return };
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let _ = self.store.write_small(&self.path(key), &bytes);
    }

    /// Checks every record (parses, names a layer the store has) and the cache's stray temp files; with
    /// `repair`, removes the bad ones. Returns how many records were checked, and each problem with
    /// whether it was repaired.
    pub fn check(&self, repair: bool) -> (usize, Vec<(CacheProblem, bool)>) {
        let mut problems = Vec::new();
        let mut checked = 0;
        let mut files: Vec<PathBuf> = list(&self.dir);
        files.extend(self.dir.parent().map(list).unwrap_or_default().into_iter().filter(|p| p.is_file()));
        for path in files {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let problem = if let Some(pid) = temp_owner(&name) {
                // Temp files of an older kiln (records) or of the stat cache, named after their writer's pid.
                if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    continue;
                }
                CacheProblem::Leftover { path: path.clone() }
            } else if path.parent() == Some(self.dir.as_path()) {
                checked += 1;
                match std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Record>(&b).ok()) {
                    None => CacheProblem::Unreadable { path: path.clone() },
                    Some(Record { layer: Some(layer), .. }) if !self.store.has_blob(&layer.digest) => {
                        CacheProblem::MissingLayer { path: path.clone(), digest: layer.digest.to_string() }
                    }
                    Some(_) => continue,
                }
            } else {
                continue;
            };
            let repaired = repair && self.store.discard(&path).unwrap_or(false);
            problems.push((problem, repaired));
        }
        (checked, problems)
    }

    /// Removes every record (`kiln prune` clears the build cache with the blobs it no longer keeps).
    pub fn clear(&self) -> usize {
        let count = std::fs::read_dir(&self.dir).map(|d| d.count()).unwrap_or(0);
        let _ = self.store.discard(&self.dir);
        count
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.hex()))
    }
}

/// The writer's pid in a temp file name: `.<key>.<pid>` (records) or `file-digests.tmp<pid>` (stat cache).
fn temp_owner(name: &str) -> Option<u32> {
    let pid = match name.strip_prefix('.') {
        Some(rest) => rest.rsplit_once('.')?.1,
        None => name.rsplit_once(".tmp")?.1,
    };
    pid.parse().ok()
}

fn list(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        std::fs::read_dir(dir).into_iter().flatten().filter_map(Result::ok).map(|e| e.path()).collect();
    out.sort();
    out
}

/// The stat cache file of a store.
pub fn stat_cache_path(store: &Store) -> PathBuf {
    store.kiln_dir().join("cache").join("file-digests.bin")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_name_their_writer() {
        assert_eq!(temp_owner(".abc.123"), Some(123));
        assert_eq!(temp_owner("file-digests.tmp77"), Some(77));
        assert_eq!(temp_owner("abc.json"), None);
        assert_eq!(temp_owner("file-digests.json"), None);
    }

    #[test]
    fn check_finds_records_without_their_layer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cache = Cache::open(&store);
        let (kept, size) = store.put_bytes(b"layer").unwrap();
        let layer =
            |digest: Digest| CachedLayer { digest: digest.clone(), diff_id: digest, size, media_type: "x".into() };
        let key = |n: &str| CacheKey::base(n, "linux/amd64");
        cache.put(&key("a"), &Record { layer: Some(layer(kept)), created: "t".into(), chain: None });
        let gone = crate::store::digest_of(b"gone");
        cache.put(&key("b"), &Record { layer: Some(layer(gone)), created: "t".into(), chain: None });
        std::fs::write(cache.dir.join(".dead.999999999"), b"{").unwrap();
        let (checked, problems) = cache.check(false);
        assert_eq!((checked, problems.len()), (2, 2), "{problems:?}");
        let (_, repaired) = cache.check(true);
        assert!(repaired.iter().all(|(_, fixed)| *fixed));
        assert_eq!(cache.check(false), (1, Vec::new()));
        assert!(cache.get(&store, &key("a")).is_some());
    }

    /// `--keep-storage` counts a file two kept snapshots share once: a budget that holds both snapshots only
    /// when shared files count once keeps both.
    #[test]
    fn keep_storage_counts_shared_snapshot_files_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cache = Cache::open(&store);
        let (older, newer) = (crate::store::digest_of(b"older"), crate::store::digest_of(b"newer"));
        let first = store.create_snapshot(&older, |d| Ok(std::fs::write(d.join("big"), vec![7u8; 1 << 20])?)).unwrap();
        store.create_snapshot(&newer, |d| Ok(std::fs::hard_link(first.join("big"), d.join("big"))?)).unwrap();
        let mut tally = crate::store::InodeTally::new();
        let both = tally.add(&store.snapshot_dir().join(older.digest()))
            + tally.add(&store.snapshot_dir().join(newer.digest()));
        let record = |chain: &Digest| Record { layer: None, created: "t".into(), chain: Some(chain.clone()) };
        for (n, chain) in [(1, &older), (2, &newer)] {
            let key = CacheKey::base(chain.digest(), "linux/amd64");
            cache.put(&key, &record(chain));
            let at = filetime::FileTime::from_unix_time(1_000_000 + n, 0);
            filetime::set_file_mtime(cache.path(&key), at).unwrap();
        }
        let kept = cache.evict_to(both);
        assert_eq!(kept.chains, vec![newer.clone(), older.clone()], "newest first, both fit");
        assert!(both < 2 * (1 << 20), "the shared megabyte counted once: {both}");
        let kept = cache.evict_to(both - 1);
        assert_eq!(kept.chains, vec![newer], "one byte less: the older snapshot goes");
        assert_eq!(kept.removed, 0, "records without layers stay");
    }

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
