//! OCI layer tars: writing them deterministically from entries, applying them safely to a directory,
//! whiteouts, compression, and turning an overlay upper directory or a changed tree into entries.
//!
//! Takes plain readers, writers and paths; knows nothing of the store or registries.

mod apply;
mod chunks;
mod clone;
mod compress;
mod diff;
mod entry;
mod error;
mod hashpipe;
mod pgzip;
mod place;
mod populate;
mod prefetch;
mod tee;
mod unshare;
mod write;

pub use apply::{ApplyOptions, ApplyStats, apply_layer, apply_layer_sharing, extract_archive};
pub use chunks::{BlobMembers, ChunkIndex, MemberSource};
pub use clone::{Linked, link_tree, merge_upper};
pub use compress::{Compression, decompress};
pub use diff::{TreeStamps, copy_tree, diff_since, diff_trees, entries_from_overlay_upper, stamp_tree};
pub use entry::{Entry, EntryKind, FileSource, entries_from_dir, read_xattrs};
pub use error::LayerError;
pub use place::{Content, ContentDigest, Donor, FileNote, Item, ItemKind, Placed, Placer, xattrs_digest};
pub use populate::populate;
pub use tee::{TeeReader, TeeWriter, tee};
pub use unshare::unshare;
pub use write::{LayerDigests, LayerSink, WriteOptions, normalize, write_layer, write_normalized};

#[cfg(test)]
mod derive_tests;
#[cfg(test)]
mod tests;
