//! What one build is asked to do: the library form of `kiln build`'s flags.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::build::commit::ImageFormat;
use crate::layer::Compression;

/// When base images are fetched from their registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Only when the store lacks them (default).
    #[default]
    Missing,
    /// Always ask the registry for the current digest.
    Always,
    /// Never; a missing base is an error.
    Never,
}

/// The inputs of one build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile.
    pub dockerfile: PathBuf,
    /// Names to give the result (already normalised references).
    pub tags: Vec<String>,
    /// Build arguments after `--build-arg K` was resolved from the environment.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--from`: replaces the base of the stage `from_rule` names (the first, unless asked otherwise).
    pub from_override: Option<String>,
    /// Which stage `from_override` applies to (OpenShift BuildConfigs: the last).
    pub from_rule: crate::plan::FromRule,
    /// `ENV` pairs set after every FROM (a BuildConfig's Docker strategy `env`).
    pub stage_env: Vec<(String, String)>,
    /// `--label` pairs for the final image.
    pub labels: Vec<(String, String)>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--no-cache-filter`: stages (by name) that never use the cache.
    pub no_cache_filter: Vec<String>,
    /// `--cache-from`: registry repositories to look step results up in, in order.
    pub cache_from: Vec<String>,
    /// The image is pushed right after the build: layers found in `--cache-from` need not be downloaded
    /// (the push mounts them), and the image is then not kept locally.
    pub layers_may_stay_remote: bool,
    /// `--cache-to`: the registry repository step results are shared through.
    pub cache_to: Option<String>,
    /// `--pull`.
    pub pull: PullPolicy,
    /// Images the caller made itself (a bake set's own outputs, normalised): taken from the store when it
    /// has them, whatever `pull` says — `--pull=always` refreshes the bases from elsewhere, not these.
    pub local_bases: Vec<String>,
    /// `--format`.
    pub format: ImageFormat,
    /// `--compression-format`.
    pub compression: Compression,
    /// `--squash`.
    pub squash: bool,
    /// `SOURCE_DATE_EPOCH`: clamps file times and fixes the `created` times.
    pub source_date_epoch: Option<i64>,
    /// Unqualified image names are looked up in these registries, in order.
    pub search_registries: Vec<String>,
    /// `--isolation` for RUN steps.
    pub isolation: crate::sandbox::Requested,
    /// `--network` for RUN steps (RUN --network overrides it).
    pub network: crate::sandbox::Network,
    /// How long ADD waits for a server to connect and, once connected, for its next data.
    pub fetch_timeouts: crate::build::step::fetch::Timeouts,
    /// `--secret id=...`: what `RUN --mount=type=secret` can use, by id.
    pub secrets: BTreeMap<String, SecretSource>,
    /// Company CAs, Nexus routing and the proxy-only network (`--ca-cert`, `--nexus`, ...; kiln.toml).
    pub supply: crate::supply::SupplyOptions,
}

/// Where a secret's value comes from; the value never enters a layer, the history or a cache key.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file on the host (`src=FILE`).
    File(PathBuf),
    /// A value taken from the environment (`env=VAR`) when the build started.
    Value(Vec<u8>),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(path) => write!(f, "File({})", path.display()),
            SecretSource::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

impl SecretSource {
    /// The secret's bytes.
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        match self {
            SecretSource::File(path) => std::fs::read(path),
            SecretSource::Value(bytes) => Ok(bytes.clone()),
        }
    }
}
