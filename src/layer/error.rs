//! Layer errors: each names the tar entry or path involved.

use std::path::PathBuf;

/// Why a layer could not be written or applied.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Reading a source file or writing the output failed.
    #[error("layer: cannot {op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The tar stream itself is broken.
    #[error("layer: malformed tar stream: {0}")]
    Tar(std::io::Error),
    /// Applying one tar entry failed.
    #[error("layer: entry {path:?}: cannot {what}: {source}")]
    Entry {
        /// The entry name as written in the tar.
        path: String,
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A tar entry would land outside the root and cannot be clamped inside it.
    #[error("layer: entry {path:?} escapes the root ({reason})")]
    Escape {
        /// The entry name as written in the tar.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// An entry the writer cannot represent.
    #[error("layer: cannot write entry {path:?}: {reason}")]
    BadEntry {
        /// The entry's path.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Wraps an io error with its operation and path.
pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LayerError {
    let path = path.into();
    move |source| LayerError::Io { op, path, source }
}
