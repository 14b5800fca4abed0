//! Unpacked views of images: the rootfs of a layer chain, materialised once as a store snapshot keyed by
//! its chain id and reused by every later step and build that needs the same chain.
//!
//! COPY needs them to see whether a destination exists, `--chown` to read the image's /etc/passwd,
//! and `COPY --from` to read another stage's files.

use std::io::BufReader;
use std::path::PathBuf;

use crate::build::state::LayerRef;
use crate::image;
use crate::layer;
use crate::store::{Store, StoreError};

/// The snapshot holding `layers` applied in order, created on first use; `None` for an empty chain.
pub fn materialize(store: &Store, layers: &[LayerRef]) -> Result<Option<PathBuf>, StoreError> {
    if layers.is_empty() {
        return Ok(None);
    }
    let diff_ids: Vec<_> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let chain = image::chain_id(&diff_ids);
    if let Some(path) = store.snapshot(&chain) {
        return Ok(Some(path));
    }
    let path = store.create_snapshot(&chain, |dir| {
        for layer in layers {
            let blob = store.open_blob(&layer.digest)?;
            let opts = layer::ApplyOptions::for_current_user();
            layer::apply_layer(BufReader::new(blob), dir, &opts)?;
        }
        Ok(())
    })?;
    Ok(Some(path))
}
