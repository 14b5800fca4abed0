//! Whole-image transfers: pull (resolve the platform, fetch missing blobs in parallel into a sink) and
//! push (skip blobs the registry has, mount what another repository of it has, upload the rest in
//! parallel, then the manifest).

use std::path::PathBuf;

use futures_util::TryStreamExt;
use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest};

use super::client::Client;
use super::error::RegistryError;
use crate::image::{Platform, Reference, media};

/// Where pulled blobs go (the store, seen through this trait so the registry does not know it).
pub trait BlobSink: Send + Sync {
    /// Whether the blob is already there.
    fn contains(&self, digest: &Digest) -> bool;
    /// Starts writing a blob.
    fn begin(&self) -> std::io::Result<Box<dyn BlobIngest>>;
}

/// One blob being written into a sink.
pub trait BlobIngest: std::io::Write + Send {
    /// Makes the blob visible if it matches `expected`.
    fn commit(self: Box<Self>, expected: &Digest) -> std::io::Result<()>;
}

/// Where pushed blobs come from.
pub trait BlobSource: Send + Sync {
    /// The file holding the blob, when present.
    fn path(&self, digest: &Digest) -> Option<PathBuf>;
}

/// How many blobs move at once.
const PARALLEL: usize = 4;

/// What a pull produced.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The platform manifest's bytes, exactly as the registry sent them.
    pub manifest: Vec<u8>,
    /// Its media type.
    pub manifest_media_type: String,
    /// Its digest.
    pub manifest_digest: Digest,
    /// The config digest (the image ID).
    pub config_digest: Digest,
}

/// Pulls `reference` for `platform`: manifest (through an index when there is one), config and layers.
pub async fn pull_image(
    client: &Client,
    reference: &Reference,
    platform: &Platform,
    sink: &dyn BlobSink,
) -> Result<PulledImage, RegistryError> {
    let host = reference.api_host().to_string();
    let bad = |what: &'static str, e: String| RegistryError::BadResponse { registry: host.clone(), what, message: e };
    let (mut bytes, mut media_type, mut digest) = client.get_manifest(reference, reference.reference_part()).await?;
    if media::is_index(&media_type) {
        let index = ImageIndex::from_reader(bytes.as_slice()).map_err(|e| bad("image index", e.to_string()))?;
        let chosen = index
            .manifests()
            .iter()
            .find(|d| {
                d.platform().as_ref().is_some_and(|p| {
                    platform.matches(&p.os().to_string(), &p.architecture().to_string(), p.variant().as_deref())
                })
            })
            .ok_or_else(|| RegistryError::NoPlatform {
                reference: reference.to_string(),
                platform: platform.to_string(),
                available: index
                    .manifests()
                    .iter()
                    .filter_map(|d| d.platform().as_ref().map(|p| format!("{}/{}", p.os(), p.architecture())))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?
            .digest()
            .to_string();
        (bytes, media_type, digest) = client.get_manifest(reference, &chosen).await?;
    }
    let manifest = ImageManifest::from_reader(bytes.as_slice()).map_err(|e| bad("image manifest", e.to_string()))?;
    let mut wanted: Vec<&Descriptor> = vec![manifest.config()];
    wanted.extend(manifest.layers().iter());
    futures_util::stream::iter(wanted.into_iter().filter(|d| !sink.contains(d.digest())).map(Ok))
        .try_for_each_concurrent(PARALLEL, |d| fetch_blob(client, reference, d.digest(), sink))
        .await?;
    Ok(PulledImage {
        manifest: bytes,
        manifest_media_type: media_type,
        manifest_digest: digest,
        config_digest: manifest.config().digest().clone(),
    })
}

async fn fetch_blob(
    client: &Client,
    reference: &Reference,
    digest: &Digest,
    sink: &dyn BlobSink,
) -> Result<(), RegistryError> {
    let local = |source| RegistryError::Local { op: "store blob", path: digest.to_string().into(), source };
    let mut writer = sink.begin().map_err(local)?;
    client.get_blob(reference, digest, &mut *writer).await?;
    writer.commit(digest).map_err(local)
}

/// Pushes an image: blobs first (skipped, mounted or uploaded), then the manifest under `dest`'s tag.
pub async fn push_image(
    client: &Client,
    dest: &Reference,
    manifest: &[u8],
    media_type: &str,
    blobs: &[Descriptor],
    source: &dyn BlobSource,
    mount_from: &[Reference],
) -> Result<Digest, RegistryError> {
    futures_util::stream::iter(blobs.iter().map(Ok))
        .try_for_each_concurrent(PARALLEL, |d| push_one(client, dest, d, source, mount_from))
        .await?;
    let part = dest.tag().unwrap_or_else(|| dest.reference_part());
    client.put_manifest(dest, part, manifest, media_type).await
}

async fn push_one(
    client: &Client,
    dest: &Reference,
    d: &Descriptor,
    source: &dyn BlobSource,
    mount_from: &[Reference],
) -> Result<(), RegistryError> {
    if client.blob_exists(dest, d.digest()).await? {
        return Ok(());
    }
    for from in mount_from.iter().filter(|r| r.registry() == dest.registry() && r.repository() != dest.repository()) {
        if client.mount_blob(dest, d.digest(), from).await.unwrap_or(false) {
            return Ok(());
        }
    }
    let path = source.path(d.digest()).ok_or_else(|| RegistryError::Local {
        op: "find blob to push",
        path: d.digest().to_string().into(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    client.push_blob(dest, d.digest(), d.size(), &path).await
}
