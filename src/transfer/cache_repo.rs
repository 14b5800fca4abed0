//! The step cache shared through a registry (`--cache-to` / `--cache-from`), for build pods that start
//! empty. Each step's record is a small OCI manifest tagged with the step's key in the cache repository: its
//! config blob is the [`Record`] as JSON (media type [`RECORD_TYPE`]), its one layer (if any) the step's
//! layer blob. Any OCI registry stores it; a lookup is one manifest GET and one small blob GET; the layer
//! itself is fetched only when a later step reads it, and a push to the same registry mounts it instead.

use oci_spec::image::{Descriptor, Digest, MediaType};

use crate::cache::{CacheKey, Record};
use crate::image::Reference;
use crate::registry::{self, BlobSink, Client, RegistryError};
use crate::store::Store;
use crate::transfer::store_io::StoreBlobs;

/// Media type of a cache record's config blob.
pub const RECORD_TYPE: &str = "application/vnd.kiln.cache.record.v1+json";

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Looks `key` up in `repo`: `Ok(None)` when the registry has no such tag, else the record (its layer is
/// fetched separately, and only when needed: [`fetch_layer`]).
pub async fn fetch_record(client: &Client, repo: &Reference, key: &CacheKey) -> Result<Option<Record>, RegistryError> {
    let (bytes, _, _) = match client.get_manifest(repo, key.hex()).await {
        Ok(found) => found,
        Err(RegistryError::Status { status: 404, .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return Ok(None) };
    let Some(config) =
        manifest.pointer("/config/digest").and_then(|d| d.as_str()).and_then(|d| d.parse::<Digest>().ok())
    else {
        return Ok(None);
    };
    let mut record_bytes = Vec::new();
    client.get_blob(repo, &config, &mut record_bytes).await?;
    Ok(serde_json::from_slice::<Record>(&record_bytes).ok())
}

/// Downloads a cached layer blob from `repo` into `store` (digest verified on the way).
pub async fn fetch_layer(
    client: &Client,
    store: &Store,
    repo: &Reference,
    digest: &Digest,
) -> Result<(), RegistryError> {
    let sink = StoreBlobs(store);
    let mut ingest = sink.begin().map_err(|source| local("store a cached layer", source))?;
    client.get_blob(repo, digest, &mut ingest).await?;
    ingest.commit(digest).map_err(|source| local("store a cached layer", source))
}

/// Publishes `record` under `key` in `repo` (blobs the registry has are not sent again).
pub async fn publish(
    client: &Client,
    store: &Store,
    repo: &Reference,
    key: &CacheKey,
    record: &Record,
) -> Result<(), RegistryError> {
    let record_json =
        serde_json::to_vec(record).map_err(|e| local("encode a cache record", std::io::Error::other(e)))?;
    let (config_digest, config_size) =
        store.put_bytes(&record_json).map_err(|e| local("store a cache record", std::io::Error::other(e)))?;
    let config = Descriptor::new(MediaType::Other(RECORD_TYPE.to_string()), config_size, config_digest);
    let layers: Vec<Descriptor> = record
        .layer
        .iter()
        .map(|l| Descriptor::new(MediaType::from(l.media_type.as_str()), l.size, l.digest.clone()))
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config,
        "layers": layers,
    });
    let bytes =
        serde_json::to_vec(&manifest).map_err(|e| local("encode a cache manifest", std::io::Error::other(e)))?;
    let mut blobs = vec![config];
    blobs.extend(layers);
    // The image push path: blobs the registry has are skipped, the rest uploaded in parallel with retries.
    registry::push_image(client, &repo.with_tag(key.hex()), &bytes, MANIFEST_TYPE, &blobs, &StoreBlobs(store), &[])
        .await?;
    Ok(())
}

fn local(op: &'static str, source: std::io::Error) -> RegistryError {
    RegistryError::Local { op, path: "cache".into(), source }
}
