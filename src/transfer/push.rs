//! Pushing an image from the store to a registry, in the format it was built in or converted to.

use oci_spec::image::{Descriptor, Digest, ImageManifest};

use crate::image::{self, Reference};
use crate::registry::{self, Client, RegistryError};
use crate::store::{Store, StoreError};
use crate::transfer::store_io::StoreBlobs;

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The store could not provide a blob.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored manifest could not be decoded.
    #[error("image manifest {digest} in the store is not valid: {message}")]
    BadManifest {
        /// The manifest digest.
        digest: Digest,
        /// What the decoder said.
        message: String,
    },
}

/// Pushes the image whose manifest is `manifest` to `dest`; `docker_format` converts the media types.
/// `mount_from` names repositories on the same registry that may already hold the blobs.
pub async fn push(
    store: &Store,
    client: &Client,
    manifest: &Descriptor,
    dest: &Reference,
    docker_format: Option<bool>,
    mount_from: &[Reference],
) -> Result<Digest, PushError> {
    let mut bytes = store.read_blob(manifest.digest())?;
    let mut media_type = manifest.media_type().to_string();
    if let Some(docker) = docker_format {
        (bytes, media_type) = image::convert_manifest(&bytes, docker)
            .map_err(|e| PushError::BadManifest { digest: manifest.digest().clone(), message: e.to_string() })?;
    }
    let parsed = ImageManifest::from_reader(bytes.as_slice())
        .map_err(|e| PushError::BadManifest { digest: manifest.digest().clone(), message: e.to_string() })?;
    let mut blobs = vec![parsed.config().clone()];
    blobs.extend(parsed.layers().iter().cloned());
    let source = StoreBlobs(store);
    let same_registry: Vec<Reference> = mount_from
        .iter()
        .filter(|r| r.registry() == dest.registry() && r.repository() != dest.repository())
        .cloned()
        .collect();
    let digest = registry::push_image(client, dest, &bytes, &media_type, &blobs, &source, &same_registry).await?;
    Ok(digest)
}
