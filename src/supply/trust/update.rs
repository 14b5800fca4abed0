//! `kiln ca-update`: replaces the CA layer of an image — in the store or straight in a registry — with
//! one for new CAs, and writes the new config and manifest. Only the manifest, the config and the CA
//! layer itself are read; every other layer keeps its digest and is neither downloaded nor uploaded.
//!
//! [`rewrite`] is the whole decision, on bytes in memory (the CA layer is a few hundred KiB); the
//! callers move those bytes between the store or the registry and it.

use std::io::Read;

use oci_spec::image::Digest;
use serde_json::Value;

use super::persist::{self, LABEL_CERTS, LABEL_LAYER};
use crate::image::media;
use crate::layer::{self, Compression};

/// Why a CA layer could not be replaced.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The image was not built with `--ca-persist`.
    #[error("{image} has no CA layer (label {LABEL_LAYER}); build it with --ca-persist first")]
    NoCaLayer {
        /// The image.
        image: String,
    },
    /// The manifest or config is not one kiln can edit.
    #[error("{image}: {message}")]
    BadImage {
        /// The image.
        image: String,
        /// What is wrong.
        message: String,
    },
    /// The old CA layer could not be read or the new one written.
    #[error("{image}: cannot rewrite the CA layer: {source}")]
    Layer {
        /// The image.
        image: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// The new image: what to store or upload, and what was replaced.
#[derive(Debug)]
pub struct Rewritten {
    /// The new CA layer blob.
    pub layer: Vec<u8>,
    /// Its digest.
    pub layer_digest: Digest,
    /// The digest of the layer it replaces.
    pub old_layer_digest: Digest,
    /// The new config JSON.
    pub config: Vec<u8>,
    /// The new manifest JSON.
    pub manifest: Vec<u8>,
    /// The manifest's media type (unchanged).
    pub manifest_media_type: String,
}

/// Where the CA layer sits in an image: its index in the manifest's layers and its digest.
pub fn locate(image: &str, manifest: &[u8], config: &[u8]) -> Result<(usize, Digest), UpdateError> {
    let bad = |message: &str| UpdateError::BadImage { image: image.to_string(), message: message.to_string() };
    let manifest: Value = serde_json::from_slice(manifest).map_err(|_| bad("the manifest is not JSON"))?;
    if manifest.get("manifests").is_some() {
        return Err(bad("is an image index; give the platform image's digest"));
    }
    let config: Value = serde_json::from_slice(config).map_err(|_| bad("the config is not JSON"))?;
    let diff_id = config["config"]["Labels"][LABEL_LAYER]
        .as_str()
        .ok_or_else(|| UpdateError::NoCaLayer { image: image.to_string() })?;
    let index = config["rootfs"]["diff_ids"]
        .as_array()
        .and_then(|ids| ids.iter().position(|d| d.as_str() == Some(diff_id)))
        .ok_or_else(|| bad(&format!("label {LABEL_LAYER}={diff_id} names no layer of the image")))?;
    let digest = manifest["layers"][index]["digest"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| bad("the manifest lists fewer layers than the config"))?;
    Ok((index, digest))
}

/// The image with its CA layer (at `index`, blob `old_layer`) replaced by one for `cas`.
pub fn rewrite(
    image: &str,
    manifest: &[u8],
    config: &[u8],
    index: usize,
    old_layer: &[u8],
    cas: &[Vec<u8>],
) -> Result<Rewritten, UpdateError> {
    let bad = |message: &str| UpdateError::BadImage { image: image.to_string(), message: message.to_string() };
    let layer_err = |source| UpdateError::Layer { image: image.to_string(), source };
    let mut manifest: Value = serde_json::from_slice(manifest).map_err(|_| bad("the manifest is not JSON"))?;
    let mut config: Value = serde_json::from_slice(config).map_err(|_| bad("the config is not JSON"))?;
    let old_digest: Digest = manifest["layers"][index]["digest"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| bad("no such layer"))?;
    let media_type = manifest["layers"][index]["mediaType"].as_str().unwrap_or(media::OCI_LAYER_GZIP).to_string();
    let files = read_files(old_layer).map_err(layer_err)?;
    let entries = persist::updated_entries(&files, cas, persist::MTIME);
    let compression = if media_type.ends_with("zstd") {
        Compression::Zstd
    } else if media_type.ends_with("gzip") {
        Compression::Gzip
    } else {
        Compression::None
    };
    let mut blob = Vec::new();
    let opts = layer::WriteOptions { compression, source_date_epoch: None, level: None, reuse: None };
    let digests = layer::write_layer(entries, &mut blob, &opts).map_err(|e| layer_err(std::io::Error::other(e)))?;
    let diff_id = digests.diff_id.to_string();
    config["rootfs"]["diff_ids"][index] = Value::String(diff_id.clone());
    config["config"]["Labels"][LABEL_LAYER] = Value::String(diff_id);
    config["config"]["Labels"][LABEL_CERTS] = Value::String(persist::certs_label(cas));
    if let Some(entry) = layer_history(&mut config, index) {
        entry["created_by"] = Value::String(history_text(cas));
    }
    let config_bytes = serde_json::to_vec(&config).map_err(|_| bad("cannot encode the config"))?;
    manifest["layers"][index]["digest"] = Value::String(digests.digest.to_string());
    manifest["layers"][index]["size"] = Value::from(digests.size);
    manifest["config"]["digest"] = Value::String(crate::store::digest_of(&config_bytes).to_string());
    manifest["config"]["size"] = Value::from(config_bytes.len());
    let manifest_media_type = manifest["mediaType"].as_str().unwrap_or(media::OCI_MANIFEST).to_string();
    Ok(Rewritten {
        layer: blob,
        layer_digest: digests.digest,
        old_layer_digest: old_digest,
        config: config_bytes,
        manifest: serde_json::to_vec(&manifest).map_err(|_| bad("cannot encode the manifest"))?,
        manifest_media_type,
    })
}

/// The history `created_by` of a CA layer.
pub fn history_text(cas: &[Vec<u8>]) -> String {
    format!("kiln --ca-persist: {} company CA certificate(s) {}", cas.len(), persist::certs_label(cas))
}

/// The history entry of the layer at `index` (the index-th entry that is not `empty_layer`).
fn layer_history(config: &mut Value, index: usize) -> Option<&mut Value> {
    config["history"].as_array_mut()?.iter_mut().filter(|h| !h["empty_layer"].as_bool().unwrap_or(false)).nth(index)
}

/// The regular files and directories of a CA layer blob: (`/path` — directories end in `/`, content, mode).
fn read_files(blob: &[u8]) -> std::io::Result<Vec<(String, Vec<u8>, u32)>> {
    let mut archive = tar::Archive::new(layer::decompress(blob)?);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = format!("/{}", entry.path()?.to_string_lossy().trim_start_matches("./").trim_end_matches('/'));
        let mode = entry.header().mode()? & 0o7777;
        match entry.header().entry_type() {
            tar::EntryType::Directory => out.push((format!("{path}/"), Vec::new(), mode)),
            tar::EntryType::Regular => {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes)?;
                out.push((path, bytes, mode));
            }
            _ => {}
        }
    }
    Ok(out)
}
