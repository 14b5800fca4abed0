//! Chunk-parallel gzip, as pigz does it, with reuse: the input is cut into content-defined chunks
//! (`chunks.rs`), each compressed on its own core into a complete gzip member, and the members are written in
//! order. A multi-member file is one valid gzip stream (RFC 1952 §2.2) that every layer consumer reads.
//! Boundaries depend only on the bytes, never on thread counts or write sizes, so the output — and the layer
//! digest — is the same on every machine. A member whose chunk an earlier blob already holds is copied from
//! there ([`MemberSource`]): a COPY with one file changed compresses only the chunks around that file.
//!
//! Batches are compressed in the background while the next one fills, so reading the tar's sources and
//! compressing overlap. Memory stays at about three batches of chunks.
//!
//! Hand-written because no maintained crate gives deterministic, bounded-memory parallel gzip over a
//! `Write`, let alone member reuse; it is a thin loop over flate2.

use std::io::{self, Write};
use std::sync::Arc;
use std::thread::JoinHandle;

use rayon::prelude::*;

use super::chunks::{ChunkId, ChunkIndex, ChunkRecord, Chunker, MemberSource, chunk_id};

/// One compressed (or reused) chunk.
struct Member {
    id: ChunkId,
    len: u64,
    bytes: Vec<u8>,
}

/// A `Write` that gzips in parallel into `out`.
pub struct ParallelGzip<W: Write> {
    out: W,
    level: u32,
    reuse: Option<Arc<dyn MemberSource>>,
    chunker: Chunker,
    /// The chunk being filled.
    current: Vec<u8>,
    /// Complete chunks waiting to be compressed.
    pending: Vec<Vec<u8>>,
    /// How many chunks are compressed at once.
    batch: usize,
    /// The batch being compressed.
    in_flight: Option<JoinHandle<Vec<io::Result<Member>>>>,
    /// Bytes written to `out` so far.
    written: u64,
    /// Chunks cut so far.
    cut: usize,
    index: ChunkIndex,
}

/// What identifies the member encoding: members are reused only between blobs written the same way.
pub fn compressor_id(level: u32) -> String {
    format!("kiln {} gzip level {level} over zlib-rs", env!("CARGO_PKG_VERSION"))
}

impl<W: Write> ParallelGzip<W> {
    /// A compressor at `level` (0-9) writing into `out`.
    #[cfg(test)]
    pub fn new(out: W, level: u32) -> Self {
        ParallelGzip::with_reuse(out, level, None)
    }

    /// A compressor that takes the members of chunks `reuse` already has from there.
    pub fn with_reuse(out: W, level: u32, reuse: Option<Arc<dyn MemberSource>>) -> Self {
        let level = level.min(9);
        let threads = rayon::current_num_threads().max(1);
        ParallelGzip {
            out,
            level,
            reuse,
            chunker: Chunker::new(),
            current: Vec::new(),
            pending: Vec::new(),
            batch: threads * 2,
            in_flight: None,
            written: 0,
            cut: 0,
            index: ChunkIndex { compressor: compressor_id(level), records: Vec::new() },
        }
    }

    /// Writes out the batch being compressed, if any.
    fn collect(&mut self) -> io::Result<()> {
        let Some(handle) = self.in_flight.take() else { return Ok(()) };
        let members = handle.join().map_err(|_| io::Error::other("a compression thread panicked"))?;
        for m in members {
            let m = m?;
            self.out.write_all(&m.bytes)?;
            let record = ChunkRecord { id: m.id, len: m.len, offset: self.written, member_len: m.bytes.len() as u64 };
            self.index.records.push(record);
            self.written += m.bytes.len() as u64;
        }
        Ok(())
    }

    /// Starts compressing the pending chunks in the background (after writing out the previous batch).
    fn dispatch(&mut self) -> io::Result<()> {
        self.collect()?;
        let chunks = std::mem::take(&mut self.pending);
        let (level, reuse, compressor) = (self.level, self.reuse.clone(), self.index.compressor.clone());
        // A plain thread (not a rayon job) waits for the parallel work, so no pool thread ever blocks on it.
        let handle = std::thread::Builder::new()
            .name("kiln-gzip".into())
            .spawn(move || chunks.par_iter().map(|c| encode(c, level, reuse.as_deref(), &compressor)).collect())?;
        self.in_flight = Some(handle);
        Ok(())
    }

    /// Compresses what is left and returns the output writer and the index of the members written.
    pub fn finish(mut self) -> io::Result<(W, ChunkIndex)> {
        // An empty input still needs one (empty) member to be valid gzip.
        if !self.current.is_empty() || self.cut == 0 {
            let last = std::mem::take(&mut self.current);
            self.pending.push(last);
        }
        if !self.pending.is_empty() {
            self.dispatch()?;
        }
        self.collect()?;
        Ok((self.out, self.index))
    }
}

/// The member for one chunk: reused when the source has it, else compressed here.
fn encode(chunk: &[u8], level: u32, reuse: Option<&dyn MemberSource>, compressor: &str) -> io::Result<Member> {
    let id = chunk_id(chunk);
    let bytes = match reuse.and_then(|r| r.member(compressor, &id, chunk)) {
        Some(bytes) => bytes,
        None => member(chunk, flate2::Compression::new(level))?,
    };
    Ok(Member { id, len: chunk.len() as u64, bytes })
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
            match self.chunker.feed(buf) {
                Some(end) => {
                    self.current.extend_from_slice(&buf[..end]);
                    buf = &buf[end..];
                    let done = std::mem::take(&mut self.current);
                    self.pending.push(done);
                    self.cut += 1;
                    if self.pending.len() == self.batch {
                        self.dispatch()?;
                    }
                }
                None => {
                    self.current.extend_from_slice(buf);
                    buf = &[];
                }
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Members end only at chunk boundaries (for determinism); flushing the output is all that can be done.
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::layer::chunks::{BlobMembers, MAX_CHUNK};

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn compress(data: &[u8], reuse: Option<Arc<dyn MemberSource>>) -> (Vec<u8>, ChunkIndex) {
        let mut gz = ParallelGzip::with_reuse(Vec::new(), 6, reuse);
        for piece in data.chunks(77_777) {
            gz.write_all(piece).unwrap();
        }
        gz.finish().unwrap()
    }

    fn gunzip(compressed: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(compressed).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn multi_member_output_decompresses_to_the_input() {
        let data: Vec<u8> = noise(3 * MAX_CHUNK + 123, 3);
        assert_eq!(gunzip(&compress(&data, None).0), data);
        assert_eq!(gunzip(&compress(&[], None).0), Vec::<u8>::new());
    }

    #[test]
    fn output_does_not_depend_on_write_sizes() {
        let data: Vec<u8> = noise(9 << 20, 4);
        let mut a = ParallelGzip::new(Vec::new(), 6);
        a.write_all(&data).unwrap();
        let mut b = ParallelGzip::new(Vec::new(), 6);
        for chunk in data.chunks(4096) {
            b.write_all(chunk).unwrap();
        }
        assert_eq!(a.finish().unwrap(), b.finish().unwrap());
    }

    /// Members come from the earlier blob where the chunks are the same, and the result is byte for byte
    /// what compressing from scratch gives.
    #[test]
    fn reused_members_give_the_same_bytes_as_compressing_again() {
        let before = noise(16 << 20, 5);
        let (blob, index) = compress(&before, None);
        let mut after = before.clone();
        after.splice(8 << 20..8 << 20, b"a changed line\n".iter().copied());
        let file = tempfile::tempfile().unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &blob, 0).unwrap();
        let source = Arc::new(BlobMembers::new(file, index.clone()));
        let counting = Arc::new(Counting { inner: source, hits: Default::default() });
        let (reused, new_index) = compress(&after, Some(counting.clone()));
        let (fresh, fresh_index) = compress(&after, None);
        assert_eq!(reused, fresh);
        assert_eq!(new_index, fresh_index);
        assert_eq!(gunzip(&reused), after);
        let hits = counting.hits.load(std::sync::atomic::Ordering::Relaxed);
        assert!(hits + 3 >= new_index.records.len(), "{hits} of {} members reused", new_index.records.len());
    }

    #[test]
    fn a_member_whose_trailer_does_not_match_is_not_reused() {
        let data = noise(6 << 20, 6);
        let (blob, mut index) = compress(&data, None);
        // Point every record at the first member: only the first chunk's own member may be taken.
        let first = index.records[0];
        for r in &mut index.records {
            (r.offset, r.member_len) = (first.offset, first.member_len);
            r.len = first.len;
        }
        let file = tempfile::tempfile().unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &blob, 0).unwrap();
        let source: Arc<dyn MemberSource> = Arc::new(BlobMembers::new(file, index));
        let (reused, _) = compress(&data, Some(source));
        assert_eq!(gunzip(&reused), data);
        assert_eq!(reused, blob);
    }

    struct Counting {
        inner: Arc<BlobMembers>,
        hits: std::sync::atomic::AtomicUsize,
    }

    impl MemberSource for Counting {
        fn member(&self, compressor: &str, id: &ChunkId, chunk: &[u8]) -> Option<Vec<u8>> {
            let found = self.inner.member(compressor, id, chunk);
            if found.is_some() {
                self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            found
        }
    }
}
