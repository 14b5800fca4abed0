//! Blob ingest: the one way into the store. Temp file in the store, sha256 while writing, fsync, digest
//! check, rename into `blobs/sha256/`, fsync of the directory. Readers never see a partial blob, and a
//! crash at any moment leaves at worst a temp file for `prune`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use oci_spec::image::Digest;
use sha2::{Digest as _, Sha256};

use super::error::{StoreError, io};

/// Bytes written between two hints to the kernel to start writing a blob back (see [`BlobWriter::write`]).
const WRITEBACK_STEP: u64 = 8 << 20;

/// A blob being written; commit it to make it visible, drop it to throw it away.
pub struct BlobWriter {
    file: Option<BufWriter<File>>,
    temp: tempfile::TempPath,
    hasher: Sha256,
    size: u64,
    /// Bytes the kernel was asked to start writing back so far.
    written_back: u64,
    blob_dir: PathBuf,
}

impl BlobWriter {
    pub(crate) fn new(tmp_dir: &Path, blob_dir: &Path) -> Result<BlobWriter, StoreError> {
        let named = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(tmp_dir)
            .map_err(io("create a temp file in", tmp_dir))?;
        let (file, temp) = named.into_parts();
        Ok(BlobWriter {
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            temp,
            hasher: Sha256::new(),
            size: 0,
            written_back: 0,
            blob_dir: blob_dir.to_path_buf(),
        })
    }

    /// The sha256 and size of what was written so far.
    pub fn written(&self) -> (Digest, u64) {
        (sha256_digest(&hex::encode(self.hasher.clone().finalize())), self.size)
    }

    /// Makes the blob visible under its digest; fails (and leaves nothing) when `expected` differs.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<(Digest, u64), StoreError> {
        let mut file = self.file.take().ok_or_else(|| StoreError::MissingBlob("writer already used".into()))?;
        file.flush().map_err(io("write", &*self.temp))?;
        let file = file.into_inner().map_err(|e| StoreError::Io {
            op: "write",
            path: self.temp.to_path_buf(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io("fsync", &*self.temp))?;
        drop(file);
        let hex = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let actual = sha256_digest(&hex);
        if let Some(expected) = expected
            && expected.to_string() != actual.to_string()
        {
            return Err(StoreError::DigestMismatch { expected: expected.to_string(), actual: actual.to_string() });
        }
        let target = self.blob_dir.join(&hex);
        if !target.exists() {
            // Same content under the same name: whoever renames last wins, and both wrote the same bytes.
            self.temp.persist(&target).map_err(|e| StoreError::Io {
                op: "rename into",
                path: target.clone(),
                source: e.error,
            })?;
            sync_dir(&self.blob_dir)?;
        }
        Ok((actual, self.size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self.file.as_mut().ok_or_else(|| io::Error::other("blob writer already committed"))?;
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        // A layer of a hundred megabytes left for the commit's fsync to write out took ~50 ms there, with
        // nothing else to do; started as it is written, it goes out while the rest of the layer is made.
        let in_file = self.size - file.buffer().len() as u64;
        if in_file - self.written_back >= WRITEBACK_STEP {
            crate::sys::start_writeback(file.get_ref().as_fd(), self.written_back, in_file - self.written_back);
            self.written_back = in_file;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// `sha256:<hex>` as a Digest (the hex comes from our own hasher, so it is always well-formed).
pub(crate) fn sha256_digest(hex: &str) -> Digest {
    let text = format!("sha256:{hex}");
    text.parse().unwrap_or_else(|_| unreachable!("a sha256 hex string always forms a valid digest"))
}

/// The sha256 digest of some bytes.
pub fn digest_of(bytes: &[u8]) -> Digest {
    sha256_digest(&hex::encode(Sha256::digest(bytes)))
}

/// fsyncs a directory so a rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("fsync", dir))
}
