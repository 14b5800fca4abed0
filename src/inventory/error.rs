//! Inventory errors: each names the layer or the cache file involved. A file inside the image that cannot be
//! parsed is not an error (it becomes a note in the inventory); a layer that cannot be read is.

use std::path::PathBuf;

/// Why an image's inventory could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// A layer's tar stream is broken or could not be read.
    #[error("inventory: cannot read layer {layer}: {source}")]
    Layer {
        /// The layer digest.
        layer: String,
        /// The I/O or tar error.
        source: std::io::Error,
    },
    /// The image's manifest or config is not what an image needs.
    #[error("inventory: image {digest} is not valid: {message}")]
    BadImage {
        /// The manifest digest.
        digest: String,
        /// What is wrong.
        message: String,
    },
    /// The store could not provide a blob.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Writing the per-layer cache failed.
    #[error("inventory: cannot write the cache file {path}: {source}")]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}
