//! Garbage collection: everything reachable from `index.json` (indexes → manifests → config and layers)
//! or from the caller's extra roots stays; other blobs, unlisted snapshots and what killed processes left
//! go. Each goes through the trash (renamed out of use, then removed), so a prune killed at any moment
//! leaves no half-deleted snapshot for a later build to use.

use std::collections::HashSet;

use oci_spec::image::Digest;

use super::error::{StoreError, io};
use super::{Store, index, usage};

/// What prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Blobs deleted.
    pub blobs_removed: usize,
    /// Snapshots deleted.
    pub snapshots_removed: usize,
    /// Bytes freed by deleted blobs, snapshots (an inode other snapshots still link is not freed) and
    /// leftover temp files.
    pub bytes_freed: u64,
}

/// Runs a collection; the caller holds the exclusive store lock.
pub(super) fn run(store: &Store, extra_roots: &[Digest], keep: &HashSet<Digest>) -> Result<PruneReport, StoreError> {
    let mut reachable: HashSet<String> = HashSet::new();
    // Referrers (SBOMs, provenance) are kept only while the image they refer to is.
    let (referrers, roots): (Vec<_>, Vec<_>) = index::read(&store.index_path())?
        .manifests()
        .iter()
        .cloned()
        .partition(|d| super::referrers::subject_of(d).is_some());
    let mut pending: Vec<Digest> = roots.iter().map(|d| d.digest().clone()).collect();
    pending.extend(extra_roots.iter().cloned());
    walk(store, &mut pending, &mut reachable);
    let subject_kept = |s: &str| reachable.contains(s.trim_start_matches("sha256:"));
    let mut kept_referrers: Vec<Digest> = referrers
        .iter()
        .filter(|d| super::referrers::subject_of(d).is_some_and(subject_kept))
        .map(|d| d.digest().clone())
        .collect();
    store.drop_referrers_except(&subject_kept)?;
    walk(store, &mut kept_referrers, &mut reachable);
    let mut report = PruneReport::default();
    let blob_dir = store.blob_dir();
    for entry in std::fs::read_dir(&blob_dir).map_err(io("list", &blob_dir))?.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if reachable.contains(&name) {
            continue;
        }
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        if store.discard(&entry.path())? {
            report.blobs_removed += 1;
            report.bytes_freed += size;
        }
    }
    let keep_hex: HashSet<&str> = keep.iter().map(|d| d.digest()).collect();
    let snap_dir = store.snapshot_dir();
    let doomed: Vec<std::path::PathBuf> = std::fs::read_dir(&snap_dir)
        .map_err(io("list", &snap_dir))?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            !keep_hex.contains(name.strip_suffix(".diff").unwrap_or(&name))
        })
        .map(|e| e.path())
        .collect();
    // Counted before anything goes: a file shared with a kept snapshot frees nothing.
    report.bytes_freed += usage::freed_by(&doomed.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    for path in doomed {
        if store.discard(&path)? {
            report.snapshots_removed += 1;
        }
    }
    // Sessions of live processes (a pull, `kiln images`) keep their files; dead ones' go.
    report.bytes_freed += store.session.recover(&store.locks_dir().join("sessions.lock"))?.bytes;
    Ok(report)
}

fn walk(store: &Store, pending: &mut Vec<Digest>, reachable: &mut HashSet<String>) {
    while let Some(digest) = pending.pop() {
        if !reachable.insert(digest.digest().to_string()) || !store.has_blob(&digest) {
            continue;
        }
        pending.extend(children(store, &digest));
    }
}

/// The digests a manifest or index refers to (nothing for configs and layers, which do not parse as either).
fn children(store: &Store, digest: &Digest) -> Vec<Digest> {
    let Ok(bytes) = store.read_blob(digest) else { return Vec::new() };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return Vec::new() };
    let mut out = Vec::new();
    let mut take = |v: &serde_json::Value| {
        if let Some(d) = v.get("digest").and_then(|d| d.as_str()).and_then(|d| d.parse::<Digest>().ok()) {
            out.push(d);
        }
    };
    if let Some(manifests) = value.get("manifests").and_then(|m| m.as_array()) {
        manifests.iter().for_each(&mut take);
    }
    if let Some(config) = value.get("config") {
        take(config);
    }
    if let Some(layers) = value.get("layers").and_then(|l| l.as_array()) {
        layers.iter().for_each(&mut take);
    }
    out
}
