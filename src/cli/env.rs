//! Everything kiln takes from the process environment, read in one place and passed down as values:
//! the store root, auth file locations, `SOURCE_DATE_EPOCH`, `KILN_FETCH_TIMEOUT`, build-arg values named
//! without `=`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::args::RegistryFlags;
use crate::registry::{AuthFiles, Client, RegistryOptions};
use crate::store::Store;

/// The store's directory: `--root`, else `$KILN_ROOT`, else the per-user or system default.
pub fn store_root(root: Option<&Path>) -> PathBuf {
    match root {
        // Absolute: the sandbox child enters other directories before it mounts store paths.
        Some(p) => std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()),
        None => Store::default_root(
            std::env::var_os("KILN_ROOT").as_deref(),
            std::env::var_os("XDG_DATA_HOME").as_deref(),
            std::env::var_os("HOME").as_deref(),
            crate::sandbox::userns::state().started_as_root(),
        ),
    }
}

/// Opens the store (cleaning what killed kiln runs left) and says what opening it changed.
pub fn open_store(root: Option<&Path>) -> anyhow::Result<Store> {
    let path = store_root(root);
    let store = Store::open(&path).with_context(|| format!("cannot open the store at {}", path.display()))?;
    super::output::print_opened(&path, &store.opened());
    Ok(store)
}

/// Opens the store leaving killed runs' files in place, for `fsck` to report them.
pub fn open_store_as_found(root: Option<&Path>) -> anyhow::Result<Store> {
    let path = store_root(root);
    let store =
        Store::open_without_recovery(&path).with_context(|| format!("cannot open the store at {}", path.display()))?;
    super::output::print_opened(&path, &store.opened());
    Ok(store)
}

/// Where credentials are looked up, in podman's order.
pub fn auth_files(explicit: Option<&Path>) -> AuthFiles {
    AuthFiles::new(
        explicit.map(Path::to_path_buf),
        std::env::var_os("REGISTRY_AUTH_FILE").map(PathBuf::from),
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

/// The registry client for the given flags.
pub fn registry_client(flags: &RegistryFlags) -> anyhow::Result<Client> {
    let options = RegistryOptions {
        tls_verify: flags.tls_verify,
        ca_files: flags.ca_files.clone(),
        cert_dir: flags.cert_dir.clone(),
        auth: auth_files(flags.authfile.as_deref()),
        credentials: flags.creds.as_deref().map(split_creds).transpose()?,
        ..Default::default()
    };
    Client::new(options).context("cannot set up the registry client")
}

fn split_creds(text: &str) -> anyhow::Result<(String, String)> {
    let (user, pass) = text.split_once(':').context("--creds must be USER:PASSWORD")?;
    Ok((user.to_string(), pass.to_string()))
}

/// `SOURCE_DATE_EPOCH` when set to a number.
pub fn source_date_epoch() -> anyhow::Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => {
            Ok(Some(v.parse().with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?))
        }
        _ => Ok(None),
    }
}

/// `KILN_FETCH_TIMEOUT` (seconds), when set: how long ADD waits for a connection and for each next piece
/// of data; else 30 s to connect and 60 s of silence.
pub fn fetch_timeouts() -> anyhow::Result<crate::build::step::fetch::Timeouts> {
    use crate::build::step::fetch::Timeouts;
    match std::env::var("KILN_FETCH_TIMEOUT") {
        Ok(v) if !v.is_empty() => {
            let seconds: u64 = v
                .parse()
                .ok()
                .filter(|s| *s > 0)
                .with_context(|| format!("KILN_FETCH_TIMEOUT={v:?}: expected seconds > 0"))?;
            Ok(Timeouts::both(std::time::Duration::from_secs(seconds)))
        }
        _ => Ok(Timeouts::default()),
    }
}

/// The value of an environment variable for `--build-arg NAME` (unset → the arg is left out, as podman does).
pub fn var(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v: OsString| v.to_string_lossy().into_owned())
}
