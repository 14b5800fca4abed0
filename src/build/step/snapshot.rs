//! COPY and ADD write their layer and — when a later step reads the rootfs — the snapshot of the new chain
//! at the same time, so that step does not unpack the layer again.
//!
//! The snapshot starts as the parent's rootfs linked file by file (`layer::link_tree`: no data copied), and
//! the step's entries are placed on it as the layer writer reads them (`layer::populate`, fed through a
//! tee: each source is read once, and the snapshot holds the layer's very bytes). When the same step made a
//! snapshot before (its position, `cache::lineage`), that one is the donor: every file whose digest and
//! metadata it already has is hard-linked from it, so a COPY in which one file changed writes one file.
//! When nobody else is reading the donor, the step takes it out of the store whole (`Store::take_snapshot`)
//! and moves its unchanged directories into the new tree with one rename each instead of linking their
//! files; what is left of it is removed. The old snapshot is gone then: snapshots are caches, and a missing
//! one is derived when a later build needs it. What is left holds the parent's files (the donor was built on
//! the same parent), one unlink each: the donor is taken only when the step has more entries than the
//! parent has, so a small COPY on a large base image links as before instead of paying for the base twice.
//! Creating files (the snapshot's cost) and compressing (the layer's) run on different threads: a cold
//! step costs the larger of the two, not their sum.

use std::collections::HashMap;

use crate::build::rootfs;
use crate::build::stage::StageEnv;
use crate::build::state::{ImageState, LayerRef};
use crate::build::step::{StepError, write_normalized_layer};
use crate::cache::lineage::{Position, Previous};
use crate::cache::sources::FileDigests;
use crate::image;
use crate::layer::{self, Entry};
use crate::store::Store;
use oci_spec::image::Digest;

/// Writes `entries` as the layer of the step at `position` on `state`, and the snapshot of the resulting
/// chain beside it; `files` are the entries' content digests.
pub fn write_with_snapshot(
    env: &StageEnv<'_>,
    state: &ImageState,
    position: &Position,
    entries: Vec<Entry>,
    files: &FileDigests,
) -> Result<Option<LayerRef>, StepError> {
    if entries.is_empty() {
        // An empty layer (BuildKit commits one); its snapshot is derived when read, by links.
        return super::write_layer(env, state, position, entries);
    }
    let store = env.ctx.store;
    let parent = rootfs::lease(store, &state.layers, env.ctx.reporter)?;
    let previous = env.ctx.lineage.previous(position);
    let parent_chain = image::chain_id(&state.diff_ids());
    let entries = layer::normalize(entries);
    let staged = store.stage_snapshot()?;
    let tree = staged.tree();
    let opts = layer::ApplyOptions::for_current_user();
    let clamp = env.ctx.epoch;
    let (writer, reader) = layer::tee();
    let (written, filled) = std::thread::scope(|s| {
        let filling = s.spawn(|| {
            let parent_entries = match &parent {
                Some(parent) => layer::link_tree(parent, &tree)?.entries(),
                None => 0,
            };
            let take = parent_entries < entries.len();
            let donor = previous.as_ref().and_then(|p| donor(store, p, &parent_chain, take));
            // Encoded here, beside the layer writer, rather than after it on the step's thread.
            layer::populate(&tree, &entries, files, reader, &opts, donor, clamp)
                .map(|placed| (rootfs::encode_files(&placed.notes), placed))
        });
        let written = write_normalized_layer(env, state, position, previous.as_ref(), &entries, Some(&writer));
        drop(writer);
        (written, filling.join())
    });
    let Some(layer) = written? else { return Ok(None) };
    let (files_note, placed) = filled.map_err(|_| StepError::Unsupported("the snapshot writer panicked".into()))??;
    rootfs::report_dropped(env.ctx.reporter, &layer.digest, &placed.stats.dropped);
    let mut diff_ids = state.diff_ids();
    diff_ids.push(layer.diff_id.clone());
    let chain = image::chain_id(&diff_ids);
    staged.set_note(rootfs::FILES_NOTE, &files_note)?;
    staged.set_note(rootfs::ORIGIN_NOTE, &serde_json::to_vec(&diff_ids).unwrap_or_default())?;
    staged.publish(store, &chain)?;
    env.ctx.owned_snapshots.lock().unwrap_or_else(|e| e.into_inner()).insert(chain);
    Ok(Some(layer))
}

/// The snapshot this step made last time (`previous`), with what its note says of its files: taken whole
/// (movable) when `take` and nobody else holds it, else leased and linked from.
fn donor(store: &Store, previous: &Previous, parent_chain: &Digest, take: bool) -> Option<layer::Donor> {
    // Never the tree this step builds on (its parent is leased, so the claim would fail anyway).
    if take
        && previous.chain != *parent_chain
        && let Some(claimed) = store.take_snapshot(&previous.chain)
    {
        let notes = claimed.note(rootfs::FILES_NOTE).map(|b| rootfs::decode_files(&b)).unwrap_or_default();
        if let Ok(donor) = layer::Donor::open(&claimed.tree(), notes) {
            return Some(donor.movable(claimed));
        }
    }
    let lease = store.lease_snapshot(&previous.chain)?;
    let notes: HashMap<_, _> =
        store.snapshot_note(&previous.chain, rootfs::FILES_NOTE).map(|b| rootfs::decode_files(&b)).unwrap_or_default();
    // Leased while it is used: no chroot step claims it and changes it meanwhile.
    let tree = lease.tree().to_path_buf();
    layer::Donor::open(&tree, notes).ok().map(|d| d.holding(lease))
}
