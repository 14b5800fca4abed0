//! Unpacked views of images: the rootfs of a layer chain, materialised once as a store snapshot keyed by
//! its chain id and reused by every later step and build that needs the same chain.
//!
//! COPY needs them to see whether a destination exists, `--chown` to read the image's /etc/passwd,
//! `COPY --from` to read another stage's files, and RUN as its overlay's lower dirs.
//!
//! A missing snapshot is *derived*, never unpacked whole when the store has something to start from: the
//! deepest full snapshot of a prefix of the chain is hard-linked (`layer::link_tree`), the RUN diff
//! snapshots above it are laid over by links (`layer::merge_upper`), and only the layers with neither are
//! applied from their tars — with the snapshot most like the new one (the longest common prefix, then the
//! most layers in common, then the newest) as a donor whose identical files are linked instead of written.
//! A base image that changed in one layer costs that layer.

use std::collections::HashSet;
use std::io::BufReader;
use std::path::PathBuf;

use oci_spec::image::Digest;

use crate::build::events::{Event, Reporter};
use crate::build::state::LayerRef;
use crate::image;
use crate::layer;
use crate::store::{Lease, Store, StoreError};

/// The note naming a snapshot's chain (its diff ids, JSON), used to pick donors.
pub const ORIGIN_NOTE: &str = "origin";
/// The note with the content digests of a snapshot's files (see [`encode_files`]).
pub const FILES_NOTE: &str = "files";

/// The snapshot holding `layers` applied in order, created on first use and leased for as long as the caller
/// holds it (no other step claims or takes it then); `None` for an empty chain. What a layer held but this
/// process could not create (device nodes, without privilege) is reported as a warning.
pub fn lease(store: &Store, layers: &[LayerRef], reporter: &dyn Reporter) -> Result<Option<Lease>, StoreError> {
    if layers.is_empty() {
        return Ok(None);
    }
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let chain = image::chain_id(&diff_ids);
    for _ in 0..3 {
        if let Some(lease) = store.lease_snapshot(&chain) {
            return Ok(Some(lease));
        }
        derive(store, layers, &diff_ids, reporter)?;
    }
    Err(StoreError::Snapshot { chain_id: chain.to_string(), message: "it keeps being taken by other builds".into() })
}

/// An empty snapshot: the rootfs of a stage with no layers.
pub fn empty(store: &Store) -> Result<PathBuf, StoreError> {
    store.create_snapshot(&image::chain_id(&[]), |_| Ok(()))
}

/// Most lower dirs one overlay gets before the chain is flattened into one snapshot instead.
const MAX_LOWERS: usize = 24;

/// The snapshots whose overlay shows the rootfs of `layers`, topmost first and leased: the diff snapshots
/// RUN steps left, down to the nearest full snapshot (derived when missing). An empty chain gives an empty
/// snapshot.
pub fn lowers(store: &Store, layers: &[LayerRef], reporter: &dyn Reporter) -> Result<Vec<Lease>, StoreError> {
    let diff_ids: Vec<_> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let mut out = Vec::new();
    for depth in (1..=layers.len()).rev() {
        let chain = image::chain_id(&diff_ids[..depth]);
        if let Some(full) = store.lease_snapshot(&chain) {
            out.push(full);
            return Ok(out);
        }
        match store.lease_diff_snapshot(&chain) {
            Some(diff) if out.len() < MAX_LOWERS => out.push(diff),
            _ => {
                out.extend(lease(store, &layers[..depth], reporter)?);
                return Ok(out);
            }
        }
    }
    let chain = image::chain_id(&[]);
    empty(store)?;
    out.extend(store.lease_snapshot(&chain));
    Ok(out)
}

/// Makes the full snapshot of `layers` from what the store has (see the module's doc) and publishes it.
fn derive(store: &Store, layers: &[LayerRef], diff_ids: &[Digest], reporter: &dyn Reporter) -> Result<(), StoreError> {
    let fail = |e: layer::LayerError| StoreError::Snapshot {
        chain_id: image::chain_id(diff_ids).to_string(),
        message: e.to_string(),
    };
    let base =
        (1..layers.len()).rev().find_map(|d| store.lease_snapshot(&image::chain_id(&diff_ids[..d])).map(|l| (d, l)));
    let start = base.as_ref().map_or(0, |(d, _)| *d);
    let donor = pick_donor(store, diff_ids, start);
    let staged = store.stage_snapshot()?;
    let tree = staged.tree();
    if let Some((_, from)) = &base {
        layer::link_tree(from, &tree).map_err(fail)?;
    }
    for depth in start + 1..=layers.len() {
        if let Some(upper) = store.lease_diff_snapshot(&image::chain_id(&diff_ids[..depth])) {
            layer::merge_upper(&upper, &tree).map_err(fail)?;
            continue;
        }
        let blob = store.open_blob(&layers[depth - 1].digest)?;
        let donor = match &donor {
            Some((lease, chain)) => {
                let notes = store.snapshot_note(chain, FILES_NOTE).map(|b| decode_files(&b)).unwrap_or_default();
                layer::Donor::open(lease, notes).ok()
            }
            None => None,
        };
        let opts = layer::ApplyOptions::for_current_user();
        let placed = layer::apply_layer_sharing(BufReader::new(blob), &tree, &opts, donor).map_err(fail)?;
        report_dropped(reporter, &layers[depth - 1].digest, &placed.stats.dropped);
    }
    staged.set_note(ORIGIN_NOTE, &serde_json::to_vec(diff_ids).unwrap_or_default())?;
    staged.publish(store, &image::chain_id(diff_ids))?;
    Ok(())
}

/// Warns that `layer` held entries this process could not create (see [`dropped_message`]); nothing when none.
pub fn report_dropped(reporter: &dyn Reporter, layer: &Digest, dropped: &[String]) {
    if !dropped.is_empty() {
        reporter.report(Event::Warning(dropped_message(layer.as_ref(), dropped)));
    }
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

/// The full snapshot most like the chain `diff_ids` above depth `start`: the longest common prefix, then the
/// most layers in common, then the newest; none when no snapshot shares a layer with it.
fn pick_donor(store: &Store, diff_ids: &[Digest], start: usize) -> Option<(Lease, Digest)> {
    let wanted: HashSet<&Digest> = diff_ids.iter().collect();
    let own = image::chain_id(diff_ids);
    let mut best: Option<((usize, usize), Digest)> = None;
    for chain in store.full_snapshots() {
        if chain == own {
            continue;
        }
        let Some(origin) = store.snapshot_note(&chain, ORIGIN_NOTE) else { continue };
        let Ok(theirs) = serde_json::from_slice::<Vec<Digest>>(&origin) else { continue };
        let prefix = theirs.iter().zip(diff_ids).take_while(|(a, b)| a == b).count();
        let shared = theirs.iter().filter(|d| wanted.contains(d)).count();
        // A donor is only useful for files above the base the new snapshot starts from.
        if shared == 0 || theirs.len() <= start {
            continue;
        }
        if best.as_ref().is_none_or(|(score, _)| (prefix, shared) > *score) {
            best = Some(((prefix, shared), chain));
        }
    }
    let (_, chain) = best?;
    Some((store.lease_snapshot(&chain)?, chain))
}

/// The `files` note: each regular file's path, content digest and xattrs digest (see `layer::FileNote`).
pub fn encode_files(notes: &std::collections::HashMap<String, layer::FileNote>) -> Vec<u8> {
    let mut out = Vec::with_capacity(notes.len() * 96);
    out.extend_from_slice(b"KILNFILES1");
    let mut sorted: Vec<_> = notes.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (path, note) in sorted {
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(&note.content);
        out.extend_from_slice(&note.xattrs);
    }
    out
}

/// Reads a `files` note; anything else (or a damaged one) is no note.
pub fn decode_files(bytes: &[u8]) -> std::collections::HashMap<String, layer::FileNote> {
    let mut out = std::collections::HashMap::new();
    let Some(mut rest) = bytes.strip_prefix(b"KILNFILES1") else { return out };
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else { return Default::default() };
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len + 64 {
            return Default::default();
        }
        let Ok(path) = std::str::from_utf8(&tail[..len]) else { return Default::default() };
        let digest = |at: usize| -> [u8; 32] { tail[at..at + 32].try_into().unwrap_or_default() };
        out.insert(path.to_string(), layer::FileNote { content: digest(len), xattrs: digest(len + 32) });
        rest = &tail[len + 64..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_note_round_trips_and_damage_means_no_note() {
        let mut notes = std::collections::HashMap::new();
        notes.insert("a/b".to_string(), layer::FileNote { content: [1; 32], xattrs: [2; 32] });
        notes.insert("c".to_string(), layer::FileNote { content: [3; 32], xattrs: [4; 32] });
        let bytes = encode_files(&notes);
        assert_eq!(decode_files(&bytes), notes);
        assert!(decode_files(&bytes[..bytes.len() - 1]).is_empty());
        assert!(decode_files(b"something else").is_empty());
    }
}
