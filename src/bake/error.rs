//! Why a set of builds cannot be loaded or ordered; each error names the file and the builds at fault.

use std::path::PathBuf;

/// A bake input or graph error.
#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A YAML or TOML document does not parse.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with its line).
        message: String,
    },
    /// A build's definition cannot be used.
    #[error("{path}: build {build}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The build's name.
        build: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// Two builds have the same name.
    #[error("build {name} is defined twice: in {first} and in {second}")]
    Duplicate {
        /// The name.
        name: String,
        /// Where it was seen first.
        first: PathBuf,
        /// Where it was seen again.
        second: PathBuf,
    },
    /// The inputs hold no build.
    #[error("no builds found in {0} (expected BuildConfig YAML, a kustomization.yaml or a kiln-bake.toml)")]
    Empty(String),
    /// The builds depend on each other in a circle.
    #[error("dependency cycle: {0}")]
    Cycle(String),
    /// A build needs an image that nothing in the set (or imported by an ImageStream) provides.
    #[error("build {build} needs {what}, which no build in the set produces{hint}")]
    MissingProducer {
        /// The build.
        build: String,
        /// The image or build as written.
        what: String,
        /// What to do.
        hint: String,
    },
    /// Two builds name the same image.
    #[error("builds {first} and {second} both produce {image}")]
    SameOutput {
        /// The image.
        image: String,
        /// One build.
        first: String,
        /// The other.
        second: String,
    },
    /// `--target` names no build.
    #[error("no build named {name} (builds: {known})")]
    UnknownTarget {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
    /// A Dockerfile of the set does not parse or plan.
    #[error("build {build}: {source}")]
    Dockerfile {
        /// The build.
        build: String,
        /// The parse or plan error (with `FILE:LINE`).
        source: Box<crate::build::BuildError>,
    },
}
