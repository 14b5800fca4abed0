//! Store errors: each names the operation and the path or digest.

use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("store: cannot {op} {path}: {source}")]
    Io {
        /// What was being done (`create`, `rename`, `read` ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Content did not match the digest it was expected to have.
    #[error("store: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest asked for.
        expected: String,
        /// The digest of what was written.
        actual: String,
    },
    /// A blob is not in the store.
    #[error("store: blob {0} is missing (run the build again, or `kiln pull` the image)")]
    MissingBlob(String),
    /// The store was written by a newer kiln.
    #[error("store {path} has format version {found}; this kiln understands version {supported}")]
    Version {
        /// The store root.
        path: PathBuf,
        /// The version found on disk.
        found: String,
        /// The version this build supports.
        supported: u32,
    },
    /// index.json or a manifest could not be decoded.
    #[error("store: {path} is not valid: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        message: String,
    },
    /// A snapshot could not be filled.
    #[error("store: cannot create snapshot {chain_id}: {message}")]
    Snapshot {
        /// The chain id.
        chain_id: String,
        /// What went wrong while filling it.
        message: String,
    },
}

/// Wraps an io error with its operation and path.
pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { op, path, source }
}
