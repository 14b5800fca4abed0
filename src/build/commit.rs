//! Committing a finished stage as an image in the store: config blob, manifest blob, names.
//!
//! The manifest is written in the format asked for (`--format oci|docker`); the config JSON is the same
//! bytes in both, so the image ID (the config digest) does not depend on the format.

use oci_spec::image::{Descriptor, Digest, MediaType};

use crate::build::state::{ImageState, LayerRef};
use crate::image::media;
use crate::store::{Store, StoreError};

/// Manifest and config media types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageFormat {
    /// OCI image spec (default).
    #[default]
    Oci,
    /// Docker image manifest v2 schema 2.
    Docker,
}

/// Why an image could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The store refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The config could not be serialised.
    #[error("cannot encode the image config: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A committed image: its manifest descriptor and its ID (the config digest).
#[derive(Debug, Clone)]
pub struct Committed {
    /// The manifest, as recorded in index.json.
    pub manifest: Descriptor,
    /// The config digest — the image ID.
    pub config: Digest,
}

/// Writes `state` as an image and returns its manifest descriptor.
pub fn commit(store: &Store, state: &ImageState, format: ImageFormat) -> Result<Committed, CommitError> {
    let config_bytes = serde_json::to_vec(&state.config)?;
    let (config_digest, config_size) = store.put_bytes(&config_bytes)?;
    let (manifest_type, config_type) = match format {
        ImageFormat::Oci => (media::OCI_MANIFEST, media::OCI_CONFIG),
        ImageFormat::Docker => (media::DOCKER_MANIFEST, media::DOCKER_CONFIG),
    };
    let layers: Vec<serde_json::Value> = state
        .layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "mediaType": layer_media_type(l, format),
                "digest": l.digest.to_string(),
                "size": l.size,
            })
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": { "mediaType": config_type, "digest": config_digest.to_string(), "size": config_size },
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest)?;
    let (digest, size) = store.put_bytes(&bytes)?;
    let descriptor = Descriptor::new(MediaType::from(manifest_type), size, digest);
    Ok(Committed { manifest: descriptor, config: config_digest })
}

/// A layer's media type in the target format: the same compression, the format's naming.
fn layer_media_type(layer: &LayerRef, format: ImageFormat) -> &'static str {
    let t = layer.media_type.as_str();
    let zstd = t.ends_with("zstd");
    let gzip = t.ends_with("gzip");
    match (format, gzip, zstd) {
        (ImageFormat::Docker, true, _) => media::DOCKER_LAYER_GZIP,
        (ImageFormat::Docker, false, false) => media::DOCKER_LAYER,
        // Docker schema 2 has no zstd layer type; podman and BuildKit use OCI's in that case too.
        (_, _, true) => media::OCI_LAYER_ZSTD,
        (ImageFormat::Oci, true, _) => media::OCI_LAYER_GZIP,
        (ImageFormat::Oci, false, false) => media::OCI_LAYER,
    }
}
