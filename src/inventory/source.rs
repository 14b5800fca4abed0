//! Where layers come from: a [`LayerSource`] opens a layer by digest and names the cache directory. The
//! store is the usual source ([`StoreLayers`]; its cache lives at `STORE/kiln/inventory/v1/`); tests and
//! benches can pass their own. Layers are scanned in parallel (one tar stream per core).

use std::io::Read;
use std::path::PathBuf;

use oci_spec::image::{Descriptor, Digest, ImageManifest};
use rayon::prelude::*;

use super::error::InventoryError;
use super::merge::{ImageEnv, merge};
use super::scan::{LayerFacts, scan_layer};
use super::{Inventory, cache};
use crate::image::ImageConfig;
use crate::store::Store;

/// Gives the inventory a layer's bytes and a place to cache facts.
pub trait LayerSource: Sync {
    /// Opens the (compressed) layer blob.
    fn open(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send>>;
    /// Where per-layer facts are cached; `None` reads every layer every time.
    fn cache_dir(&self) -> Option<PathBuf>;
}

/// Layers from the store, facts cached beside them.
#[derive(Debug, Clone, Copy)]
pub struct StoreLayers<'a>(pub &'a Store);

impl LayerSource for StoreLayers<'_> {
    fn open(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send>> {
        let file = self.0.open_blob(digest).map_err(std::io::Error::other)?;
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, file)))
    }

    fn cache_dir(&self) -> Option<PathBuf> {
        Some(self.0.kiln_dir().join("inventory/v1"))
    }
}

/// The inventory of an image made of `layers` (bottom first) with config environment `env`.
pub fn inventory(layers: &[Digest], source: &dyn LayerSource, env: &ImageEnv) -> Result<Inventory, InventoryError> {
    let dir = source.cache_dir();
    let facts: Vec<LayerFacts> = layers
        .par_iter()
        .map(|digest| {
            if let Some(cached) = dir.as_deref().and_then(|d| cache::load(d, digest)) {
                return Ok(cached);
            }
            let layer_err = |source| InventoryError::Layer { layer: digest.to_string(), source };
            let facts = scan_layer(source.open(digest).map_err(layer_err)?).map_err(layer_err)?;
            if let Some(d) = &dir {
                cache::save(d, digest, &facts)?;
            }
            Ok(facts)
        })
        .collect::<Result<_, InventoryError>>()?;
    Ok(merge(&facts, env))
}

/// Removes cached facts of layers the store no longer holds (after a prune); returns how many went.
pub fn sweep_cache(store: &Store) -> usize {
    let Some(dir) = StoreLayers(store).cache_dir() else { return 0 };
    let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let blob = name.strip_suffix(".json").and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok());
        if blob.is_none_or(|d| !store.has_blob(&d)) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The inventory of an image in the store, with its config.
pub fn inventory_of_image(store: &Store, manifest: &Descriptor) -> Result<(Inventory, ImageConfig), InventoryError> {
    let bad = |message: String| InventoryError::BadImage { digest: manifest.digest().to_string(), message };
    let bytes = store.read_blob(manifest.digest())?;
    let parsed = ImageManifest::from_reader(bytes.as_slice()).map_err(|e| bad(e.to_string()))?;
    let config_bytes = store.read_blob(parsed.config().digest())?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes).map_err(|e| bad(e.to_string()))?;
    let env = ImageEnv {
        env: config.config.env.clone().unwrap_or_default(),
        labels: config.config.labels.clone().unwrap_or_default().into_iter().collect(),
    };
    let layers: Vec<Digest> = parsed.layers().iter().map(|l| l.digest().clone()).collect();
    Ok((inventory(&layers, &StoreLayers(store), &env)?, config))
}
