//! What an earlier run of the same step left, for a new run to be derived from instead of made from scratch.
//!
//! A step's *position* is its place in the chain whatever its sources: the parent's key and the step as
//! written (a COPY whose files changed keeps its position; a different COPY line does not). The last result
//! made at a position — its layer and the chain id of the snapshot that shows it — is remembered in
//! `kiln/cache/positions/<position>.json`; for each gzip layer kiln wrote, the index of its members is kept
//! in `kiln/cache/chunks/<blob hex>`. A new layer at the same position copies the members of unchanged
//! chunks from the earlier blob, and a new snapshot links the unchanged files of the earlier one.
//!
//! Everything here is advisory: a missing or stale entry only costs the saving, never correctness (reused
//! members are checked against their chunk, shared files against their recorded content).

use std::path::PathBuf;

use oci_spec::image::Digest;
use serde::{Deserialize, Serialize};

use super::{CacheKey, CachedLayer};
use crate::layer::ChunkIndex;
use crate::store::Store;

/// Where a step sits in its chain, whatever its sources.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position(String);

impl Position {
    /// The position of the step `repr` on top of the step whose key is `parent`.
    pub fn of(parent: &CacheKey, repr: &str) -> Position {
        Position(super::hash(&["kiln-position-1", parent.hex(), repr]))
    }
}

/// The last result made at a position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    /// Its layer.
    pub layer: CachedLayer,
    /// The chain id of the rootfs with that layer on top (its snapshot, while the store has one).
    pub chain: Digest,
}

/// Positions and chunk indexes of one store.
pub struct Lineage {
    positions: PathBuf,
    chunks: PathBuf,
    store: Store,
}

impl Lineage {
    /// The lineage records of `store`.
    pub fn open(store: &Store) -> Lineage {
        let cache = store.kiln_dir().join("cache");
        Lineage { positions: cache.join("positions"), chunks: cache.join("chunks"), store: store.clone() }
    }

    /// The last result made at `position`, when its layer is still in the store.
    pub fn previous(&self, position: &Position) -> Option<Previous> {
        let bytes = std::fs::read(self.positions.join(format!("{}.json", position.0))).ok()?;
        let previous: Previous = serde_json::from_slice(&bytes).ok()?;
        self.store.has_blob(&previous.layer.digest).then_some(previous)
    }

    /// Remembers `previous` as the last result made at `position` (a failure only costs the saving).
    pub fn remember(&self, position: &Position, previous: &Previous) {
        let Ok(bytes) = serde_json::to_vec(previous) else { return };
        if std::fs::create_dir_all(&self.positions).is_ok() {
            let _ = self.store.write_small(&self.positions.join(format!("{}.json", position.0)), &bytes);
        }
    }

    /// The member index of the gzip blob `digest`, when kiln wrote one.
    pub fn chunk_index(&self, digest: &Digest) -> Option<ChunkIndex> {
        ChunkIndex::decode(&std::fs::read(self.chunks.join(digest.digest())).ok()?)
    }

    /// Keeps the member index of the blob `digest` (a failure only costs the saving).
    pub fn put_chunk_index(&self, digest: &Digest, index: &ChunkIndex) {
        if std::fs::create_dir_all(&self.chunks).is_ok() {
            let _ = self.store.write_small(&self.chunks.join(digest.digest()), &index.encode());
        }
    }

    /// Removes the indexes of blobs the store no longer has and positions whose layer is gone (after prune).
    pub fn sweep(&self) -> usize {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.chunks).into_iter().flatten().filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let kept = format!("sha256:{name}").parse::<Digest>().is_ok_and(|d| self.store.has_blob(&d));
            if !kept && self.store.discard(&entry.path()).unwrap_or(false) {
                removed += 1;
            }
        }
        for entry in std::fs::read_dir(&self.positions).into_iter().flatten().filter_map(Result::ok) {
            let kept = std::fs::read(entry.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<Previous>(&b).ok())
                .is_some_and(|p| self.store.has_blob(&p.layer.digest));
            if !kept && self.store.discard(&entry.path()).unwrap_or(false) {
                removed += 1;
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_ignores_sources_but_not_the_step_or_its_parent() {
        let parent = CacheKey::base("scratch", "linux/amd64");
        assert_eq!(Position::of(&parent, "COPY a /a"), Position::of(&parent, "COPY a /a"));
        assert_ne!(Position::of(&parent, "COPY a /a"), Position::of(&parent, "COPY a /b"));
        assert_ne!(Position::of(&parent, "COPY a /a"), Position::of(&parent.child("RUN x", None), "COPY a /a"));
    }

    #[test]
    fn entries_whose_blob_is_gone_are_not_used_and_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lineage = Lineage::open(&store);
        let (kept, size) = store.put_bytes(b"layer").unwrap();
        let gone = crate::store::digest_of(b"gone");
        let previous = |digest: &Digest| Previous {
            layer: CachedLayer { digest: digest.clone(), diff_id: digest.clone(), size, media_type: "x".into() },
            chain: digest.clone(),
        };
        let parent = CacheKey::base("scratch", "linux/amd64");
        let (here, there) = (Position::of(&parent, "a"), Position::of(&parent, "b"));
        lineage.remember(&here, &previous(&kept));
        lineage.remember(&there, &previous(&gone));
        let index = ChunkIndex { compressor: "c".into(), records: Vec::new() };
        lineage.put_chunk_index(&kept, &index);
        lineage.put_chunk_index(&gone, &index);
        assert_eq!(lineage.previous(&here), Some(previous(&kept)));
        assert_eq!(lineage.previous(&there), None);
        assert_eq!(lineage.sweep(), 2);
        assert_eq!(lineage.chunk_index(&kept), Some(index));
        assert_eq!(lineage.chunk_index(&gone), None);
        assert_eq!(lineage.previous(&here), Some(previous(&kept)));
    }
}
