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
mod placed;
pub mod run;
mod run_mounts;
mod snapshot;
mod through_links;
pub mod workdir;

use crate::build::events::Event;
use crate::build::stage::StageEnv;
use crate::build::state::{ImageState, LayerRef};
use crate::cache::lineage::{Position, Previous};
use crate::cache::{self, CacheKey};
use std::sync::Arc;

use crate::layer::{self, Entry, MemberSource};
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
    /// A file the supply places in the step's tree (a CA bundle) could not be written or put back.
    #[error("cannot {action} kiln's file at {path} in the step's rootfs: {source}")]
    Placed {
        /// What was being done.
        action: &'static str,
        /// The in-image path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
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
/// `use_cache` and the cache has one. `rootfs_read_later`: a later step (or stage) reads the rootfs this
/// step leaves, so a COPY makes its snapshot while it writes its layer.
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
    rootfs_read_later: bool,
) -> Result<StepOutcome, StepError> {
    let repr = key_repr(step, state);
    match step {
        ResolvedStep::Copy(c) | ResolvedStep::Add(c) => {
            ensure_local(env.ctx, &state.layers).await?;
            let entries = add::entries(env, state, c, matches!(step, ResolvedStep::Add(_)), label).await?;
            let (sources, files) = cache::sources::digest_with_files(&entries, &env.ctx.stats)?;
            let key = parent.child(&repr, Some(&sources));
            let position = Position::of(parent, &repr);
            let below = state.diff_ids();
            cached_or_run(env, key, use_cache, &below, async || match rootfs_read_later {
                true => snapshot::write_with_snapshot(env, state, &position, entries, &files),
                false => write_layer(env, state, &position, entries),
            })
            .await
        }
        ResolvedStep::Workdir(dir) => {
            let key = parent.child(&repr, None);
            if let Some(hit) = lookup(env, &key, use_cache).await {
                config::workdir(&mut state.config, dir);
                return Ok(hit);
            }
            ensure_local(env.ctx, &state.layers).await?;
            let below = state.diff_ids();
            let layer = workdir::execute(env, state, dir, &Position::of(parent, &repr))?;
            Ok(remember(env, key, layer, &below).await)
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
            let position = Position::of(parent, &repr);
            let below = state.diff_ids();
            cached_or_run(env, key, use_cache, &below, async || {
                ensure_local(env.ctx, &state.layers).await?;
                run::execute(env, state, &step, &position).await
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
    below: &[oci_spec::image::Digest],
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
    if has_run(env.plan) {
        env.ctx.probe_sandbox_ahead();
    }
    let layer = run().await?;
    Ok(remember(env, key, layer, below).await)
}

/// Whether a stage of `plan` has a RUN step: a step that misses the cache then starts the sandbox probe.
fn has_run(plan: &crate::plan::Plan) -> bool {
    use crate::dockerfile::instruction::Command;
    plan.stages.iter().any(|s| s.instructions.iter().any(|i| matches!(i.command, Command::Run(_))))
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

/// Records the step's result under `key`; `below` is the chain the step ran on.
async fn remember(
    env: &StageEnv<'_>,
    key: CacheKey,
    layer: Option<LayerRef>,
    below: &[oci_spec::image::Digest],
) -> StepOutcome {
    let cached_layer = layer.as_ref().map(|l| cache::CachedLayer {
        digest: l.digest.clone(),
        diff_id: l.diff_id.clone(),
        size: l.size,
        media_type: l.media_type.clone(),
    });
    let mut chain = below.to_vec();
    chain.extend(layer.as_ref().map(|l| l.diff_id.clone()));
    let chain = (!chain.is_empty()).then(|| crate::image::chain_id(&chain));
    let record = cache::Record { layer: cached_layer, created: env.ctx.created_rfc3339.clone(), chain };
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

/// [`open_root`] on a leased snapshot, the lease held by the root: no other build takes or changes the tree
/// while anything resolved in it (the entries of a `COPY --from`) is still to be read.
pub(crate) fn open_leased(lease: crate::store::Lease) -> Result<std::sync::Arc<crate::confine::Root>, StepError> {
    let path = lease.tree().to_path_buf();
    crate::confine::Root::open(&path)
        .map(|root| std::sync::Arc::new(root.holding(lease)))
        .map_err(|source| StepError::Open { path, source })
}

/// Writes `entries` as the layer the step at `position` puts on `state`. A step that changed nothing still
/// gets a layer (an empty tar), as in BuildKit, where every RUN, COPY, ADD and WORKDIR commits one. The gzip members of chunks the previous layer made at this position holds are copied from it, and
/// the new layer is remembered there for the next run.
pub fn write_layer(
    env: &StageEnv<'_>,
    state: &ImageState,
    position: &Position,
    entries: Vec<Entry>,
) -> Result<Option<LayerRef>, StepError> {
    let previous = env.ctx.lineage.previous(position);
    write_normalized_layer(env, state, position, previous.as_ref(), &layer::normalize(entries), None)
}

/// [`write_layer`] for entries already `layer::normalize`d, handing each file's bytes to `tee` as they are
/// read (the snapshot filled at the same time, `snapshot.rs`); `previous` is what the step at `position` made
/// last time (read once by the caller, which may need it for the snapshot too).
pub(crate) fn write_normalized_layer(
    env: &StageEnv<'_>,
    state: &ImageState,
    position: &Position,
    previous: Option<&Previous>,
    entries: &[Entry],
    tee: Option<&layer::TeeWriter>,
) -> Result<Option<LayerRef>, StepError> {
    let lineage = &env.ctx.lineage;
    let reuse = previous.and_then(|p| members_of(env.ctx, &p.layer.digest));
    let Some(layer) = write_layer_with(env.ctx, entries, reuse, tee, true)? else { return Ok(None) };
    let mut diff_ids = state.diff_ids();
    diff_ids.push(layer.diff_id.clone());
    let cached = cache::CachedLayer {
        digest: layer.digest.clone(),
        diff_id: layer.diff_id.clone(),
        size: layer.size,
        media_type: layer.media_type.clone(),
    };
    lineage.remember(position, &Previous { layer: cached, chain: crate::image::chain_id(&diff_ids) });
    Ok(Some(layer))
}

/// The gzip members of the blob `digest`, when the store has it and its member index.
fn members_of(ctx: &crate::build::BuildCtx<'_>, digest: &oci_spec::image::Digest) -> Option<Arc<dyn MemberSource>> {
    if ctx.options.compression != layer::Compression::Gzip {
        return None;
    }
    let index = ctx.lineage.chunk_index(digest)?;
    let file = ctx.store.open_blob(digest).ok()?;
    Some(Arc::new(layer::BlobMembers::new(file, index)))
}

/// Writes `entries` (`layer::normalize`d) as a layer blob in the store, copying the gzip members `reuse`
/// has and handing file bytes to `tee`. For callers outside a stage too (squash): with `keep_empty` false,
/// no entries give no layer.
pub fn write_layer_with(
    ctx: &crate::build::BuildCtx<'_>,
    entries: &[Entry],
    reuse: Option<Arc<dyn MemberSource>>,
    tee: Option<&layer::TeeWriter>,
    keep_empty: bool,
) -> Result<Option<LayerRef>, StepError> {
    if entries.is_empty() && !keep_empty {
        return Ok(None);
    }
    let opts =
        layer::WriteOptions { compression: ctx.options.compression, source_date_epoch: ctx.epoch, level: None, reuse };
    let mut writer = ctx.store.ingest()?;
    let digests = layer::write_normalized(entries, &mut writer, &opts, tee)?;
    let (digest, size) = writer.commit(Some(&digests.digest))?;
    if let Some(index) = &digests.chunks {
        ctx.lineage.put_chunk_index(&digest, index);
    }
    Ok(Some(LayerRef {
        digest,
        diff_id: digests.diff_id,
        size,
        media_type: ctx.options.compression.media_type(true).to_string(),
        remote: None,
    }))
}

/// The store's blob writer hashes what it writes: the layer writer takes that digest instead of hashing the
/// compressed bytes a second time (the blob's own check at commit is then the same hash).
impl layer::LayerSink for crate::store::BlobWriter {
    fn own_digest(&self) -> Option<(oci_spec::image::Digest, u64)> {
        Some(self.written())
    }
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
