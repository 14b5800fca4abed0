//! Pulling an image from a registry into the store, and naming it there by its reference.

use oci_spec::image::{Descriptor, MediaType};

use crate::image::{Platform, Reference};
use crate::registry::{self, Client, RegistryError};
use crate::store::{Store, StoreError};
use crate::transfer::store_io::StoreBlobs;

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The store refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Pulls `reference` for `platform` into the store, tags it with its full name, and returns its manifest.
pub async fn pull(
    store: &Store,
    client: &Client,
    reference: &Reference,
    platform: &Platform,
) -> Result<Descriptor, PullError> {
    let sink = StoreBlobs(store);
    let pulled = registry::pull_image(client, reference, platform, &sink).await?;
    let (digest, size) = store.put_bytes(&pulled.manifest)?;
    let descriptor = Descriptor::new(MediaType::from(pulled.manifest_media_type.as_str()), size, digest);
    store.set_tag(&reference.to_string(), &descriptor)?;
    Ok(descriptor)
}
