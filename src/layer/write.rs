//! Writing a layer: entries → a deterministic tar → compression → the output, with the uncompressed
//! digest (diff id) and the compressed digest and size computed in the same streaming pass, each on a
//! thread of its own (`hashpipe.rs`).
//!
//! Determinism: entries sorted by path, numeric ids only (no user or group names), PAX records for long
//! names and xattrs, mtimes clamped to SOURCE_DATE_EPOCH when set, gzip without a timestamp. File
//! contents are streamed from disk, so memory stays flat whatever the layer's size.

use std::io::{self, Write};
use std::sync::Arc;

use oci_spec::image::Digest;

use super::chunks::{ChunkIndex, MemberSource};
use super::compress::{Compression, Encoder};
use super::entry::{Entry, EntryKind, FileSource};
use super::error::{LayerError, io};
use super::hashpipe::{DiffId, HashBeside, TakeBlock, WriteBeside};
use super::prefetch::{self, Probe};
use super::tee::TeeWriter;
use crate::confine::Opener;

/// How to write a layer.
#[derive(Clone, Default)]
pub struct WriteOptions {
    /// Compression of the blob.
    pub compression: Compression,
    /// Clamp every mtime to this (seconds), for reproducible layers.
    pub source_date_epoch: Option<i64>,
    /// Compression level override.
    pub level: Option<u32>,
    /// Where gzip members of chunks an earlier layer holds can be copied from (the result is the same bytes).
    pub reuse: Option<Arc<dyn MemberSource>>,
}

impl std::fmt::Debug for WriteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteOptions")
            .field("compression", &self.compression)
            .field("source_date_epoch", &self.source_date_epoch)
            .field("level", &self.level)
            .field("reuse", &self.reuse.is_some())
            .finish()
    }
}

/// Where a layer's compressed bytes go.
pub trait LayerSink: Write + Send {
    /// The sha256 and length of everything written so far, when the sink keeps them itself (the store's
    /// blob writer does): the layer writer then takes them instead of hashing the same bytes a second time.
    fn own_digest(&self) -> Option<(Digest, u64)> {
        None
    }
}

impl LayerSink for Vec<u8> {}
impl LayerSink for io::Sink {}
impl<T: LayerSink> LayerSink for &mut T {
    fn own_digest(&self) -> Option<(Digest, u64)> {
        (**self).own_digest()
    }
}

/// The digests of a written layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// sha256 of the blob as written.
    pub digest: Digest,
    /// Size of the blob as written.
    pub size: u64,
    /// The gzip members of the blob, for a later layer to reuse (gzip only).
    pub chunks: Option<ChunkIndex>,
}

/// Writes `entries` as a layer into `out`.
pub fn write_layer<W: LayerSink>(entries: Vec<Entry>, out: W, opts: &WriteOptions) -> Result<LayerDigests, LayerError> {
    write_normalized(&normalize(entries), out, opts, None)
}

/// The entries in the order and number a layer holds them: sorted by path, repeats dropped.
pub fn normalize(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries.dedup_by(|later, earlier| later.path == earlier.path && later.kind == earlier.kind);
    entries
}

/// Writes entries already [`normalize`]d as a layer into `out`, handing each regular file's bytes to `tee`
/// as they are read (a snapshot filled at the same time gets exactly the layer's bytes).
pub fn write_normalized<W: LayerSink>(
    entries: &[Entry],
    out: W,
    opts: &WriteOptions,
    tee: Option<&TeeWriter>,
) -> Result<LayerDigests, LayerError> {
    let out_err = |e: io::Error| LayerError::Io { op: "write", path: "layer output".into(), source: e };
    // On an early return the writers are dropped first, so the hashing threads see their input end and the
    // scope's join returns.
    std::thread::scope(|s| {
        let diff_id = DiffId::start(s).map_err(out_err)?;
        let compressed = WriteBeside::new(s, out).map_err(out_err)?;
        let mut encoder =
            Encoder::new(compressed, opts.compression, opts.level, opts.reuse.clone()).map_err(out_err)?;
        let front = if encoder.hand_input_to(&diff_id.sender()) {
            Front::Direct(encoder)
        } else {
            Front::Copied(HashBeside::new(encoder, diff_id.sender()))
        };
        let mut tar = tar::Builder::new(front);
        tar.mode(tar::HeaderMode::Deterministic);
        let mut sources = Sources::default();
        let stop = prefetch::StopOnDrop(sources.progress.clone());
        for (i, entry) in entries.iter().enumerate() {
            append(&mut tar, entry, opts.source_date_epoch, tee, &mut sources)?;
            if sources.probe == Probe::Cold {
                sources.probe = Probe::Off;
                let progress = sources.progress.clone();
                s.spawn(move || prefetch::run(&entries[i + 1..], &progress));
            }
        }
        drop(stop);
        let encoder = tar.into_inner().and_then(Front::finish).map_err(out_err)?;
        let (compressed, chunks) = encoder.finish().map_err(out_err)?;
        // Every sender is gone now (the compressor's with it), so the hashing thread ends.
        let (diff_id, _) = diff_id.finish().map_err(out_err)?;
        let (digest, size, mut out) = compressed.finish().map_err(out_err)?;
        out.flush().map_err(out_err)?;
        Ok(LayerDigests { diff_id, digest, size, chunks })
    })
}

/// What the tar is written into: the compressor, which hands the diff id thread its input itself (gzip's
/// chunks) or through a writer that copies it there.
enum Front<W: TakeBlock> {
    Direct(Encoder<W>),
    Copied(HashBeside<Encoder<W>>),
}

impl<W: TakeBlock> Front<W> {
    /// The compressor, with everything written handed over.
    fn finish(self) -> io::Result<Encoder<W>> {
        match self {
            Front::Direct(encoder) => Ok(encoder),
            Front::Copied(hashing) => hashing.finish(),
        }
    }
}

impl<W: TakeBlock> Write for Front<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Front::Direct(encoder) => encoder.write(buf),
            Front::Copied(hashing) => hashing.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The name an entry has in the tar (whiteouts and opaque markers get their special names).
fn tar_name(entry: &Entry) -> String {
    match &entry.kind {
        EntryKind::Whiteout => match entry.path.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/.wh.{name}"),
            None => format!(".wh.{}", entry.path),
        },
        EntryKind::OpaqueDir => format!("{}/.wh..wh..opq", entry.path),
        EntryKind::Dir => format!("{}/", entry.path),
        _ => entry.path.clone(),
    }
}

/// What reading the sources keeps from one file to the next.
#[derive(Default)]
struct Sources {
    /// The read buffer.
    buf: Vec<u8>,
    /// The last parent directory opened.
    opener: Opener,
    /// Whether the files come from the page cache (see `prefetch`).
    probe: Probe,
    /// How far the reader is, for the prefetcher.
    progress: Arc<prefetch::Progress>,
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    entry: &Entry,
    clamp: Option<i64>,
    tee: Option<&TeeWriter>,
    sources: &mut Sources,
) -> Result<(), LayerError> {
    let name = tar_name(entry);
    let tar_err =
        |e: io::Error| LayerError::Io { op: "write tar entry for", path: entry.path.clone().into(), source: e };
    let mut header = tar::Header::new_ustar();
    let mtime = match clamp {
        Some(limit) => entry.mtime.min(limit),
        None => entry.mtime,
    };
    header.set_mtime(mtime.max(0) as u64);
    header.set_uid(u64::from(entry.uid));
    header.set_gid(u64::from(entry.gid));
    header.set_mode(entry.mode);
    header.set_size(0);
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    let mut link: Option<&str> = None;
    let (kind, data): (tar::EntryType, Option<&FileSource>) = match &entry.kind {
        EntryKind::File(src) => (tar::EntryType::Regular, Some(src)),
        EntryKind::Dir => (tar::EntryType::Directory, None),
        EntryKind::Symlink(target) => {
            link = Some(target);
            (tar::EntryType::Symlink, None)
        }
        EntryKind::Hardlink(target) => {
            link = Some(target);
            (tar::EntryType::Link, None)
        }
        EntryKind::CharDevice(..) => (tar::EntryType::Char, None),
        EntryKind::BlockDevice(..) => (tar::EntryType::Block, None),
        EntryKind::Fifo => (tar::EntryType::Fifo, None),
        EntryKind::Whiteout | EntryKind::OpaqueDir => {
            header.set_mode(0o644);
            (tar::EntryType::Regular, None)
        }
    };
    header.set_entry_type(kind);
    if let EntryKind::CharDevice(major, minor) | EntryKind::BlockDevice(major, minor) = entry.kind {
        header.set_device_major(major).map_err(tar_err)?;
        header.set_device_minor(minor).map_err(tar_err)?;
    }
    if name.len() > 100 {
        pax.push(("path".to_string(), name.clone().into_bytes()));
    }
    if let Some(target) = link {
        if target.len() > 100 {
            pax.push(("linkpath".to_string(), target.as_bytes().to_vec()));
        } else {
            header.set_link_name(target).map_err(tar_err)?;
        }
    }
    for (key, value) in &entry.xattrs {
        pax.push((format!("SCHILY.xattr.{key}"), value.clone()));
    }
    if !pax.is_empty() {
        tar.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).map_err(tar_err)?;
    }
    set_short_name(&mut header, &name).map_err(tar_err)?;
    match data {
        None => {
            header.set_cksum();
            tar.append(&header, io::empty()).map_err(tar_err)
        }
        Some(FileSource::Bytes(bytes)) => {
            header.set_size(bytes.len() as u64);
            header.set_cksum();
            if let Some(tee) = tee {
                tee.start(bytes.len() as u64);
                tee.data(bytes);
            }
            tar.append(&header, bytes.as_slice()).map_err(tar_err)
        }
        Some(source @ (FileSource::Path(_) | FileSource::Rooted(_))) => {
            let file = match source {
                FileSource::Rooted(rooted) => sources.opener.open(rooted),
                _ => source.open(),
            };
            let file = file.map_err(io("open", source.display()))?;
            // The size it was listed with, when it was (a walk's stat: one system call less per file); a
            // file that changed since is cut there or refused, as one that changes while being read.
            let listed = match source {
                FileSource::Rooted(rooted) => rooted.listed_meta().map(|m| m.size()),
                _ => None,
            };
            let len = match listed {
                Some(len) => len,
                None => file.metadata().map_err(io("stat", source.display()))?.len(),
            };
            header.set_size(len);
            header.set_cksum();
            let out = tar.get_mut();
            out.write_all(header.as_bytes()).map_err(tar_err)?;
            copy_exactly(file, len, out, tee, sources).map_err(|e| match e {
                Copied::Read(e) => io("read", source.display())(e),
                Copied::Write(e) => tar_err(e),
            })
        }
    }
}

/// Bytes a file is read in at most (a small file is read with one call).
const READ_AT_ONCE: usize = 1 << 20;

/// Which side of a copy failed.
enum Copied {
    Read(io::Error),
    Write(io::Error),
}

/// Copies exactly `len` bytes of `file` into `out` (and `tee`), then pads to the next 512-byte block, as a
/// tar entry's data. A file that grew is cut at `len`; one that shrank is an error, never a shorter entry
/// that would shift every later header. One reused buffer, one `read` for a small file.
fn copy_exactly(
    file: std::fs::File,
    len: u64,
    out: &mut impl Write,
    tee: Option<&TeeWriter>,
    sources: &mut Sources,
) -> Result<(), Copied> {
    if let Some(tee) = tee {
        tee.start(len);
    }
    let buf = &mut sources.buf;
    // Sized once per layer: resizing per file would zero the grown part again whenever sizes alternate.
    if buf.len() < READ_AT_ONCE {
        buf.resize(READ_AT_ONCE, 0);
    }
    sources.progress.read(len);
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match sources.probe.read_at(&file, &mut buf[..want], len - left) {
            Ok(0) => {
                return Err(Copied::Read(io::Error::new(io::ErrorKind::UnexpectedEof, "it shrank while being read")));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Copied::Read(e)),
        };
        if let Some(tee) = tee {
            tee.data(&buf[..n]);
        }
        out.write_all(&buf[..n]).map_err(Copied::Write)?;
        left -= n as u64;
    }
    let pad = (512 - len % 512) % 512;
    out.write_all(&[0; 512][..pad as usize]).map_err(Copied::Write)
}

/// Puts the name in the ustar header, truncated when a PAX `path` record carries the full name.
fn set_short_name(header: &mut tar::Header, name: &str) -> io::Result<()> {
    let bytes = name.as_bytes();
    let short = if bytes.len() > 100 { &bytes[..100] } else { bytes };
    let field = &mut header.as_old_mut().name;
    field.fill(0);
    field[..short.len()].copy_from_slice(short);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn file_of(bytes: &[u8]) -> std::fs::File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        std::io::Seek::rewind(&mut f).unwrap();
        f
    }

    #[test]
    fn a_file_is_copied_exactly_and_padded() {
        let (mut out, mut sources) = (Vec::new(), Sources::default());
        assert!(copy_exactly(file_of(b"hello world"), 5, &mut out, None, &mut sources).is_ok());
        assert_eq!(out.len(), 512);
        assert_eq!(&out[..6], b"hello\0");
        let big = vec![7u8; READ_AT_ONCE * 2 + 3];
        out.clear();
        assert!(copy_exactly(file_of(&big), big.len() as u64, &mut out, None, &mut sources).is_ok());
        assert_eq!(out.len(), big.len().div_ceil(512) * 512);
        assert_eq!(&out[..big.len()], &big[..]);
    }

    #[test]
    fn a_file_that_shrank_is_an_error_not_a_short_entry() {
        let (mut out, mut sources) = (Vec::new(), Sources::default());
        match copy_exactly(file_of(b"short"), 600, &mut out, None, &mut sources) {
            Err(Copied::Read(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            _ => panic!("a shrunk file must fail the read side"),
        }
    }
}
