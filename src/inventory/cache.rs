//! The per-layer cache: a layer's facts, as JSON, at `CACHE_DIR/<layer digest hex>.json`. A layer's facts
//! depend on its bytes alone, and its digest names those bytes, so an entry never goes stale; entries of
//! another [`FACTS_VERSION`] are ignored (read again from the layer). Written by rename, so a reader sees a
//! whole entry or none.

use std::path::{Path, PathBuf};

use oci_spec::image::Digest;

use super::error::InventoryError;
use super::scan::{FACTS_VERSION, LayerFacts};

fn entry(dir: &Path, layer: &Digest) -> PathBuf {
    dir.join(format!("{}.json", layer.digest()))
}

/// The cached facts of `layer`, when present and of this version.
pub fn load(dir: &Path, layer: &Digest) -> Option<LayerFacts> {
    let bytes = std::fs::read(entry(dir, layer)).ok()?;
    serde_json::from_slice::<LayerFacts>(&bytes).ok().filter(|f| f.version == FACTS_VERSION)
}

/// Caches the facts of `layer`.
pub fn save(dir: &Path, layer: &Digest, facts: &LayerFacts) -> Result<(), InventoryError> {
    let target = entry(dir, layer);
    let err = |source| InventoryError::Cache { path: target.clone(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    serde_json::to_writer(std::io::BufWriter::new(tmp.as_file_mut()), facts).map_err(|e| err(e.into()))?;
    tmp.persist(&target).map_err(|e| err(e.error))?;
    Ok(())
}
