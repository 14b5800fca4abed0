//! kiln's integration tests: real builds checked by tools nobody here wrote (skopeo, umoci, podman),
//! pushes to a real registry on 127.0.0.1. One binary; `harness` keeps each test a few lines.

mod harness;

mod attestations;
mod bake;
mod build_checks;
mod build_pod;
mod buildkit_cases;
mod cache;
mod config_instructions;
mod confinement;
mod copy_and_add;
mod errors;
mod exports;
mod inventory;
mod policy_checks;
mod registry_flow;
mod run_steps;
mod snapshots;
mod store_safety;
mod supply;
