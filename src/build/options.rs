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
    /// `--from`: replaces the first stage's base.
    pub from_override: Option<String>,
    /// `--label` pairs for the final image.
    pub labels: Vec<(String, String)>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--pull`.
    pub pull: PullPolicy,
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
}
