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
    /// Retries of each build (the pipeline's or the Job's; the pod itself does not retry).
    pub retries: u32,
    /// What the pods are allowed.
    pub security: pod::PodSecurity,
}
