//! Writing a layer: entries → a deterministic tar → compression → the output, with the uncompressed
//! digest (diff id) and the compressed digest and size computed in the same streaming pass.
//!
//! Determinism: entries sorted by path, numeric ids only (no user or group names), PAX records for long
//! names and xattrs, mtimes clamped to SOURCE_DATE_EPOCH when set, gzip without a timestamp. File
//! contents are streamed from disk, so memory stays flat whatever the layer's size.

use std::io::{self, Write};

use oci_spec::image::Digest;

use super::compress::{Compression, Encoder, Hashing};
use super::entry::{Entry, EntryKind, FileSource};
use super::error::{LayerError, io};

/// How to write a layer.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Compression of the blob.
    pub compression: Compression,
    /// Clamp every mtime to this (seconds), for reproducible layers.
    pub source_date_epoch: Option<i64>,
    /// Compression level override.
    pub level: Option<u32>,
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
}

/// Writes `entries` as a layer into `out`.
pub fn write_layer<W: Write>(mut entries: Vec<Entry>, out: W, opts: &WriteOptions) -> Result<LayerDigests, LayerError> {
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries.dedup_by(|later, earlier| later.path == earlier.path && later.kind == earlier.kind);
    let out_err = |e: io::Error| LayerError::Io { op: "write", path: "layer output".into(), source: e };
    let compressed = Hashing::new(out);
    let encoder = Encoder::new(compressed, opts.compression, opts.level).map_err(out_err)?;
    let mut tar = tar::Builder::new(Hashing::new(encoder));
    tar.mode(tar::HeaderMode::Deterministic);
    for entry in &entries {
        append(&mut tar, entry, opts.source_date_epoch)?;
    }
    let uncompressed = tar.into_inner().map_err(out_err)?;
    let (diff_id, _, encoder) = uncompressed.finish();
    let compressed = encoder.finish().map_err(out_err)?;
    let (digest, size, mut out) = compressed.finish();
    out.flush().map_err(out_err)?;
    Ok(LayerDigests { diff_id, digest, size })
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

fn append<W: Write>(tar: &mut tar::Builder<W>, entry: &Entry, clamp: Option<i64>) -> Result<(), LayerError> {
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
            tar.append(&header, bytes.as_slice()).map_err(tar_err)
        }
        Some(source @ (FileSource::Path(_) | FileSource::Rooted(_))) => {
            let file = source.open().map_err(io("open", source.display()))?;
            let len = file.metadata().map_err(io("stat", source.display()))?.len();
            header.set_size(len);
            header.set_cksum();
            // A file that changes size while being read would corrupt the stream: take exactly `len` bytes.
            let mut limited = io::Read::take(io::BufReader::with_capacity(1 << 20, file), len);
            tar.append(&header, &mut limited).map_err(tar_err)
        }
    }
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
