//! `kiln fsck`: checks that the store is whole, and with `repair` fixes what can be fixed.
//!
//! | check | problem | repair |
//! | --- | --- | --- |
//! | every file in `blobs/sha256` | name is not a sha256 hex, or content does not hash to its name | moved out (trash) |
//! | every image in `index.json` | a manifest, config or layer it needs is missing or corrupt | none: pull or rebuild it, or `kiln rmi` it |
//! | every snapshot | no completion marker, marker names another chain, or a stray name | removed (trash) |
//! | `kiln/tmp`, `kiln/trash`, root | files of killed kiln processes, stray temp files | removed |
//!
//! Blobs nothing refers to are not problems (`kiln prune` frees them). The step cache's records are
//! checked by the cache module, which knows their format.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::Digest;
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use super::error::{StoreError, io};
use super::snapshots::{MARKER, complete_tree};
use super::{Store, index, session};

/// What `fsck` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Blob files checked.
    pub blobs: usize,
    /// Named images checked.
    pub images: usize,
    /// Snapshot directories checked.
    pub snapshots: usize,
    /// Each problem, and whether it was repaired.
    pub findings: Vec<Finding>,
}

impl FsckReport {
    /// Problems still there.
    pub fn remaining(&self) -> usize {
        self.findings.iter().filter(|f| !f.repaired).count()
    }
}

/// One problem and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The problem.
    pub problem: Problem,
    /// True when `--repair` fixed it.
    pub repaired: bool,
}

/// A problem in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A blob whose content does not hash to its name.
    CorruptBlob {
        /// Its name.
        digest: String,
        /// What its content hashes to.
        actual: String,
    },
    /// A file that does not belong where it is (not a blob name, a stray temp file).
    StrayFile {
        /// The file.
        path: PathBuf,
    },
    /// `index.json` cannot be read.
    BadIndex {
        /// What the decoder said.
        message: String,
    },
    /// An image needs a blob that is missing or corrupt.
    MissingBlob {
        /// The image's name.
        image: String,
        /// The blob.
        digest: String,
    },
    /// A manifest or index of an image does not parse.
    BadManifest {
        /// The image's name.
        image: String,
        /// The manifest's digest.
        digest: String,
        /// What the decoder said.
        message: String,
    },
    /// A snapshot directory that must not be used.
    IncompleteSnapshot {
        /// Its directory.
        path: PathBuf,
        /// Why.
        why: &'static str,
    },
    /// Files a killed kiln process left.
    Leftover {
        /// The entry in `kiln/tmp` or `kiln/trash`.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
}

impl Problem {
    /// Whether `--repair` can fix it.
    pub fn repairable(&self) -> bool {
        !matches!(self, Problem::BadIndex { .. } | Problem::MissingBlob { .. } | Problem::BadManifest { .. })
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::CorruptBlob { digest, actual } => {
                write!(f, "blob {digest} is corrupt: its content hashes to {actual}")
            }
            Problem::StrayFile { path } => write!(f, "{} does not belong in the store", path.display()),
            Problem::BadIndex { message } => write!(f, "index.json cannot be read: {message}"),
            Problem::MissingBlob { image, digest } => write!(
                f,
                "image {image} needs blob {digest}, which is missing or corrupt (pull or rebuild it, or `kiln rmi` it)"
            ),
            Problem::BadManifest { image, digest, message } => {
                write!(f, "image {image}: manifest {digest} is not valid: {message}")
            }
            Problem::IncompleteSnapshot { path, why } => write!(f, "snapshot {} {why}", path.display()),
            Problem::Leftover { path, bytes } => {
                write!(f, "{} was left by a killed kiln process ({bytes} bytes)", path.display())
            }
        }
    }
}

/// Runs the checks; the caller holds the store lock (exclusive when repairing).
pub(super) fn run(store: &Store, repair: bool) -> Result<FsckReport, StoreError> {
    let mut report = FsckReport::default();
    let bad = check_blobs(store, repair, &mut report)?;
    check_images(store, &bad, &mut report);
    check_snapshots(store, repair, &mut report)?;
    check_leftovers(store, repair, &mut report)?;
    Ok(report)
}

fn note(report: &mut FsckReport, problem: Problem, repaired: bool) {
    report.findings.push(Finding { problem, repaired });
}

/// Hashes every blob (on all cores); returns the names of those that are not good.
fn check_blobs(store: &Store, repair: bool, report: &mut FsckReport) -> Result<HashSet<String>, StoreError> {
    let dir = store.blob_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(io("list", &dir))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    report.blobs = names.len();
    let verdicts: Vec<(String, Option<Problem>)> = names
        .into_par_iter()
        .map(|name| {
            let path = dir.join(&name);
            if !is_hex64(&name) || !path.is_file() {
                return (name, Some(Problem::StrayFile { path }));
            }
            let problem = match hash_file(&path) {
                Ok(actual) if actual == name => None,
                Ok(actual) => {
                    Some(Problem::CorruptBlob { digest: format!("sha256:{name}"), actual: format!("sha256:{actual}") })
                }
                Err(e) => {
                    Some(Problem::CorruptBlob { digest: format!("sha256:{name}"), actual: format!("unreadable: {e}") })
                }
            };
            (name, problem)
        })
        .collect();
    let mut bad = HashSet::new();
    for (name, problem) in verdicts {
        if let Some(problem) = problem {
            let repaired = repair && store.discard(&dir.join(&name))?;
            note(report, problem, repaired);
            bad.insert(name);
        }
    }
    Ok(bad)
}

fn is_hex64(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// Walks every named image down to its config and layers.
fn check_images(store: &Store, bad: &HashSet<String>, report: &mut FsckReport) {
    let index = match index::read(&store.index_path()) {
        Ok(index) => index,
        Err(e) => return note(report, Problem::BadIndex { message: e.to_string() }, false),
    };
    for desc in index.manifests() {
        report.images += 1;
        let image = index::name_of(desc).map_or_else(|| desc.digest().to_string(), str::to_string);
        // (blob, whether it is a manifest or index whose children must be walked too)
        let mut pending = vec![(desc.digest().clone(), true)];
        let mut seen = HashSet::new();
        while let Some((digest, walk)) = pending.pop() {
            if !seen.insert(digest.to_string()) {
                continue;
            }
            if bad.contains(digest.digest()) || !store.has_blob(&digest) {
                note(report, Problem::MissingBlob { image: image.clone(), digest: digest.to_string() }, false);
                continue;
            }
            if !walk {
                continue;
            }
            match children(store, &digest) {
                Ok(found) => pending.extend(found),
                Err(message) => {
                    let problem = Problem::BadManifest { image: image.clone(), digest: digest.to_string(), message };
                    note(report, problem, false);
                }
            }
        }
    }
}

/// The blobs a manifest (config and layers, not walked further) or an index (manifests, walked) names.
fn children(store: &Store, digest: &Digest) -> Result<Vec<(Digest, bool)>, String> {
    let bytes = store.read_blob(digest).map_err(|e| e.to_string())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut take = |v: &serde_json::Value, walk: bool| -> Result<(), String> {
        let text = v.get("digest").and_then(|d| d.as_str()).ok_or("a descriptor has no digest")?;
        out.push((text.parse::<Digest>().map_err(|e| format!("bad digest {text:?}: {e}"))?, walk));
        Ok(())
    };
    let manifests = value.get("manifests").and_then(|m| m.as_array());
    let layers = value.get("layers").and_then(|l| l.as_array());
    match (manifests, value.get("config"), layers) {
        (Some(manifests), _, _) => manifests.iter().try_for_each(|m| take(m, true))?,
        (None, Some(config), Some(layers)) => {
            take(config, false)?;
            layers.iter().try_for_each(|l| take(l, false))?;
        }
        _ => return Err("neither an image manifest nor an index".to_string()),
    }
    Ok(out)
}

/// Every snapshot directory must be complete and named for the chain its marker names.
fn check_snapshots(store: &Store, repair: bool, report: &mut FsckReport) -> Result<(), StoreError> {
    let dir = store.snapshot_dir();
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(&dir).map_err(io("list", &dir))?.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    report.snapshots = entries.len();
    for path in entries {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let hex = name.strip_suffix(".diff").unwrap_or(&name);
        let why = if !is_hex64(hex) {
            Some("has a name that is not a chain id")
        } else if complete_tree(&path).is_none() {
            Some("is incomplete (no completion marker): it is never used")
        } else if std::fs::read_to_string(path.join(MARKER))
            .map(|m| m.trim() != format!("sha256:{hex}"))
            .unwrap_or(true)
        {
            Some("has a completion marker for another chain")
        } else {
            None
        };
        if let Some(why) = why {
            let repaired = repair && store.discard(&path)?;
            note(report, Problem::IncompleteSnapshot { path, why }, repaired);
        }
    }
    Ok(())
}

/// Killed processes' temp files and trash, and stray temp files at the root (an older kiln wrote
/// `index.json` through a temp file beside it).
fn check_leftovers(store: &Store, repair: bool, report: &mut FsckReport) -> Result<(), StoreError> {
    let sessions_lock = store.locks_dir().join("sessions.lock");
    let leftovers = session::leftovers(&store.kiln_dir(), &sessions_lock, store.session.id())?;
    let strays: Vec<PathBuf> = std::fs::read_dir(store.root())
        .map_err(io("list", store.root()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .map(|e| e.path())
        .collect();
    if repair {
        store.session.recover(&sessions_lock)?;
    }
    for left in leftovers {
        let repaired = repair && !left.path.exists();
        note(report, Problem::Leftover { path: left.path, bytes: left.bytes }, repaired);
    }
    for path in strays {
        let repaired = repair && store.discard(&path)?;
        note(report, Problem::StrayFile { path }, repaired);
    }
    Ok(())
}
