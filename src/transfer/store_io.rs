//! The store seen through the registry client's blob traits, so `registry` never learns the store's layout.

use std::io::{self, Write};
use std::path::PathBuf;

use oci_spec::image::Digest;

use crate::registry::{BlobIngest, BlobSink, BlobSource};
use crate::store::{BlobWriter, Store};

/// Adapter: the store as a sink for pulled blobs and a source for pushed ones.
pub struct StoreBlobs<'a>(pub &'a Store);

impl BlobSink for StoreBlobs<'_> {
    fn contains(&self, digest: &Digest) -> bool {
        self.0.has_blob(digest)
    }

    fn begin(&self) -> io::Result<Box<dyn BlobIngest>> {
        let writer = self.0.ingest().map_err(io::Error::other)?;
        Ok(Box::new(Ingest(writer)))
    }
}

impl BlobSource for StoreBlobs<'_> {
    fn path(&self, digest: &Digest) -> Option<PathBuf> {
        self.0.has_blob(digest).then(|| self.0.blob_path(digest))
    }
}

struct Ingest(BlobWriter);

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl BlobIngest for Ingest {
    fn commit(self: Box<Self>, expected: &Digest) -> io::Result<()> {
        self.0.commit(Some(expected)).map(|_| ()).map_err(io::Error::other)
    }
}
