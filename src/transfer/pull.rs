//! Pulling an image from a registry into the store, and naming it there by its reference.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::image::{Descriptor, Digest, MediaType};

use crate::image::{Platform, Reference};
use crate::registry::{self, BlobIngest, BlobSink, Client, RegistryError};
use crate::store::{Store, StoreError};
use crate::transfer::store_io::StoreBlobs;

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The store refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Pulls `reference` for `platform` into the store, tags it with its full name, and returns its manifest.
pub async fn pull(
    store: &Store,
    client: &Client,
    reference: &Reference,
    platform: &Platform,
) -> Result<Descriptor, PullError> {
    Ok(pull_counting(store, client, reference, platform).await?.0)
}

/// [`pull`], also returning the bytes received: the manifest and the blobs the store lacked (for the
/// proxy-only network's fetch log).
pub async fn pull_counting(
    store: &Store,
    client: &Client,
    reference: &Reference,
    platform: &Platform,
) -> Result<(Descriptor, u64), PullError> {
    let sink = Counting { inner: StoreBlobs(store), bytes: Arc::default() };
    let pulled = registry::pull_image(client, reference, platform, &sink).await?;
    let (digest, size) = store.put_bytes(&pulled.manifest)?;
    let descriptor = Descriptor::new(MediaType::from(pulled.manifest_media_type.as_str()), size, digest);
    store.set_tag(&reference.to_string(), &descriptor)?;
    Ok((descriptor, sink.bytes.load(Ordering::Relaxed) + pulled.manifest.len() as u64))
}

/// A blob sink that counts what is written through it.
struct Counting<'a> {
    inner: StoreBlobs<'a>,
    bytes: Arc<AtomicU64>,
}

impl BlobSink for Counting<'_> {
    fn contains(&self, digest: &Digest) -> bool {
        self.inner.contains(digest)
    }

    fn begin(&self) -> std::io::Result<Box<dyn BlobIngest>> {
        Ok(Box::new(CountingIngest { inner: self.inner.begin()?, bytes: self.bytes.clone() }))
    }
}

struct CountingIngest {
    inner: Box<dyn BlobIngest>,
    bytes: Arc<AtomicU64>,
}

impl std::io::Write for CountingIngest {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl BlobIngest for CountingIngest {
    fn commit(self: Box<Self>, expected: &Digest) -> std::io::Result<()> {
        self.inner.commit(expected)
    }
}
