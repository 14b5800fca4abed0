//! `--squash`: everything the build added on top of its base becomes one layer.
//!
//! The base's rootfs and the final rootfs are both materialised (snapshots, reused later) and compared by
//! metadata; the difference, deletions included, is the single new layer. History keeps one entry per
//! step, each marked empty, plus one entry for the squashed layer, so layers and history stay in step.

use crate::build::BuildCtx;
use crate::build::error::BuildError;
use crate::build::rootfs;
use crate::build::state::ImageState;
use crate::build::step::{StepError, write_layer_with};
use crate::image::History;
use crate::layer;

/// Replaces the layers above the base with one layer holding their combined effect.
pub fn squash(ctx: &BuildCtx<'_>, state: &mut ImageState) -> Result<(), BuildError> {
    if state.layers.len() <= state.base_layers + 1 {
        return Ok(());
    }
    let place = |source: StepError| BuildError::Step {
        location: ctx.file_label.clone(),
        instruction: "--squash".to_string(),
        source,
    };
    let base_layers = state.layers[..state.base_layers].to_vec();
    let empty = tempfile::tempdir().map_err(|e| place(StepError::Temp(e)))?;
    // Leased until the squashed layer is written: its entries read the final tree's files.
    let base_lease = rootfs::lease(ctx.store, &base_layers, ctx.reporter)?;
    let final_lease = rootfs::lease(ctx.store, &state.layers, ctx.reporter)?;
    let tree = |lease: &Option<crate::store::Lease>| lease.as_ref().map_or(empty.path(), |l| l.tree()).to_path_buf();
    let (base_root, final_root) = (tree(&base_lease), tree(&final_lease));
    let entries = layer::diff_trees(&base_root, &final_root).map_err(|e| place(e.into()))?;
    let squashed = write_layer_with(ctx, &crate::layer::normalize(entries), None, None, false).map_err(place)?;
    drop((base_lease, final_lease));
    state.layers.truncate(state.base_layers);
    state.config.rootfs.diff_ids.truncate(state.base_layers);
    for entry in state.config.history.iter_mut().skip(state.base_history) {
        entry.empty_layer = Some(true);
    }
    if let Some(layer) = squashed {
        state.config.rootfs.diff_ids.push(layer.diff_id.clone());
        state.layers.push(layer);
        state.config.history.push(History {
            created: Some(ctx.created_rfc3339.clone()),
            created_by: Some("kiln build --squash".to_string()),
            comment: Some("squashed layers of this build".to_string()),
            ..Default::default()
        });
    }
    Ok(())
}
