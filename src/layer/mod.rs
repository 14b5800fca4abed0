//! OCI layer tars: writing them deterministically from entries, applying them safely to a directory,
//! whiteouts, compression, and turning an overlay upper directory or a changed tree into entries.
//!
//! Takes plain readers, writers and paths; knows nothing of the store or registries.

mod apply;
mod compress;
mod diff;
mod entry;
mod error;
mod pgzip;
mod write;

pub use apply::{ApplyOptions, ApplyStats, apply_layer, extract_archive};
pub use compress::{Compression, decompress};
pub use diff::{TreeStamps, copy_tree, diff_since, diff_trees, entries_from_overlay_upper, stamp_tree};
pub use entry::{Entry, EntryKind, FileSource, entries_from_dir, read_xattrs};
pub use error::LayerError;
pub use write::{LayerDigests, WriteOptions, write_layer};

#[cfg(test)]
mod tests;
