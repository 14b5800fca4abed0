//! The image a stage is building, as it changes step by step: its config, its layers, its history.

use oci_spec::image::Digest;

use crate::image::ImageConfig;

/// One layer of the image being built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    /// Digest of the (compressed) blob in the store.
    pub digest: Digest,
    /// Digest of the uncompressed tar (what the config's rootfs lists).
    pub diff_id: Digest,
    /// Blob size in bytes.
    pub size: u64,
    /// Media type of the blob as stored.
    pub media_type: String,
    /// A registry repository holding the blob when the store does not yet (a `--cache-from` hit, fetched
    /// only when a later step needs the layer's files).
    pub remote: Option<crate::image::Reference>,
}

/// The state of one stage's image between steps.
#[derive(Debug, Clone)]
pub struct ImageState {
    /// The image config (env, cmd, history, rootfs diff ids ...).
    pub config: ImageConfig,
    /// The layers, bottom first; their diff ids mirror `config.rootfs.diff_ids`.
    pub layers: Vec<LayerRef>,
    /// Set once this stage ran CMD: ENTRYPOINT then keeps it (the reference resets only an inherited CMD).
    pub cmd_set_in_stage: bool,
    /// How many layers came from the base image (for `--squash`).
    pub base_layers: usize,
    /// How many history entries came from the base image (for `--squash`).
    pub base_history: usize,
    /// The cache key of the last step (what a stage built on this one starts from).
    pub cache_key: Option<crate::cache::CacheKey>,
    /// The stage's ARGs and their values: a stage built on this one keeps them in scope (never in the
    /// image config), as BuildKit does.
    pub stage_args: Vec<(String, Option<String>)>,
}

impl ImageState {
    /// A stage starting from `config` and `layers` of its base (empty for `FROM scratch`).
    pub fn from_base(config: ImageConfig, layers: Vec<LayerRef>) -> Self {
        let base_layers = layers.len();
        let base_history = config.history.len();
        ImageState {
            config,
            layers,
            cmd_set_in_stage: false,
            base_layers,
            base_history,
            cache_key: None,
            stage_args: Vec::new(),
        }
    }

    /// The diff ids of all layers, bottom first.
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }
}
