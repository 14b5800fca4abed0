//! The OCI 1.1 referrers API: `GET /v2/<name>/referrers/<digest>` answers an image index of the manifests
//! whose `subject` is that digest — or 404 from a registry that does not implement it, in which case
//! clients use the tag schema (`<alg>-<hex>` tags holding such an index; see `attest::referrers`).

use oci_spec::image::Digest;
use reqwest::StatusCode;

use super::client::{Client, status_error};
use super::error::RegistryError;
use crate::image::{Reference, media};

impl Client {
    /// The referrers index of `subject` in `reference`'s repository, or `None` when the registry has no
    /// referrers API (404).
    pub async fn get_referrers(
        &self,
        reference: &Reference,
        subject: &Digest,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        let host = reference.api_host();
        let repo = reference.repository();
        let op = format!("GET referrers of {subject} in {repo}");
        let path = format!("/v2/{repo}/referrers/{subject}");
        let scope = format!("repository:{repo}:pull");
        let response = self
            .send(
                host,
                &scope,
                &op,
                &path,
                &|c, url| c.get(url).header(reqwest::header::ACCEPT, media::OCI_INDEX),
                true,
            )
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let bytes = response.bytes().await.map_err(|e| super::error::connect_error(host, &op, &e))?;
                Ok(Some(bytes.to_vec()))
            }
            _ => Err(status_error(host, &op, response).await),
        }
    }
}
