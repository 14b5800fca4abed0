//! The distribution API calls kiln makes: manifests, blobs (streamed and checked), existence checks,
//! cross-repository mounts, uploads.

use std::io::Write;
use std::path::Path;

use futures_util::StreamExt;
use oci_spec::image::Digest;
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};

use super::client::{Client, status_error};
use super::error::RegistryError;
use crate::image::{Reference, media};

/// Everything a manifest request accepts.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Client {
    /// Fetches the manifest (or index) `reference` names: bytes, media type, digest.
    pub async fn get_manifest(
        &self,
        reference: &Reference,
        part: &str,
    ) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        let host = reference.api_host();
        let repo = reference.repository();
        let op = format!("GET manifest {}", reference);
        let path = format!("/v2/{repo}/manifests/{part}");
        let response = self
            .send(
                host,
                &pull_scope(repo),
                &op,
                &path,
                &|c, url| c.get(url).header(reqwest::header::ACCEPT, ACCEPT),
                true,
            )
            .await?;
        if !response.status().is_success() {
            return Err(status_error(host, &op, response).await);
        }
        let media_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let bytes = response.bytes().await.map_err(|e| crate::registry::error::connect_error(host, &op, &e))?.to_vec();
        let actual = sha256(&bytes);
        if part.starts_with("sha256:") && part != actual {
            return Err(RegistryError::DigestMismatch {
                registry: host.to_string(),
                repository: repo.to_string(),
                expected: part.to_string(),
                actual,
            });
        }
        let media_type =
            media_type.filter(|t| !t.is_empty() && t != "application/json").unwrap_or_else(|| sniff(&bytes));
        let digest = actual.parse().map_err(|_| RegistryError::BadResponse {
            registry: host.to_string(),
            what: "manifest",
            message: "cannot compute its digest".into(),
        })?;
        Ok((bytes, media_type, digest))
    }

    /// Streams a blob into `sink`, checking its digest as it arrives.
    pub async fn get_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        sink: &mut (dyn Write + Send),
    ) -> Result<u64, RegistryError> {
        let host = reference.api_host();
        let repo = reference.repository();
        let op = format!("GET blob {digest}");
        let path = format!("/v2/{repo}/blobs/{digest}");
        let response = self.send(host, &pull_scope(repo), &op, &path, &|c, url| c.get(url), true).await?;
        if !response.status().is_success() {
            return Err(status_error(host, &op, response).await);
        }
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| crate::registry::error::connect_error(host, &op, &e))?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            sink.write_all(&chunk).map_err(|source| RegistryError::Local {
                op: "store blob",
                path: digest.to_string().into(),
                source,
            })?;
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest.to_string() {
            return Err(RegistryError::DigestMismatch {
                registry: host.to_string(),
                repository: repo.to_string(),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(size)
    }

    /// Whether the repository already has the blob.
    pub async fn blob_exists(&self, reference: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
        let host = reference.api_host();
        let repo = reference.repository();
        let op = format!("HEAD blob {digest}");
        let path = format!("/v2/{repo}/blobs/{digest}");
        let response = self.send(host, &push_scope(repo), &op, &path, &|c, url| c.head(url), true).await?;
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(host, &op, response).await),
        }
    }

    /// Asks the registry to link a blob from another repository of the same registry; false when it won't.
    pub async fn mount_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        from: &Reference,
    ) -> Result<bool, RegistryError> {
        let host = reference.api_host();
        let repo = reference.repository();
        let scope = format!("{} {}", push_scope(repo), pull_scope(from.repository()));
        let op = format!("mount blob {digest} from {}", from.repository());
        let path = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={}", from.repository());
        let response = self
            .send(host, &scope, &op, &path, &|c, url| c.post(url).header(reqwest::header::CONTENT_LENGTH, 0), false)
            .await?;
        Ok(response.status() == StatusCode::CREATED)
    }

    /// Uploads a blob from a file in one PUT (retried from the start on failure).
    pub async fn push_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        file: &Path,
    ) -> Result<(), RegistryError> {
        let host = reference.api_host();
        let repo = reference.repository();
        let op = format!("upload blob {digest} to {repo}");
        let mut last = None;
        for _ in 0..3 {
            match self.try_push_blob(host, repo, digest, size, file, &op).await {
                Ok(()) => return Ok(()),
                Err(e @ (RegistryError::Connect { .. } | RegistryError::Status { status: 429 | 500..=599, .. })) => {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Connect {
            registry: host.to_string(),
            op,
            message: "gave up".into(),
            failure: crate::registry::error::NetFailure::Other,
        }))
    }

    async fn try_push_blob(
        &self,
        host: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        file: &Path,
        op: &str,
    ) -> Result<(), RegistryError> {
        let scope = push_scope(repo);
        let start = format!("/v2/{repo}/blobs/uploads/");
        let response = self
            .send(host, &scope, op, &start, &|c, url| c.post(url).header(reqwest::header::CONTENT_LENGTH, 0), true)
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(status_error(host, op, response).await);
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::BadResponse {
                registry: host.to_string(),
                what: "upload start",
                message: "no Location".into(),
            })?
            .to_string();
        let url = if location.starts_with("http") { location } else { format!("{}{location}", self.base(host).await) };
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}digest={digest}");
        let path = file.to_path_buf();
        let make = move |c: &reqwest::Client, url: String| {
            let body = match std::fs::File::open(&path) {
                Ok(f) => reqwest::Body::wrap_stream(tokio_util_stream(f)),
                Err(_) => reqwest::Body::from(Vec::new()),
            };
            c.put(url)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, size)
                .body(body)
        };
        let response = self.send(host, &scope, op, &url, &make, false).await?;
        if response.status() != StatusCode::CREATED {
            return Err(status_error(host, op, response).await);
        }
        Ok(())
    }

    /// Uploads a manifest under a tag or digest; returns its digest.
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        part: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest, RegistryError> {
        let host = reference.api_host();
        let repo = reference.repository();
        let op = format!("PUT manifest {}", reference);
        let path = format!("/v2/{repo}/manifests/{part}");
        let body = bytes.to_vec();
        let mt = media_type.to_string();
        let response = self
            .send(
                host,
                &push_scope(repo),
                &op,
                &path,
                &move |c, url| c.put(url).header(reqwest::header::CONTENT_TYPE, mt.clone()).body(body.clone()),
                true,
            )
            .await?;
        if !response.status().is_success() {
            return Err(status_error(host, &op, response).await);
        }
        sha256(bytes).parse().map_err(|_| RegistryError::BadResponse {
            registry: host.to_string(),
            what: "manifest",
            message: "digest".into(),
        })
    }
}

/// Reads a file as a stream of chunks for an upload body, without holding it in memory.
fn tokio_util_stream(
    file: std::fs::File,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(Some(file), |state| async move {
        let mut file = state?;
        let mut buf = vec![0u8; 1 << 20];
        match std::io::Read::read(&mut file, &mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// Guesses a manifest's media type from its body when the registry did not say.
fn sniff(bytes: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if let Some(t) = v.get("mediaType").and_then(|t| t.as_str()) {
        return t.to_string();
    }
    if v.get("manifests").is_some() { media::OCI_INDEX.to_string() } else { media::OCI_MANIFEST.to_string() }
}
