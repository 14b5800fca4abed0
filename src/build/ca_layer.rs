//! The CA layer `--ca-persist` adds on top of the final image, with its history entry and labels. (ADD URLs
//! trust the company CAs through the registry client's roots, which `kiln build` extends with them.)

use crate::build::BuildCtx;
use crate::build::error::BuildError;
use crate::build::state::ImageState;
use crate::build::{rootfs, step};
use crate::image::History;
use crate::supply::ImageView;
use crate::supply::trust::{persist, update};

/// Adds the CA layer to `state`: one layer on top, recorded in the labels.
pub async fn add(ctx: &BuildCtx<'_>, state: &mut ImageState) -> Result<(), BuildError> {
    let fail = |e: step::StepError| BuildError::CaLayer(Box::new(e));
    step::ensure_local(ctx, &state.layers).await.map_err(fail)?;
    // Leased while they are read: no chroot step claims them meanwhile.
    let leases = rootfs::lowers(ctx.store, &state.layers, ctx.reporter)?;
    let lowers = leases.iter().map(|l| l.tree().to_path_buf()).collect();
    let cas = ctx.supply.ca_certs();
    // The build's epoch (a build argument or kiln's own option) clamps the layer's times as every step's.
    let mtime = ctx.epoch.unwrap_or(persist::MTIME);
    let entries = persist::layer_entries(&ImageView::new(lowers), cas, mtime);
    let entries = crate::layer::normalize(entries);
    let Some(layer) = step::write_layer_with(ctx, &entries, None, None, false).map_err(fail)? else { return Ok(()) };
    drop(leases);
    let labels = state.config.config.labels.get_or_insert_with(Default::default);
    labels.insert(persist::LABEL_LAYER.to_string(), layer.diff_id.to_string());
    labels.insert(persist::LABEL_CERTS.to_string(), persist::certs_label(cas));
    state.config.history.push(History {
        // The newest time of the steps below: an unchanged rebuild keeps its image ID.
        created: state
            .config
            .history
            .iter()
            .filter_map(|h| h.created.clone())
            .max()
            .or(Some(ctx.created_rfc3339.clone())),
        created_by: Some(update::history_text(cas)),
        comment: Some(persist::HISTORY_COMMENT.to_string()),
        ..Default::default()
    });
    state.config.rootfs.diff_ids.push(layer.diff_id.clone());
    state.layers.push(layer);
    Ok(())
}
