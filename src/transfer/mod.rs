//! Moving images between the store and the outside: pull from a registry into the store, push from the
//! store to a registry, and export to an OCI layout directory, an `oci-archive` or a `docker-archive`.
//!
//! This is where the store meets the `registry` module: the registry client knows nothing of the store
//! and sees it only through the small blob traits implemented in `store_io`.

pub mod cache_repo;
pub mod destination;
pub mod export;
pub mod pull;
pub mod push;
pub mod store_io;
