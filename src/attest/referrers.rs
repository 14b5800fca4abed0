//! Attaching documents to an image as OCI 1.1 referrers, and reading them back.
//!
//! An attestation is an artifact manifest: `artifactType` = the document's media type, the empty config
//! (`application/vnd.oci.empty.v1+json`, `{}`), one layer = the document, `subject` = the image manifest.
//! In the store it is an untagged `index.json` entry (see `store::referrers`); on a registry it is pushed by
//! digest, and when the registry has no referrers API (`GET /v2/<name>/referrers/<digest>` → 404, as
//! distribution 2.x) the distribution spec's tag schema is kept up to date: the tag `sha256-<hex of the
//! subject>` holds an image index listing the referrers.

use std::collections::BTreeMap;

use oci_spec::image::{Descriptor, Digest, ImageManifest, MediaType};
use serde_json::{Value, json};

use crate::image::{Reference, media};
use crate::registry::{self, Client, RegistryError};
use crate::store::{Store, StoreError};
use crate::transfer::store_io::StoreBlobs;

/// The empty config's media type (OCI 1.1).
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The empty config's content.
pub const EMPTY: &[u8] = b"{}";
/// The annotation kiln puts on its attestations (`sbom`, `provenance`).
pub const KIND_ANNOTATION: &str = "dev.kiln.attestation";
/// When the attestation was made.
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
/// in-toto's annotation naming the predicate type (as BuildKit's attestation manifests carry it).
pub const PREDICATE_ANNOTATION: &str = "in-toto.io/predicate-type";

/// Why an attestation could not be stored, pushed or read.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A manifest or index is not what it should be.
    #[error("{what} {digest} is not valid: {message}")]
    Bad {
        /// What was read.
        what: &'static str,
        /// Its digest or tag.
        digest: String,
        /// The decoder's message.
        message: String,
    },
}

fn bad(what: &'static str, digest: impl ToString, e: impl ToString) -> AttestError {
    AttestError::Bad { what, digest: digest.to_string(), message: e.to_string() }
}

/// Stores `document` as an attestation of the image `subject` and records it as its referrer, replacing an
/// earlier one of the same type; returns the artifact manifest's descriptor.
pub fn attach(
    store: &Store,
    subject: &Descriptor,
    artifact_type: &str,
    document: &[u8],
    annotations: BTreeMap<String, String>,
) -> Result<Descriptor, AttestError> {
    let (config_digest, config_size) = store.put_bytes(EMPTY)?;
    let (doc_digest, doc_size) = store.put_bytes(document)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": config_digest.to_string(), "size": config_size, "data": "e30="},
        "layers": [{"mediaType": artifact_type, "digest": doc_digest.to_string(), "size": doc_size}],
        "subject": {"mediaType": subject.media_type().to_string(), "digest": subject.digest().to_string(), "size": subject.size()},
        "annotations": annotations,
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| bad("attestation manifest", "new", e))?;
    let (digest, size) = store.put_bytes(&bytes)?;
    let mut desc = Descriptor::new(MediaType::ImageManifest, size, digest);
    desc.set_artifact_type(Some(MediaType::from(artifact_type)));
    desc.set_annotations(Some(annotations.into_iter().collect()));
    store.add_referrer(subject.digest(), &desc)?;
    Ok(desc)
}

/// The document of the local attestation of `artifact_type` attached to `subject`, if any.
pub fn read_local(store: &Store, subject: &Digest, artifact_type: &str) -> Result<Option<Vec<u8>>, AttestError> {
    let wanted = MediaType::from(artifact_type);
    let Some(desc) = store.referrers(subject)?.into_iter().find(|d| d.artifact_type().as_ref() == Some(&wanted)) else {
        return Ok(None);
    };
    let manifest = ImageManifest::from_reader(store.read_blob(desc.digest())?.as_slice())
        .map_err(|e| bad("attestation manifest", desc.digest(), e))?;
    let layer = manifest.layers().first().ok_or_else(|| bad("attestation manifest", desc.digest(), "no layer"))?;
    Ok(Some(store.read_blob(layer.digest())?))
}

/// What pushing an image's attestations did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushed {
    /// How many attestations went up.
    pub count: usize,
    /// The registry indexes them itself (referrers API); otherwise the `sha256-<hex>` tag lists them.
    pub referrers_api: bool,
}

/// `registry/repo@digest`: a reference with no tag, so a push lands by digest and moves no tag.
fn by_digest(repo: &Reference, digest: &str) -> Result<Reference, AttestError> {
    Reference::parse(&format!("{}@{digest}", repo.name())).map_err(|e| bad("reference", repo, e))
}

/// The tag of the referrers tag schema for `subject` (`sha256:<hex>` → `sha256-<hex>`).
pub fn fallback_tag(subject: &Digest) -> String {
    subject.to_string().replace(':', "-")
}

/// Pushes the attestations the store holds for `subject` to `dest`'s repository (the image must be
/// there already, or be pushed next), keeping the tag schema up to date when the registry needs it.
pub async fn push(
    store: &Store,
    client: &Client,
    subject: &Descriptor,
    dest: &Reference,
) -> Result<Pushed, AttestError> {
    let referrers = store.referrers(subject.digest())?;
    if referrers.is_empty() {
        return Ok(Pushed::default());
    }
    for desc in &referrers {
        let bytes = store.read_blob(desc.digest())?;
        let manifest =
            ImageManifest::from_reader(bytes.as_slice()).map_err(|e| bad("attestation manifest", desc.digest(), e))?;
        let mut blobs = vec![manifest.config().clone()];
        blobs.extend(manifest.layers().iter().cloned());
        let target = by_digest(dest, desc.digest().as_ref())?;
        registry::push_image(client, &target, &bytes, media::OCI_MANIFEST, &blobs, &StoreBlobs(store), &[]).await?;
    }
    if client.get_referrers(dest, subject.digest()).await?.is_some() {
        return Ok(Pushed { count: referrers.len(), referrers_api: true });
    }
    let tag = fallback_tag(subject.digest());
    let tagged = dest.with_tag(&tag);
    let mut index = match client.get_manifest(&tagged, &tag).await {
        Ok((bytes, _, digest)) => {
            serde_json::from_slice::<Value>(&bytes).map_err(|e| bad("referrers index", digest, e))?
        }
        Err(RegistryError::Status { status: 404, .. }) => {
            json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": []})
        }
        Err(e) => return Err(e.into()),
    };
    let mut entries: Vec<Value> = index["manifests"].as_array().cloned().unwrap_or_default();
    for desc in &referrers {
        let mut entry = serde_json::to_value(desc).map_err(|e| bad("descriptor", desc.digest(), e))?;
        if let Some(a) = entry.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove(crate::store::SUBJECT_ANNOTATION);
        }
        // Replace what kiln attached before for the same type; keep everything others attached.
        let kind = desc.artifact_type().as_ref().map(|t| t.to_string());
        entries.retain(|e| {
            let same_digest = e["digest"].as_str() == Some(desc.digest().as_ref());
            let ours_same_type =
                e["annotations"][KIND_ANNOTATION].is_string() && e["artifactType"].as_str() == kind.as_deref();
            !same_digest && !ours_same_type
        });
        entries.push(entry);
    }
    index["manifests"] = Value::Array(entries);
    let bytes = serde_json::to_vec(&index).map_err(|e| bad("referrers index", &tag, e))?;
    client.put_manifest(&tagged, &tag, &bytes, media::OCI_INDEX).await?;
    Ok(Pushed { count: referrers.len(), referrers_api: false })
}

/// The newest attestation of `artifact_type` attached to the image `reference` names in its registry:
/// its document and the subject's digest. Looks in the referrers API first, then the tag schema.
pub async fn fetch(
    client: &Client,
    reference: &Reference,
    artifact_type: &str,
) -> Result<Option<(Vec<u8>, Digest)>, AttestError> {
    let (_, _, subject) = client.get_manifest(reference, reference.reference_part()).await?;
    let listing = match client.get_referrers(reference, &subject).await? {
        Some(bytes) => bytes,
        None => {
            let tag = fallback_tag(&subject);
            match client.get_manifest(&reference.with_tag(&tag), &tag).await {
                Ok((bytes, _, _)) => bytes,
                Err(RegistryError::Status { status: 404, .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let index: Value = serde_json::from_slice(&listing).map_err(|e| bad("referrers index", &subject, e))?;
    let newest = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["artifactType"].as_str() == Some(artifact_type))
        .max_by_key(|m| m["annotations"][CREATED_ANNOTATION].as_str().unwrap_or_default().to_string());
    let Some(digest) = newest.and_then(|m| m["digest"].as_str()) else { return Ok(None) };
    let (bytes, _, _) = client.get_manifest(&by_digest(reference, digest)?, digest).await?;
    let manifest = ImageManifest::from_reader(bytes.as_slice()).map_err(|e| bad("attestation manifest", digest, e))?;
    let layer = manifest.layers().first().ok_or_else(|| bad("attestation manifest", digest, "no layer"))?;
    let mut document = Vec::new();
    client.get_blob(reference, layer.digest(), &mut document).await?;
    Ok(Some((document, subject)))
}
