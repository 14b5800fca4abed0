//! Block-parallel gzip, as pigz does it: the input is cut into fixed-size blocks, each compressed on its own
//! core into a complete gzip member, and the members are written in order. A multi-member file is one valid
//! gzip stream (RFC 1952 §2.2) that every layer consumer reads. Block boundaries do not depend on the number
//! of threads, so the bytes — and the layer digest — are the same on every machine.
//!
//! Hand-written because no maintained crate gives deterministic, bounded-memory parallel gzip over a
//! `Write`; it is a thin loop over flate2.

use std::io::{self, Write};

use rayon::prelude::*;

/// Uncompressed bytes per gzip member.
const BLOCK: usize = 1 << 20;

/// A `Write` that gzips in parallel into `out`.
pub struct ParallelGzip<W: Write> {
    out: W,
    level: flate2::Compression,
    /// Blocks waiting to be compressed; the last one may be partial.
    pending: Vec<Vec<u8>>,
    /// How many full blocks are compressed at once (memory stays at about twice this many blocks).
    batch: usize,
}

impl<W: Write> ParallelGzip<W> {
    /// A compressor at `level` (0-9) writing into `out`.
    pub fn new(out: W, level: u32) -> Self {
        let threads = rayon::current_num_threads().max(1);
        ParallelGzip { out, level: flate2::Compression::new(level.min(9)), pending: Vec::new(), batch: threads * 2 }
    }

    fn compress_pending(&mut self) -> io::Result<()> {
        let level = self.level;
        let members: Vec<io::Result<Vec<u8>>> = self.pending.par_iter().map(|block| member(block, level)).collect();
        for m in members {
            self.out.write_all(&m?)?;
        }
        self.pending.clear();
        Ok(())
    }

    /// Compresses what is left and returns the output writer.
    pub fn finish(mut self) -> io::Result<W> {
        // An empty input still needs one (empty) member to be valid gzip.
        if self.pending.is_empty() {
            self.pending.push(Vec::new());
        }
        self.compress_pending()?;
        Ok(self.out)
    }
}

fn member(block: &[u8], level: flate2::Compression) -> io::Result<Vec<u8>> {
    let mut encoder = flate2::GzBuilder::new().write(Vec::with_capacity(block.len() / 2 + 64), level);
    encoder.write_all(block)?;
    encoder.finish()
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let written = buf.len();
        while !buf.is_empty() {
            match self.pending.last_mut() {
                Some(block) if block.len() < BLOCK => {
                    let n = (BLOCK - block.len()).min(buf.len());
                    block.extend_from_slice(&buf[..n]);
                    buf = &buf[n..];
                }
                _ => {
                    if self.pending.len() == self.batch {
                        self.compress_pending()?;
                    }
                    self.pending.push(Vec::with_capacity(BLOCK));
                }
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Members end only at block boundaries (for determinism); flushing the output is all that can be done.
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn roundtrip(data: &[u8]) -> Vec<u8> {
        let mut gz = ParallelGzip::new(Vec::new(), 6);
        for chunk in data.chunks(77_777) {
            gz.write_all(chunk).unwrap();
        }
        let compressed = gz.finish().unwrap();
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&compressed[..]).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn multi_member_output_decompresses_to_the_input() {
        let data: Vec<u8> = (0..(5 * BLOCK + 123)).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(roundtrip(&data), data);
        assert_eq!(roundtrip(&[]), Vec::<u8>::new());
    }

    #[test]
    fn output_does_not_depend_on_write_sizes() {
        let data: Vec<u8> = (0..(3 * BLOCK + 5)).map(|i| (i % 13) as u8).collect();
        let mut a = ParallelGzip::new(Vec::new(), 6);
        a.write_all(&data).unwrap();
        let mut b = ParallelGzip::new(Vec::new(), 6);
        for chunk in data.chunks(4096) {
            b.write_all(chunk).unwrap();
        }
        assert_eq!(a.finish().unwrap(), b.finish().unwrap());
    }
}
