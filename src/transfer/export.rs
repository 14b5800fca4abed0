//! Exporting an image from the store: an OCI layout directory (`oci:`), a tar of one (`oci-archive:`), or
//! `docker save` format (`docker-archive:`), which `podman load` and `docker load` read.
//!
//! Every output is written beside its final name and renamed into place, so an interrupted export never
//! leaves a half-written archive under the name asked for.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest};

use crate::layer;
use crate::store::{Store, StoreError};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading from the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the destination failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory being written.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A manifest or index in the store could not be decoded.
    #[error("image manifest {digest} is not valid: {message}")]
    BadManifest {
        /// The manifest's digest.
        digest: Digest,
        /// What the decoder said.
        message: String,
    },
    /// A layer could not be decompressed for a docker-archive.
    #[error("layer {digest} cannot be decompressed: {message}")]
    Layer {
        /// The layer's digest.
        digest: Digest,
        /// What the decompressor said.
        message: String,
    },
}

/// The blobs an image is made of, read once from its manifest.
struct ImageBlobs {
    manifest: ImageManifest,
}

impl ImageBlobs {
    fn load(store: &Store, desc: &Descriptor) -> Result<Self, ExportError> {
        let bytes = store.read_blob(desc.digest())?;
        let manifest = ImageManifest::from_reader(bytes.as_slice())
            .map_err(|e| ExportError::BadManifest { digest: desc.digest().clone(), message: e.to_string() })?;
        Ok(ImageBlobs { manifest })
    }

    /// Every blob digest, manifest first then config then layers.
    fn all(&self, manifest: &Descriptor) -> Vec<Digest> {
        let mut out = vec![manifest.digest().clone(), self.manifest.config().digest().clone()];
        out.extend(self.manifest.layers().iter().map(|l| l.digest().clone()));
        out
    }
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError + '_ {
    move |source| ExportError::Write { path: path.to_path_buf(), source }
}

/// Writes the image into an OCI layout directory, merging with an existing layout there.
pub fn to_oci_dir(store: &Store, manifest: &Descriptor, dir: &Path, tag: Option<&str>) -> Result<(), ExportError> {
    let blobs = ImageBlobs::load(store, manifest)?;
    let blob_dir = dir.join("blobs").join("sha256");
    fs_err::create_dir_all(&blob_dir).map_err(write_err(&blob_dir))?;
    for digest in blobs.all(manifest) {
        let target = blob_dir.join(digest.digest());
        if target.exists() {
            continue;
        }
        copy_atomically(&store.blob_path(&digest), &target)?;
    }
    write_atomically(&dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index_path = dir.join("index.json");
    let mut index = match fs_err::read(&index_path) {
        Ok(bytes) => ImageIndex::from_reader(bytes.as_slice()).map_err(|e| ExportError::Write {
            path: index_path.clone(),
            source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        })?,
        Err(_) => empty_index(),
    };
    let entry = with_ref_name(manifest, tag);
    let mut manifests: Vec<Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| tag.is_none() || ref_name(d) != tag)
        .filter(|d| d.digest() != manifest.digest() || ref_name(d) != tag)
        .cloned()
        .collect();
    manifests.push(entry);
    index.set_manifests(manifests);
    let text = serde_json::to_vec(&index)
        .map_err(|e| ExportError::Write { path: index_path.clone(), source: io::Error::other(e) })?;
    write_atomically(&index_path, &text)
}

/// Writes the image as a tar of an OCI layout.
pub fn to_oci_archive(store: &Store, manifest: &Descriptor, file: &Path, tag: Option<&str>) -> Result<(), ExportError> {
    let blobs = ImageBlobs::load(store, manifest)?;
    let mut index = empty_index();
    index.set_manifests(vec![with_ref_name(manifest, tag)]);
    let index_json = serde_json::to_vec(&index)
        .map_err(|e| ExportError::Write { path: file.to_path_buf(), source: io::Error::other(e) })?;
    atomic_tar(file, |tar| {
        append_bytes(tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        append_bytes(tar, "index.json", &index_json)?;
        append_dir(tar, "blobs/")?;
        append_dir(tar, "blobs/sha256/")?;
        for digest in blobs.all(manifest) {
            let mut blob = store.open_blob(&digest).map_err(io::Error::other)?;
            let size = blob.metadata()?.len();
            append_reader(tar, &format!("blobs/sha256/{}", digest.digest()), size, &mut blob)?;
        }
        Ok(())
    })
}

/// Writes the image in `docker save` format (uncompressed layers named by diff id).
pub fn to_docker_archive(
    store: &Store,
    manifest: &Descriptor,
    file: &Path,
    repo_tags: &[String],
) -> Result<(), ExportError> {
    let blobs = ImageBlobs::load(store, manifest)?;
    let config_digest = blobs.manifest.config().digest().clone();
    let config_name = format!("{}.json", config_digest.digest());
    let scratch =
        tempfile::Builder::new().prefix(".kiln-export-").tempdir_in(parent_of(file)).map_err(write_err(file))?;
    let mut layer_names = Vec::new();
    let mut layer_files = Vec::new();
    for (i, layer) in blobs.manifest.layers().iter().enumerate() {
        let path = scratch.path().join(format!("layer{i}.tar"));
        let (name, size) = decompress_to(store, layer.digest(), &path)?;
        layer_names.push(name);
        layer_files.push((path, size));
    }
    let manifest_json = serde_json::json!([{
        "Config": config_name,
        "RepoTags": repo_tags,
        "Layers": layer_names,
    }]);
    let manifest_bytes = serde_json::to_vec(&manifest_json)
        .map_err(|e| ExportError::Write { path: file.to_path_buf(), source: io::Error::other(e) })?;
    atomic_tar(file, |tar| {
        let mut config = store.open_blob(&config_digest).map_err(io::Error::other)?;
        let size = config.metadata()?.len();
        append_reader(tar, &config_name, size, &mut config)?;
        for (name, (path, size)) in layer_names.iter().zip(&layer_files) {
            let mut f = File::open(path)?;
            append_reader(tar, name, *size, &mut f)?;
        }
        append_bytes(tar, "manifest.json", &manifest_bytes)
    })
}

/// Decompresses one layer blob into `path`; returns its archive name (`<diff id hex>.tar`) and size.
fn decompress_to(store: &Store, digest: &Digest, path: &Path) -> Result<(String, u64), ExportError> {
    use sha2::Digest as _;
    let bad = |message: String| ExportError::Layer { digest: digest.clone(), message };
    let blob = store.open_blob(digest)?;
    let mut reader = layer::decompress(io::BufReader::new(blob)).map_err(|e| bad(e.to_string()))?;
    let out = File::create(path).map_err(write_err(path))?;
    let mut hashing = HashingWriter { inner: io::BufWriter::new(out), hasher: sha2::Sha256::new(), len: 0 };
    io::copy(&mut reader, &mut hashing).map_err(|e| bad(e.to_string()))?;
    hashing.inner.flush().map_err(write_err(path))?;
    let hex = hex::encode(hashing.hasher.finalize());
    Ok((format!("{hex}.tar"), hashing.len))
}

struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn empty_index() -> ImageIndex {
    let mut index = ImageIndex::default();
    index.set_schema_version(2);
    index.set_manifests(Vec::new());
    index
}

fn ref_name(desc: &Descriptor) -> Option<&str> {
    desc.annotations().as_ref()?.get("org.opencontainers.image.ref.name").map(String::as_str)
}

fn with_ref_name(desc: &Descriptor, tag: Option<&str>) -> Descriptor {
    let mut entry = desc.clone();
    let mut annotations = HashMap::new();
    if let Some(tag) = tag {
        annotations.insert("org.opencontainers.image.ref.name".to_string(), tag.to_string());
    }
    entry.set_annotations((!annotations.is_empty()).then_some(annotations));
    entry
}

fn parent_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Builds a tar beside `file` and renames it into place only when complete.
fn atomic_tar(
    file: &Path,
    fill: impl FnOnce(&mut tar::Builder<io::BufWriter<File>>) -> io::Result<()>,
) -> Result<(), ExportError> {
    let tmp = tempfile::Builder::new().prefix(".kiln-export-").tempfile_in(parent_of(file)).map_err(write_err(file))?;
    let handle = tmp.as_file().try_clone().map_err(write_err(file))?;
    let mut tar = tar::Builder::new(io::BufWriter::new(handle));
    fill(&mut tar).map_err(write_err(file))?;
    let mut out = tar.into_inner().map_err(write_err(file))?;
    out.flush().map_err(write_err(file))?;
    out.get_ref().sync_all().map_err(write_err(file))?;
    tmp.persist(file).map_err(|e| ExportError::Write { path: file.to_path_buf(), source: e.error })?;
    Ok(())
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_entry_type(kind);
    h.set_mtime(0);
    h
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut h = header(bytes.len() as u64, 0o644, tar::EntryType::Regular);
    tar.append_data(&mut h, name, bytes)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut h = header(0, 0o755, tar::EntryType::Directory);
    tar.append_data(&mut h, name, io::empty())
}

fn append_reader<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    reader: &mut dyn io::Read,
) -> io::Result<()> {
    let mut h = header(size, 0o644, tar::EntryType::Regular);
    tar.append_data(&mut h, name, reader)
}

/// Copies a file to `target` through a temp file in the same directory, so readers never see it half-done.
fn copy_atomically(source: &Path, target: &Path) -> Result<(), ExportError> {
    let dir = parent_of(target);
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(write_err(&dir))?;
    let mut input = File::open(source).map_err(write_err(source))?;
    io::copy(&mut input, tmp.as_file_mut()).map_err(write_err(target))?;
    tmp.as_file().sync_all().map_err(write_err(target))?;
    tmp.persist(target).map_err(|e| ExportError::Write { path: target.to_path_buf(), source: e.error })?;
    Ok(())
}

fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let dir = parent_of(target);
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(write_err(&dir))?;
    tmp.write_all(bytes).map_err(write_err(target))?;
    tmp.as_file().sync_all().map_err(write_err(target))?;
    tmp.persist(target).map_err(|e| ExportError::Write { path: target.to_path_buf(), source: e.error })?;
    Ok(())
}
