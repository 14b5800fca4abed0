//! Compression on the way out (gzip, zstd, none) and detection on the way in (gzip, zstd, bzip2, xz, none),
//! plus the hashing writer that yields both layer digests in the same pass.

use std::io::{self, BufRead, BufReader, Read, Write};

use oci_spec::image::Digest;
use sha2::{Digest as _, Sha256};

use super::hashpipe::TakeBlock;

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (the default; every runtime reads it).
    #[default]
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// The layer media type: OCI's when `oci`, else Docker's (which has no zstd type; OCI's is used then).
    pub fn media_type(&self, oci: bool) -> &'static str {
        match (self, oci) {
            (Compression::None, true) => "application/vnd.oci.image.layer.v1.tar",
            (Compression::Gzip, true) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (Compression::Zstd, _) => "application/vnd.oci.image.layer.v1.tar+zstd",
            (Compression::None, false) => "application/vnd.docker.image.rootfs.diff.tar",
            (Compression::Gzip, false) => "application/vnd.docker.image.rootfs.diff.tar.gzip",
        }
    }
}

/// A writer that hashes and counts what passes through.
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Hashing<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Hashing { inner, hasher: Sha256::new(), count: 0 }
    }

    /// The digest and byte count so far, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        let hex = hex::encode(self.hasher.finalize());
        let digest = format!("sha256:{hex}").parse().unwrap_or_else(|_| unreachable!("sha256 hex is a valid digest"));
        (digest, self.count, self.inner)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A compressing writer for one of the layer compressions.
pub enum Encoder<W: TakeBlock> {
    /// No compression.
    Plain(W),
    /// gzip, block-parallel.
    Gzip(super::pgzip::ParallelGzip<W>),
    /// zstd.
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: TakeBlock> Encoder<W> {
    /// Starts compressing into `out`; `level` overrides the default level; gzip takes the members of chunks
    /// `reuse` holds from there.
    pub fn new(
        out: W,
        compression: Compression,
        level: Option<u32>,
        reuse: Option<std::sync::Arc<dyn super::chunks::MemberSource>>,
    ) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Encoder::Plain(out),
            // Members carry mtime 0 and no file name: the same bytes on every run.
            Compression::Gzip => Encoder::Gzip(super::pgzip::ParallelGzip::with_reuse(out, level.unwrap_or(6), reuse)),
            Compression::Zstd => {
                let mut e = zstd::Encoder::new(out, level.map_or(3, |l| l as i32))?;
                // Several threads when the machine has them; the output does not depend on the count.
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
                if threads > 1 {
                    let _ = e.multithread(threads);
                }
                Encoder::Zstd(e)
            }
        })
    }

    /// Hands the uncompressed input to `input` as it goes, when this compressor cuts it into pieces it
    /// owns anyway (gzip's chunks); false when the caller must copy it there itself.
    pub fn hand_input_to(&mut self, input: &std::sync::mpsc::SyncSender<Vec<u8>>) -> bool {
        match self {
            Encoder::Gzip(e) => {
                e.hand_input_to(input.clone());
                true
            }
            Encoder::Plain(_) | Encoder::Zstd(_) => false,
        }
    }

    /// Flushes the compressor's trailer and returns the output writer, with the index of the gzip members.
    pub fn finish(self) -> io::Result<(W, Option<super::chunks::ChunkIndex>)> {
        match self {
            Encoder::Plain(w) => Ok((w, None)),
            Encoder::Gzip(e) => e.finish().map(|(w, index)| (w, Some(index))),
            Encoder::Zstd(e) => e.finish().map(|w| (w, None)),
        }
    }
}

impl<W: TakeBlock> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// Wraps `reader` in the decompressor its magic bytes call for (gzip, zstd, bzip2, xz), or passes it through.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(1 << 16, reader);
    let magic = buffered.fill_buf()?.to_vec();
    let starts = |m: &[u8]| magic.len() >= m.len() && &magic[..m.len()] == m;
    Ok(if starts(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::Decoder::with_buffer(buffered)?)
    } else if starts(b"BZh") {
        Box::new(bzip2::read::MultiBzDecoder::new(buffered))
    } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Box::new(xz2::read::XzDecoder::new_multi_decoder(buffered))
    } else {
        Box::new(buffered)
    })
}
