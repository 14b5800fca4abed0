//! Handing the graph to a cluster's own engine: [`tekton`] (a Task that runs kiln's image, a Pipeline
//! with one task per build and `runAfter` edges, a PipelineRun with per-build limits) or [`job`] (one
//! Kubernetes Job per build). The build pod's security settings live in [`pod`], in one place.

pub mod job;
pub mod pod;
pub mod tekton;

/// What the emitters need besides the graph.
#[derive(Debug, Clone)]
pub struct Options {
    /// The image holding kiln.
    pub kiln_image: String,
    /// Namespace of the emitted objects (none: the one `kubectl apply` uses).
    pub namespace: Option<String>,
    /// A registry repository the build pods share steps through (`--cache-to`/`--cache-from`).
    pub cache_repo: Option<String>,
    /// `--tls-verify` for the pods' registry traffic.
    pub tls_verify: bool,
    /// Push the images (pods have no store to keep them in).
    pub push: bool,
    /// Retries of each build.
    pub retries: u32,
}
