//! `build` (see lib.rs for its place in the pipeline).
pub mod context;
