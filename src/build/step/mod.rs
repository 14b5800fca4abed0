//! One file per kind of step; this file is the one `match` that dispatches a resolved step and the
//! shared helper that turns entries into a layer in the store.
//!
//! Each step returns what it changed (a layer, or nothing beyond the config it edited) instead of
//! stashing it: the stage loop records history and moves on.

pub mod add;
pub mod config;
pub mod copy;
pub mod fetch;
pub mod glob;
mod parents;
pub mod run;
mod run_mounts;
mod through_links;
pub mod workdir;

use crate::build::events::Event;
use crate::build::stage::StageEnv;
use crate::build::state::{ImageState, LayerRef};
use crate::cache::{self, CacheKey};
use crate::layer::{self, Entry};
use crate::plan::ResolvedStep;
use crate::transfer::cache_repo;

/// Why a step failed (the stage loop adds the `Dockerfile:LINE` place).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Assembling a COPY/ADD failed.
    #[error(transparent)]
    Copy(#[from] copy::CopyError),
    /// Downloading an ADD URL failed.
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
    /// A config instruction has a bad argument.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A `--chown` user or group does not exist in the image.
    #[error(transparent)]
    User(#[from] crate::build::users::UserError),
    /// Writing or reading a layer failed.
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
    /// The store refused an operation.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A base or `--from` image could not be had.
    #[error(transparent)]
    Image(Box<crate::build::error::BuildError>),
    /// The step's arguments could not be resolved.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// Something kiln does not do (yet), said plainly.
    #[error("{0}")]
    Unsupported(String),
    /// The command exited non-zero (BuildKit's wording, so scripts that look for it find it).
    #[error("process \"{command}\" did not complete successfully: exit code: {code}{}", tail_text(tail))]
    RunFailed {
        /// Its exit code (128 + signal when killed).
        code: u8,
        /// The command as run (`/bin/sh -c ...`).
        command: String,
        /// Its last lines of output.
        tail: Vec<String>,
    },
    /// A layer from the registry cache could not be fetched.
    #[error("cannot fetch a cached layer: {0}")]
    Cache(#[source] Box<crate::registry::RegistryError>),
    /// The sandbox could not run the command.
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// A source file could not be read for the step's cache key.
    #[error(transparent)]
    Source(#[from] crate::cache::sources::SourceError),
    /// A tree the step reads (a snapshot, a mount source) could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The tree.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A temp file or directory for the step could not be made.
    #[error("cannot create a temporary file: {0}")]
    Temp(std::io::Error),
    /// CA trust, Nexus routing or the network policy could not be given to the step.
    #[error(transparent)]
    Supply(Box<crate::supply::SupplyError>),
    /// The proxy-only network's allow-list refused a download of kiln's own (an ADD URL).
    #[error("{0}")]
    Refused(String),
}

/// What a step did: the layer it added (if any), whether that came from the cache, its key, and the time
/// its history entry gets (the first run's, on a hit).
pub struct StepOutcome {
    /// The layer the step added.
    pub layer: Option<LayerRef>,
    /// Reused from the cache.
    pub cached: bool,
    /// The step's cache key (the next step's parent).
    pub key: CacheKey,
    /// History time of a step that makes layers (the first run's, on a hit); `None` for config-only steps,
    /// which take the time of the step before them.
    pub created: Option<String>,
}

/// Runs one resolved step on top of the step whose key is `parent`, reusing a cached result when
/// `use_cache` and the cache has one.
///
/// As in BuildKit, only filesystem steps extend the key chain: a config-only step (LABEL, CMD, EXPOSE ...)
/// changes no later step's key, while what a later step does depend on — USER and WORKDIR for RUN, WORKDIR
/// for COPY/ADD, ENV and ARGs through RUN's environment — enters that step's own key.
pub async fn execute(
    env: &StageEnv<'_>,
    state: &mut ImageState,
    step: &ResolvedStep,
    parent: &CacheKey,
    use_cache: bool,
    label: &str,
) -> Result<StepOutcome, StepError> {
    let repr = key_repr(step, state);
    match step {
        ResolvedStep::Copy(c) | ResolvedStep::Add(c) => {
            ensure_local(env.ctx, &state.layers).await?;
            let entries = add::entries(env, state, c, matches!(step, ResolvedStep::Add(_)), label).await?;
            let sources = cache::sources::digest(&entries, &env.ctx.stats)?;
            let key = parent.child(&repr, Some(&sources));
            cached_or_run(env, key, use_cache, async || write_layer(env, entries)).await
        }
        ResolvedStep::Workdir(dir) => {
            let key = parent.child(&repr, None);
            if let Some(hit) = lookup(env, &key, use_cache).await {
                config::workdir(&mut state.config, dir);
                return Ok(hit);
            }
            ensure_local(env.ctx, &state.layers).await?;
            let layer = workdir::execute(env, state, dir)?;
            Ok(remember(env, key, layer).await)
        }
        ResolvedStep::Run { cmd, shell, mounts, network, heredocs, env: vars, security: _, args: _ } => {
            let sources = run_mounts::bind_digest(env, mounts).await?;
            // What the supply chain gives the step (CA content, Nexus settings) decides its result too.
            let repr = match env.ctx.supply.key_part() {
                Some(part) => format!("{repr} supply={part}"),
                None => repr,
            };
            let key = parent.child(&repr, sources.as_deref());
            let step = run::RunStep { cmd, shell, heredocs, env: vars, mounts, network: network.as_deref(), label };
            let state: &ImageState = state;
            cached_or_run(env, key, use_cache, async || {
                ensure_local(env.ctx, &state.layers).await?;
                run::execute(env, state, &step).await
            })
            .await
        }
        other => {
            apply_config(env, state, other)?;
            Ok(StepOutcome { layer: None, cached: false, key: parent.clone(), created: None })
        }
    }
}

/// The step as it enters its key: the resolved step, plus the config it runs under (USER and WORKDIR for
/// RUN, WORKDIR for COPY/ADD, whose relative destinations depend on it).
fn key_repr(step: &ResolvedStep, state: &ImageState) -> String {
    let config = &state.config.config;
    match step {
        ResolvedStep::Run { .. } => format!("{step:?} user={:?} workdir={:?}", config.user, config.working_dir),
        ResolvedStep::Copy(_) | ResolvedStep::Add(_) => format!("{step:?} workdir={:?}", config.working_dir),
        other => format!("{other:?}"),
    }
}

async fn cached_or_run(
    env: &StageEnv<'_>,
    key: CacheKey,
    use_cache: bool,
    run: impl AsyncFnOnce() -> Result<Option<LayerRef>, StepError>,
) -> Result<StepOutcome, StepError> {
    if let Some(hit) = lookup(env, &key, use_cache).await {
        return Ok(hit);
    }
    // Another build on this store (`kiln bake -j`) may be computing the same step: wait for it, then look
    // again, so a step common to several images runs once.
    let _computing = if use_cache { Some(step_lock(env, &key).await?) } else { None };
    if _computing.is_some()
        && let Some(hit) = lookup(env, &key, use_cache).await
    {
        return Ok(hit);
    }
    let layer = run().await?;
    Ok(remember(env, key, layer).await)
}

/// The store lock for computing `key` (one of 256 stripes by the key's first byte, so the lock files stay
/// few); polled, so no runtime thread blocks while another process holds it.
async fn step_lock(env: &StageEnv<'_>, key: &CacheKey) -> Result<crate::store::StoreLock, StepError> {
    let name = format!("step-{}", &key.hex()[..2]);
    loop {
        if let Some(lock) = env.ctx.store.try_lock(&name)? {
            return Ok(lock);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The step's result from the local cache, else from the `--cache-from` repositories (recorded locally).
async fn lookup(env: &StageEnv<'_>, key: &CacheKey, use_cache: bool) -> Option<StepOutcome> {
    if !use_cache {
        return None;
    }
    let (record, remote) = match env.ctx.cache.get(env.ctx.store, key) {
        Some(record) => (record, None),
        None => {
            let (record, repo) = remote_lookup(env, key).await?;
            env.ctx.cache.put(key, &record);
            (record, Some(repo))
        }
    };
    share(env, key, &record).await;
    let created = record.created.clone();
    let layer = record.layer.map(|l| LayerRef {
        digest: l.digest,
        diff_id: l.diff_id,
        size: l.size,
        media_type: l.media_type,
        remote: remote.clone(),
    });
    Some(StepOutcome { layer, cached: true, key: key.clone(), created: Some(created) })
}

/// The record of `key` in the first `--cache-from` repository that has it, and that repository.
async fn remote_lookup(env: &StageEnv<'_>, key: &CacheKey) -> Option<(cache::Record, crate::image::Reference)> {
    for repo in &env.ctx.options.cache_from {
        let Ok(reference) = crate::image::Reference::parse_with_search(repo, &env.ctx.options.search_registries) else {
            env.ctx.reporter.report(Event::Warning(format!("--cache-from {repo}: not a repository reference")));
            continue;
        };
        match cache_repo::fetch_record(env.ctx.client, &reference, key).await {
            Ok(Some(record)) => return Some((record, reference)),
            Ok(None) => {}
            Err(e) => env.ctx.reporter.report(Event::Warning(format!("--cache-from {repo}: {e}"))),
        }
    }
    None
}

/// Publishes the step's record to `--cache-to`; a failure is a warning, never a failed build.
async fn share(env: &StageEnv<'_>, key: &CacheKey, record: &cache::Record) {
    let Some(repo) = &env.ctx.options.cache_to else { return };
    let result = match crate::image::Reference::parse_with_search(repo, &env.ctx.options.search_registries) {
        Ok(reference) => {
            cache_repo::publish(env.ctx.client, env.ctx.store, &reference, key, record).await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = result {
        env.ctx.reporter.report(Event::Warning(format!("--cache-to {repo}: {e}")));
    }
}

async fn remember(env: &StageEnv<'_>, key: CacheKey, layer: Option<LayerRef>) -> StepOutcome {
    let cached_layer = layer.as_ref().map(|l| cache::CachedLayer {
        digest: l.digest.clone(),
        diff_id: l.diff_id.clone(),
        size: l.size,
        media_type: l.media_type.clone(),
    });
    let record = cache::Record { layer: cached_layer, created: env.ctx.created_rfc3339.clone() };
    env.ctx.cache.put(&key, &record);
    share(env, &key, &record).await;
    StepOutcome { layer, cached: false, key, created: Some(record.created) }
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let lines: Vec<String> = tail.iter().map(|l| format!("  | {l}")).collect();
    format!("\n  last output:\n{}", lines.join("\n"))
}

/// The steps that only edit the config.
fn apply_config(env: &StageEnv<'_>, state: &mut ImageState, step: &ResolvedStep) -> Result<(), StepError> {
    let shell = env.shell(state);
    match step {
        ResolvedStep::Cmd(line) => config::cmd(state, line, &shell),
        ResolvedStep::Entrypoint(line) => config::entrypoint(state, line, &shell),
        ResolvedStep::Env(pairs) => config::env(&mut state.config, pairs),
        ResolvedStep::Label(pairs) => config::labels(&mut state.config, pairs),
        ResolvedStep::Expose(ports) => config::expose(&mut state.config, ports)?,
        ResolvedStep::User(user) => config::user(&mut state.config, user),
        ResolvedStep::Volume(paths) => config::volumes(&mut state.config, paths),
        ResolvedStep::Shell(shell) => config::shell(&mut state.config, shell),
        ResolvedStep::Stopsignal(signal) => config::stop_signal(&mut state.config, signal),
        ResolvedStep::Healthcheck(check) => config::healthcheck(&mut state.config, config::health_config(check)),
        ResolvedStep::Onbuild(trigger) => config::onbuild(&mut state.config, trigger),
        ResolvedStep::Maintainer(name) => config::maintainer(&mut state.config, name),
        ResolvedStep::Arg(_)
        | ResolvedStep::Copy(_)
        | ResolvedStep::Add(_)
        | ResolvedStep::Workdir(_)
        | ResolvedStep::Run { .. } => {}
    }
    Ok(())
}

/// Opens a tree a step reads but does not own (a snapshot, a scratch directory of downloads) as a root that
/// every path in it is resolved inside.
pub(crate) fn open_root(path: &std::path::Path) -> Result<std::sync::Arc<crate::confine::Root>, StepError> {
    crate::confine::Root::open(path)
        .map(std::sync::Arc::new)
        .map_err(|source| StepError::Open { path: path.to_path_buf(), source })
}

/// Writes `entries` as the step's layer blob in the store. A step that changed nothing still gets a layer
/// (an empty tar), as in BuildKit, where every RUN, COPY, ADD and WORKDIR commits one.
pub fn write_layer(env: &StageEnv<'_>, entries: Vec<Entry>) -> Result<Option<LayerRef>, StepError> {
    write_layer_with(env.ctx, entries, true)
}

/// [`write_layer`] for callers outside a stage (squash); with `keep_empty` false, no entries give no layer.
pub fn write_layer_with(
    ctx: &crate::build::BuildCtx<'_>,
    entries: Vec<Entry>,
    keep_empty: bool,
) -> Result<Option<LayerRef>, StepError> {
    if entries.is_empty() && !keep_empty {
        return Ok(None);
    }
    let opts = layer::WriteOptions { compression: ctx.options.compression, source_date_epoch: ctx.epoch, level: None };
    let mut writer = ctx.store.ingest()?;
    let digests = layer::write_layer(entries, &mut writer, &opts)?;
    let (digest, size) = writer.commit(Some(&digests.digest))?;
    Ok(Some(LayerRef {
        digest,
        diff_id: digests.diff_id,
        size,
        media_type: ctx.options.compression.media_type(true).to_string(),
        remote: None,
    }))
}

/// Fetches the blobs of `layers` that are only in a `--cache-from` repository, before a step reads them.
pub async fn ensure_local(ctx: &crate::build::BuildCtx<'_>, layers: &[LayerRef]) -> Result<(), StepError> {
    for layer in layers {
        if let Some(repo) = &layer.remote
            && !ctx.store.has_blob(&layer.digest)
        {
            ctx.info(format!("fetching cached layer {} from {repo}", layer.digest));
            cache_repo::fetch_layer(ctx.client, ctx.store, repo, &layer.digest)
                .await
                .map_err(|e| StepError::Cache(Box::new(e)))?;
        }
    }
    Ok(())
}
