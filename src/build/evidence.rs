//! What a build records for its provenance as it runs — the base images it resolved (by digest) and what it
//! fetched for ADD — and the context digest computed when provenance is asked for. The builder only
//! records; `attest::provenance` turns it into a statement.

use std::path::Path;
use std::sync::Mutex;

use oci_spec::image::Digest;

use crate::attest::fetched::FetchRecord;
use crate::attest::provenance::BaseImage;
use crate::build::context::Context;
use crate::confine::{Kind, RootedPath};
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

/// A request of the proxy-only network as provenance and policy read it (the fields the fetch log's
/// JSON lines carry under the same names).
pub fn proxy_request(r: &crate::supply::egress::log::Record) -> FetchRecord {
    FetchRecord {
        step: Some(r.step.clone()),
        method: r.method.clone(),
        host: format!("{}:{}", r.host, r.port),
        path: r.path.clone(),
        url: Some(r.url.clone()),
        status: Some(r.status),
        bytes: Some(r.bytes),
        time: Some(r.time.clone()),
        sha256: None,
        via: crate::attest::fetched::Via::Proxy,
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
    let top = ctx.root().dir("")?;
    let found = ctx.walk(&top, "").map_err(std::io::Error::other)?;
    let entries: Vec<Entry> = found
        .into_iter()
        .map(|f| {
            let kind = match (f.meta.kind(), f.link) {
                (Kind::File, _) => {
                    EntryKind::File(FileSource::Rooted(RootedPath::listed(ctx.root().clone(), f.rel.clone(), f.meta)))
                }
                (Kind::Dir, _) => EntryKind::Dir,
                (Kind::Symlink, Some(target)) => EntryKind::Symlink(target.to_string_lossy().into_owned()),
                _ => EntryKind::Fifo,
            };
            Entry { path: f.rel, kind, mode: f.meta.permissions(), uid: 0, gid: 0, mtime: 0, xattrs: Vec::new() }
        })
        .collect();
    crate::cache::sources::digest(&entries, stats).map_err(std::io::Error::other)
}
