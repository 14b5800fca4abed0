//! Image names: entries of the layout's `index.json`, each with the annotation
//! `org.opencontainers.image.ref.name` = the full reference (skopeo and umoci find `oci:STORE:name` by it).
//! Updates are read-modify-write under an exclusive lock and land by rename; readers never lock.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::image::{Descriptor, ImageIndex};

use super::error::{StoreError, io};

/// The annotation naming an image in an OCI layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Reads `index.json` (a missing file is an empty index).
pub fn read(path: &Path) -> Result<ImageIndex, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(empty()),
        Err(e) => return Err(io("read", path)(e)),
    };
    ImageIndex::from_reader(bytes.as_slice())
        .map_err(|e| StoreError::Corrupt { path: path.to_path_buf(), message: e.to_string() })
}

/// An index with no manifests.
pub fn empty() -> ImageIndex {
    let mut index = ImageIndex::default();
    index.set_schema_version(2);
    index.set_manifests(Vec::new());
    index
}

/// Writes `index` to `path` atomically (temp file in `tmp_dir` on the same filesystem, fsync, rename), so
/// a crash leaves no stray file beside it.
pub fn write(path: &Path, index: &ImageIndex, tmp_dir: &Path) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let bytes = serde_json::to_vec(index)
        .map_err(|e| StoreError::Corrupt { path: path.to_path_buf(), message: e.to_string() })?;
    let mut tmp = tempfile::NamedTempFile::new_in(tmp_dir).map_err(io("create a temp file in", tmp_dir))?;
    std::io::Write::write_all(&mut tmp, &bytes).map_err(io("write", path))?;
    tmp.as_file().sync_all().map_err(io("fsync", path))?;
    tmp.persist(path).map_err(|e| StoreError::Io { op: "rename into", path: path.to_path_buf(), source: e.error })?;
    super::blobs::sync_dir(dir)
}

/// The name recorded on an index entry.
pub fn name_of(desc: &Descriptor) -> Option<&str> {
    desc.annotations().as_ref()?.get(REF_NAME).map(String::as_str)
}

/// `desc` with its name annotation set to `name`.
pub fn named(desc: &Descriptor, name: &str) -> Descriptor {
    let mut d = desc.clone();
    let mut annotations: HashMap<String, String> = d.annotations().clone().unwrap_or_default();
    annotations.insert(REF_NAME.to_string(), name.to_string());
    d.set_annotations(Some(annotations));
    d
}
