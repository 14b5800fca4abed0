//! The errors of a build, each naming the place it happened: `Dockerfile:12`, a registry, a digest.

use std::path::PathBuf;

use crate::build::step::StepError;
use crate::store::StoreError;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile could not be read.
    #[error("cannot read {path}: {source}")]
    ReadDockerfile {
        /// The Dockerfile path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The Dockerfile does not parse.
    #[error(transparent)]
    Parse(#[from] crate::dockerfile::ParseError),
    /// The build-check options (`# check=`, `BUILDKIT_DOCKERFILE_CHECK`) do not parse.
    #[error(transparent)]
    CheckOptions(#[from] crate::dockerfile::lint::ConfigError),
    /// `# check=error=true` and a build check found something: the rules and their places.
    #[error("{0}")]
    Checks(String),
    /// The stages and arguments do not make a plan.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// The build context could not be opened.
    #[error(transparent)]
    Context(#[from] crate::build::context::ContextError),
    /// A step failed; the message starts with its place (`Dockerfile:7: COPY ...`).
    #[error("{location}: {instruction}: {source}")]
    Step {
        /// `FILE:LINE`.
        location: String,
        /// The instruction's keyword and arguments, shortened.
        instruction: String,
        /// What went wrong.
        source: StepError,
    },
    /// A base image name that is not a valid reference.
    #[error("invalid image reference {name:?}: {message}")]
    BadReference {
        /// The name as written.
        name: String,
        /// Why it is invalid.
        message: String,
    },
    /// `--pull=never` and the image is not in the store.
    #[error("image {0} is not in the store and --pull=never forbids pulling it")]
    NotInStore(String),
    /// `--network proxy-only` refused to pull a base image from a registry outside its allow-list.
    #[error("FROM {name}: {message}")]
    PullRefused {
        /// The image as written.
        name: String,
        /// Why, and what to allow.
        message: String,
    },
    /// An image in the store is inconsistent.
    #[error("image {digest} in the store is not valid: {message}")]
    BadImage {
        /// The manifest digest.
        digest: String,
        /// What is wrong.
        message: String,
    },
    /// Pulling a base image failed.
    #[error(transparent)]
    Pull(#[from] crate::transfer::pull::PullError),
    /// The store refused an operation.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Committing the final image failed.
    #[error(transparent)]
    Commit(#[from] crate::build::commit::CommitError),
    /// The supply chain (CAs, Nexus, network policy) could not be set up.
    #[error(transparent)]
    Supply(Box<crate::supply::SupplyError>),
    /// The CA layer (`--ca-persist`) could not be made.
    #[error("--ca-persist: {0}")]
    CaLayer(#[source] Box<StepError>),
}
