//! Attestations: what went into an image (an SBOM, SPDX 2.3 or CycloneDX 1.5, from the inventory) and how
//! it was made (a SLSA v1 provenance statement in in-toto form), stored and pushed as OCI 1.1 referrers of
//! the image manifest — with the distribution spec's tag fallback (`sha256-<hex>`) for registries without
//! the referrers API — and read back.
//!
//! Must not know the Dockerfile's rules or the policy; the builder hands it what the build did.

pub mod fetched;
pub mod provenance;
pub mod referrers;
pub mod sbom;
