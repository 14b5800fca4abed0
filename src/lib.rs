//! kiln — a daemonless, rootless container image builder.
//!
//! The modules follow the build pipeline, top to bottom:
//!
//! ```text
//!  dockerfile  text → syntax tree → typed instructions; word expansion; .dockerignore
//!  confine     paths inside trees kiln does not own (context, rootfs, layer, mount source), via handles
//!  plan        instructions + build options → stages and steps with resolved arguments
//!  image       references, manifests, image configs (oci-spec types)
//!  store       content-addressed blobs (an OCI image layout), tags, snapshots
//!  layer       tar writing/reading, whiteouts, compression, digests in one pass
//!  sandbox     one command in a rootfs, inside user/mount/pid namespaces
//!  supply      company CA trust, Nexus routing and the proxy-only network of RUN steps; the CA layer
//!  registry    OCI distribution client: pull, push, auth, TLS
//!  transfer    images between the store and registries or export formats
//!  build       one build: the step loop, wiring the modules above together
//!  inventory   facts read from an image's layers (OS, packages, runtimes), cached per layer
//!  policy      rules over a Dockerfile plan, an inventory and a fetch log → findings (text/JSON/SARIF)
//!  attest      SBOM and provenance documents; OCI referrers in the store and on registries
//!  bake        many builds: BuildConfigs / kiln-bake.toml → a graph; worker processes; Tekton/Job emitters
//!  cli         flags → library calls, output, exit codes
//!  sys         the only `unsafe` code (fork, signals, prctl, ioctls, listxattrat), each call's invariant stated
//! ```
//!
//! Import rules: `sys` is a leaf any module may use; `dockerfile` and `confine` import nothing else of kiln; `plan` imports `dockerfile` and `image`;
//! `store`, `layer`, `sandbox` and `registry` take plain readers, writers and paths and import only
//! `image` and `confine`; only `transfer`, `build`, `inventory` (layers, its cache), `attest` (referrers) and the `cli` edge
//! know the store; `policy` sees plans, inventories and fetch records only; `bake` drives `build` through
//! `BuildOptions` and never looks inside a step.

pub mod attest;
pub mod bake;
pub mod build;
pub mod cache;
pub mod cli;
pub mod confine;
pub mod dockerfile;
pub mod image;
pub mod inventory;
pub mod layer;
pub mod plan;
pub mod policy;
pub mod registry;
pub mod sandbox;
pub mod store;
pub mod supply;
pub mod sys;
pub mod transfer;
