//! `image` (see lib.rs for its place in the pipeline).
