//! What a build records for its provenance as it runs — the base images it resolved (by digest) and what it
//! fetched for ADD — and the context digest computed when provenance is asked for. The builder only
//! records; `attest::provenance` turns it into a statement.

use std::path::Path;
use std::sync::Mutex;

use oci_spec::image::Digest;

use crate::attest::fetched::FetchRecord;
use crate::attest::provenance::BaseImage;
use crate::build::context::Context;
use crate::image::Reference;
use crate::layer::{Entry, EntryKind, FileSource};

/// What one build recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Base images (FROM, `COPY --from=<image>`, `RUN --mount=from=<image>`), each once, in order.
    pub bases: Vec<BaseImage>,
    /// ADD downloads.
    pub fetched: Vec<FetchRecord>,
}

/// Collects [`Recorded`] from the steps of a build (which run concurrently).
#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<Recorded>,
}

impl Recorder {
    /// Records a base image.
    pub fn base(&self, name: &str, reference: &Reference, digest: &Digest) {
        let mut r = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let base = BaseImage { name: name.to_string(), reference: reference.to_string(), digest: digest.to_string() };
        if !r.bases.contains(&base) {
            r.bases.push(base);
        }
    }

    /// Records a download.
    pub fn fetched(&self, record: FetchRecord) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).fetched.push(record);
    }

    /// Everything recorded so far.
    pub fn take(&self) -> Recorded {
        std::mem::take(&mut *self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The sha256 (hex) of the build context as the build sees it: every entry `.dockerignore` leaves in, by
/// path, type, permission bits and content (owners and times left out, so every checkout agrees).
pub fn context_digest(
    context: &Path,
    dockerfile: &Path,
    stats: &crate::cache::sources::StatCache,
) -> std::io::Result<String> {
    let ctx = Context::open(context, dockerfile).map_err(std::io::Error::other)?;
    let entries: Vec<Entry> = ctx
        .walk("")
        .map_err(std::io::Error::other)?
        .into_iter()
        .map(|e| {
            use crate::build::context::EntryKind as K;
            let kind = match &e.kind {
                K::File => EntryKind::File(FileSource::Path(ctx.root().join(&e.rel_path))),
                K::Dir => EntryKind::Dir,
                K::Symlink(t) => EntryKind::Symlink(t.to_string_lossy().into_owned()),
                K::Other => EntryKind::Fifo,
            };
            let mode = std::os::unix::fs::PermissionsExt::mode(&e.metadata.permissions()) & 0o7777;
            Entry { path: e.rel_path.clone(), kind, mode, uid: 0, gid: 0, mtime: 0, xattrs: Vec::new() }
        })
        .collect();
    crate::cache::sources::digest(&entries, stats)
}
