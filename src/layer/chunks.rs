//! Content-defined chunks of a layer's uncompressed tar stream, and the index that lets a later layer reuse
//! the gzip members of chunks an earlier layer already compressed.
//!
//! A chunk ends where a gear rolling hash of the last 64 bytes has its top bits clear (FastCDC's hash,
//! bounded between [`MIN_CHUNK`] and [`MAX_CHUNK`]), so a boundary depends only on the bytes just before it:
//! when one file of a COPY changes, the chunks before and after it are the same byte strings as in the
//! previous layer. Each chunk is one gzip member (see `pgzip.rs`); a member whose chunk is listed in the
//! previous blob's index is copied from that blob instead of being compressed again. Compression is a pure
//! function of (chunk, level, compressor), so reused and fresh members are the same bytes, and the layer
//! digest does not depend on what the store held.
//!
//! Chunks are named by BLAKE3 (collision-resistant, and about four times faster than SHA-256 here: the id of
//! every chunk of a 220 MB layer costs ~30 ms). The index also keeps the order of the earlier blob's chunks,
//! so after a chunk known to the index the writer can *guess* the next one and check the guess by its id
//! instead of running the rolling hash over it (`pgzip.rs`).
//!
//! Input: bytes (chunking); index bytes and a blob file (reuse). Output: boundaries, member bytes, index
//! bytes. Must not know: the store, snapshots, steps.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// No chunk ends before this many bytes (except the last).
pub const MIN_CHUNK: usize = 256 << 10;
/// A chunk ends here at the latest.
pub const MAX_CHUNK: usize = 4 << 20;
/// A boundary is where the hash's top `CUT_BITS` bits are zero: on average 1 MiB past the minimum.
const CUT_BITS: u32 = 20;
/// The gear hash forgets a byte after 64 shifts, so hashing may start this far before the minimum.
const WINDOW: usize = 64;

/// Bumped when chunking or member encoding changes: an index of another version is never used.
const INDEX_MAGIC: &[u8; 8] = b"KILNGZI2";

/// Bytes of one encoded [`ChunkRecord`].
const RECORD_LEN: usize = 32 + 8 * 3 + 4;

/// The gear table: 256 fixed pseudo-random words (splitmix64 from a fixed seed). Changing it changes every
/// layer digest kiln produces.
const GEAR: [u64; 256] = gear_table();

const fn gear_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut state: u64 = 0x6b69_6c6e_6364_6331; // "kilncdc1"
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
}

/// Finds chunk boundaries in a stream fed piece by piece (the hash carries over between pieces).
#[derive(Debug, Default, Clone)]
pub struct Chunker {
    hash: u64,
    len: usize,
}

impl Chunker {
    /// A chunker at the start of a chunk.
    pub fn new() -> Chunker {
        Chunker::default()
    }

    /// Feeds `data`, which continues the current chunk; when the chunk ends within it, returns how many of
    /// its bytes belong to the chunk, and the chunker starts the next one.
    pub fn feed(&mut self, data: &[u8]) -> Option<usize> {
        let mut at = 0;
        // Bytes more than a window before the minimum cannot influence a boundary: skip them unhashed.
        if self.len < MIN_CHUNK - WINDOW {
            at = (MIN_CHUNK - WINDOW - self.len).min(data.len());
            self.len += at;
        }
        // The window before the minimum is hashed without testing for a cut, so the loop that tests runs
        // with one condition per byte (the byte-by-byte loop was ~8% of a cold 220 MB COPY's CPU time).
        let warm = (MIN_CHUNK - 1).saturating_sub(self.len).min(data.len() - at);
        let mut hash = self.hash;
        for byte in &data[at..at + warm] {
            hash = (hash << 1).wrapping_add(GEAR[*byte as usize]);
        }
        at += warm;
        self.len += warm;
        let span = (MAX_CHUNK - self.len).min(data.len() - at);
        for (i, byte) in data[at..at + span].iter().enumerate() {
            hash = (hash << 1).wrapping_add(GEAR[*byte as usize]);
            if hash >> (64 - CUT_BITS) == 0 {
                *self = Chunker::default();
                return Some(at + i + 1);
            }
        }
        self.len += span;
        if self.len == MAX_CHUNK {
            *self = Chunker::default();
            return Some(at + span);
        }
        self.hash = hash;
        None
    }
}

/// The length of the chunk that starts at `data[0]`, if it ends within `data`.
#[cfg(test)]
fn chunk_end(data: &[u8]) -> Option<usize> {
    Chunker::new().feed(data)
}

/// A chunk's identity: the BLAKE3 hash of its uncompressed bytes.
pub type ChunkId = [u8; 32];

/// The identity of `chunk`.
pub fn chunk_id(chunk: &[u8]) -> ChunkId {
    blake3::hash(chunk).into()
}

/// One gzip member of a written blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRecord {
    /// The chunk it holds.
    pub id: ChunkId,
    /// Uncompressed length.
    pub len: u64,
    /// Offset of the member in the blob.
    pub offset: u64,
    /// Length of the member.
    pub member_len: u64,
    /// The CRC-32 in the member's trailer (a reused member must still carry it: the index points right).
    pub crc: u32,
}

/// The members of one gzip blob, in order: what a later layer needs to reuse them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkIndex {
    /// Identifies the compressor and level; members of another one are never reused.
    pub compressor: String,
    /// The members.
    pub records: Vec<ChunkRecord>,
}

impl ChunkIndex {
    /// The index as bytes (for a file beside the blob).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.compressor.len() + self.records.len() * RECORD_LEN);
        out.extend_from_slice(INDEX_MAGIC);
        out.extend_from_slice(&(self.compressor.len() as u32).to_le_bytes());
        out.extend_from_slice(self.compressor.as_bytes());
        for r in &self.records {
            out.extend_from_slice(&r.id);
            for n in [r.len, r.offset, r.member_len] {
                out.extend_from_slice(&n.to_le_bytes());
            }
            out.extend_from_slice(&r.crc.to_le_bytes());
        }
        out
    }

    /// Reads an index written by [`ChunkIndex::encode`]; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<ChunkIndex> {
        let rest = bytes.strip_prefix(INDEX_MAGIC)?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let compressor = std::str::from_utf8(rest.get(..len)?).ok()?.to_string();
        let body = &rest[len..];
        if body.len() % RECORD_LEN != 0 {
            return None;
        }
        let records = body
            .chunks_exact(RECORD_LEN)
            .map(|r| {
                let word = |at: usize| u64::from_le_bytes(r[at..at + 8].try_into().unwrap_or_default());
                ChunkRecord {
                    id: r[..32].try_into().unwrap_or_default(),
                    len: word(32),
                    offset: word(40),
                    member_len: word(48),
                    crc: u32::from_le_bytes(r[56..60].try_into().unwrap_or_default()),
                }
            })
            .collect();
        Some(ChunkIndex { compressor, records })
    }
}

/// Where already-compressed members can come from.
pub trait MemberSource: Send + Sync {
    /// The gzip member holding exactly the chunk `id` (of `len` bytes), compressed by `compressor`, if known.
    fn member(&self, compressor: &str, id: &ChunkId, len: u64) -> Option<Vec<u8>>;

    /// The chunk that came next (its id and length) after chunk `after` — or first, for `None` — in the
    /// earlier stream, when it ended at a content-defined cut (never the stream's last chunk): a guess of
    /// where the new stream's next chunk ends, to be checked by its id.
    fn next_chunk(&self, after: Option<&ChunkId>) -> Option<(ChunkId, u64)>;
}

/// Where one member sits in a blob.
#[derive(Debug, Clone, Copy)]
struct Place {
    len: u64,
    offset: u64,
    member_len: u64,
    crc: u32,
}

/// The members of an earlier blob, read from its file through its index.
pub struct BlobMembers {
    file: File,
    compressor: String,
    by_id: HashMap<ChunkId, Place>,
    first: Option<(ChunkId, u64)>,
    next: HashMap<ChunkId, (ChunkId, u64)>,
}

impl BlobMembers {
    /// `file` is the blob `index` describes.
    pub fn new(file: File, index: ChunkIndex) -> BlobMembers {
        let records = &index.records;
        let place = |r: &ChunkRecord| Place { len: r.len, offset: r.offset, member_len: r.member_len, crc: r.crc };
        let by_id = records.iter().map(|r| (r.id, place(r))).collect();
        // The last record ended with the stream, not at a cut: it is never a guess.
        let cut = records.len().saturating_sub(1);
        let first = records[..cut].first().map(|r| (r.id, r.len));
        let mut next = HashMap::new();
        for pair in records[..cut].windows(2) {
            next.entry(pair[0].id).or_insert((pair[1].id, pair[1].len));
        }
        BlobMembers { file, compressor: index.compressor, by_id, first, next }
    }
}

impl MemberSource for BlobMembers {
    fn member(&self, compressor: &str, id: &ChunkId, len: u64) -> Option<Vec<u8>> {
        if compressor != self.compressor {
            return None;
        }
        let place = *self.by_id.get(id)?;
        if place.len != len || place.member_len < 18 {
            return None;
        }
        let mut member = vec![0u8; usize::try_from(place.member_len).ok()?];
        self.file.read_exact_at(&mut member, place.offset).ok()?;
        // The last member's trailer (CRC-32 and length of what it decompresses to) must be the one recorded
        // for this chunk: a damaged or stale index never puts foreign bytes into a layer. (A chunk is
        // several members where it holds compressed data; the last holds the end of the chunk.)
        let trailer = &member[member.len() - 8..];
        let crc = u32::from_le_bytes(trailer[..4].try_into().ok()?);
        let isize = u32::from_le_bytes(trailer[4..].try_into().ok()?);
        (member[..2] == [0x1f, 0x8b] && crc == place.crc && u64::from(isize) <= len).then_some(member)
    }

    fn next_chunk(&self, after: Option<&ChunkId>) -> Option<(ChunkId, u64)> {
        match after {
            None => self.first,
            Some(id) => self.next.get(id).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn boundaries(data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let len = chunk_end(&data[at..]).unwrap_or(data.len() - at);
            at += len;
            out.push(at);
        }
        out
    }

    #[test]
    fn chunks_stay_within_their_bounds() {
        let data = noise(20 << 20, 1);
        let ends = boundaries(&data);
        let mut start = 0;
        for (i, end) in ends.iter().enumerate() {
            let len = end - start;
            assert!(len <= MAX_CHUNK);
            assert!(len >= MIN_CHUNK || i + 1 == ends.len(), "chunk {i} is {len} bytes");
            start = *end;
        }
        assert!(ends.len() > 5, "20 MiB of noise should give several chunks, got {}", ends.len());
        // Zeros never match the cut condition: they are cut at the maximum.
        assert_eq!(chunk_end(&vec![0u8; MAX_CHUNK + 10]), Some(MAX_CHUNK));
    }

    #[test]
    fn an_insertion_moves_only_the_boundaries_near_it() {
        let data = noise(24 << 20, 2);
        let mut changed = data.clone();
        changed.splice(5 << 20..5 << 20, b"one more line\n".iter().copied());
        let before: std::collections::HashSet<usize> = boundaries(&data).into_iter().filter(|b| *b > 8 << 20).collect();
        let after: std::collections::HashSet<usize> =
            boundaries(&changed).into_iter().filter(|b| *b > 8 << 20).map(|b| b - 14).collect();
        assert!(!before.is_empty());
        assert_eq!(before, after, "boundaries well after the insertion shift with it");
    }

    /// The chunking rule written the slow, obvious way: one byte at a time, every condition on every byte.
    fn reference_feed(state: &mut (u64, usize), data: &[u8]) -> Option<usize> {
        for (i, byte) in data.iter().enumerate() {
            state.0 = (state.0 << 1).wrapping_add(GEAR[*byte as usize]);
            state.1 += 1;
            if (state.1 >= MIN_CHUNK && state.0 >> (64 - CUT_BITS) == 0) || state.1 == MAX_CHUNK {
                *state = (0, 0);
                return Some(i + 1);
            }
        }
        None
    }

    /// 64 bytes after which the gear hash has its cut bits clear, wherever they stand in a stream.
    fn cutting_window() -> Vec<u8> {
        let prefix = noise(56, 5);
        let start = prefix.iter().fold(0u64, |h, b| (h << 1).wrapping_add(GEAR[*b as usize]));
        let tail = (0u64..)
            .find(|n| {
                n.to_le_bytes().iter().fold(start, |h, b| (h << 1).wrapping_add(GEAR[*b as usize])) >> (64 - CUT_BITS)
                    == 0
            })
            .unwrap();
        [prefix, tail.to_le_bytes().to_vec()].concat()
    }

    #[test]
    fn a_cut_is_taken_at_the_minimum_but_not_a_byte_before() {
        let window = cutting_window();
        let at_minimum = [vec![1u8; MIN_CHUNK - 64], window.clone(), noise(1 << 20, 6)].concat();
        assert_eq!(chunk_end(&at_minimum), Some(MIN_CHUNK));
        let before = [vec![1u8; MIN_CHUNK - 65], window, noise(1 << 20, 6)].concat();
        assert_ne!(chunk_end(&before), Some(MIN_CHUNK - 1));
        assert!(chunk_end(&before).unwrap() > MIN_CHUNK);
    }

    #[test]
    fn feeding_in_pieces_cuts_where_the_byte_by_byte_rule_does() {
        // Noise cuts by hash, zeros only at the maximum; pieces of odd sizes cross every phase of `feed`.
        let mut data = noise(12 << 20, 3);
        data.extend(std::iter::repeat_n(0u8, 9 << 20));
        data.extend(noise(3 << 20, 4));
        let (mut fast, mut slow) = (Chunker::new(), (0u64, 0usize));
        let (mut fast_cuts, mut slow_cuts) = (Vec::new(), Vec::new());
        let mut piece = 1usize;
        let mut at = 0;
        while at < data.len() {
            let end = (at + piece).min(data.len());
            let mut from = at;
            while let Some(n) = fast.feed(&data[from..end]) {
                from += n;
                fast_cuts.push(from);
            }
            let mut from = at;
            while let Some(n) = reference_feed(&mut slow, &data[from..end]) {
                from += n;
                slow_cuts.push(from);
            }
            at = end;
            piece = piece * 7 % 1_000_003 + 61;
        }
        assert!(fast_cuts.len() > 8, "{fast_cuts:?}");
        assert_eq!(fast_cuts, slow_cuts);
    }

    #[test]
    fn the_index_round_trips_and_rejects_other_bytes() {
        let index = ChunkIndex {
            compressor: "gzip-6".into(),
            records: vec![ChunkRecord { id: [7; 32], len: 5, offset: 0, member_len: 30, crc: 9 }],
        };
        assert_eq!(ChunkIndex::decode(&index.encode()), Some(index.clone()));
        assert_eq!(ChunkIndex::decode(b"not an index"), None);
        let mut cut = index.encode();
        cut.pop();
        assert_eq!(ChunkIndex::decode(&cut), None);
    }
}
