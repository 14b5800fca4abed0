//! An OCI distribution client: manifests and blobs over HTTP(S), basic and bearer-token auth from the
//! usual auth files, custom CAs, plain HTTP when TLS verification is off, retries with back-off, and
//! whole-image pull and push. Knows nothing of the store: blobs come and go through small traits.

mod auth;
mod client;
mod error;
mod ops;
mod referrers;
mod tls;
mod transfer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use auth::{AuthFiles, Challenge, Credentials, parse_challenge};
pub use client::{Client, RegistryOptions};
pub use error::{NetFailure, RegistryError};
pub use tls::Roots;
pub use transfer::{BlobIngest, BlobSink, BlobSource, PulledImage, pull_image, push_image};

/// Checks credentials against `host`, then saves them in the auth file; returns that file.
pub async fn login(
    client: &Client,
    files: &AuthFiles,
    host: &str,
    username: &str,
    password: &str,
) -> Result<PathBuf, RegistryError> {
    let creds = Credentials { username: username.to_string(), password: password.to_string() };
    let options =
        RegistryOptions { credentials: Some((username.to_string(), password.to_string())), ..client_options(client) };
    Client::new(options)?.check_login(host).await?;
    let path = files
        .write_target()
        .ok_or_else(|| RegistryError::Setup("no auth file location: set --authfile or REGISTRY_AUTH_FILE".into()))?
        .to_path_buf();
    auth::store(&path, host, Some(&creds))?;
    Ok(path)
}

/// Removes the credentials of `host` from the auth file; false when there were none.
pub fn logout(files: &AuthFiles, host: &str) -> Result<bool, RegistryError> {
    match files.write_target() {
        Some(path) if path.exists() => auth::store(path, host, None),
        _ => Ok(false),
    }
}

fn client_options(client: &Client) -> RegistryOptions {
    client.options().clone()
}
