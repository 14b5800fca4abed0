//! Unpacked views of images: the rootfs of a layer chain, materialised once as a store snapshot keyed by
//! its chain id and reused by every later step and build that needs the same chain.
//!
//! COPY needs them to see whether a destination exists, `--chown` to read the image's /etc/passwd,
//! and `COPY --from` to read another stage's files.

use std::io::BufReader;
use std::path::PathBuf;

use crate::build::events::{Event, Reporter};
use crate::build::state::LayerRef;
use crate::image;
use crate::layer;
use crate::store::{Store, StoreError};

/// The snapshot holding `layers` applied in order, created on first use; `None` for an empty chain. What a
/// layer held but this process could not create (device nodes, without privilege) is reported as a warning.
pub fn materialize(store: &Store, layers: &[LayerRef], reporter: &dyn Reporter) -> Result<Option<PathBuf>, StoreError> {
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
            let stats = layer::apply_layer(BufReader::new(blob), dir, &opts)?;
            if !stats.dropped.is_empty() {
                reporter.report(Event::Warning(dropped_message(layer.digest.as_ref(), &stats.dropped)));
            }
        }
        Ok(())
    })?;
    Ok(Some(path))
}

/// An empty snapshot: the rootfs of a stage with no layers.
pub fn empty(store: &Store) -> Result<PathBuf, StoreError> {
    store.create_snapshot(&image::chain_id(&[]), |_| Ok(()))
}

/// Most lower dirs one overlay gets before the chain is flattened into one snapshot instead.
const MAX_LOWERS: usize = 24;

/// The snapshots whose overlay shows the rootfs of `layers`, topmost first: the diff snapshots RUN steps
/// left, down to the nearest full snapshot (created when missing). An empty chain gives an empty snapshot.
pub fn lowers(store: &Store, layers: &[LayerRef], reporter: &dyn Reporter) -> Result<Vec<PathBuf>, StoreError> {
    let diff_ids: Vec<_> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let mut out = Vec::new();
    for depth in (1..=layers.len()).rev() {
        let chain = image::chain_id(&diff_ids[..depth]);
        if let Some(full) = store.snapshot(&chain) {
            out.push(full);
            return Ok(out);
        }
        match store.diff_snapshot(&chain) {
            Some(diff) if out.len() < MAX_LOWERS => out.push(diff),
            _ => {
                out.extend(materialize(store, &layers[..depth], reporter)?);
                return Ok(out);
            }
        }
    }
    out.push(empty(store)?);
    Ok(out)
}

/// "layer X: 2 entries could not be created without privilege and are left out of the rootfs: dev/a, dev/b".
fn dropped_message(layer: &str, dropped: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut names = dropped.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if dropped.len() > SHOWN {
        names.push_str(&format!(" and {} more", dropped.len() - SHOWN));
    }
    format!(
        "layer {layer}: {} device node(s) could not be created without privilege and are left out of the rootfs \
         that RUN and COPY --from see: {names}",
        dropped.len()
    )
}
