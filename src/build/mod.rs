//! One build, start to finish: parse, plan, run the needed stages in dependency order, commit the target
//! stage as an image and name it. The only module that knows the store besides the CLI edge.
//!
//! ```text
//!  build()  → dockerfile::parse → plan::plan → for each needed stage: stage::run
//!  stage::run → base (scratch | image | stage) → ONBUILD triggers → step::execute per instruction
//!  step::execute → config edits | COPY/ADD entries → layer::write_layer → store
//!  commit → config + manifest blobs → store tags
//! ```

pub mod checks;
pub mod commit;
pub mod context;
pub mod error;
pub mod events;
pub mod evidence;
pub mod history;
pub mod options;
pub mod rootfs;
pub mod squash;
pub mod stage;
pub mod state;
pub mod step;
pub mod users;

mod base;
mod ca_layer;

use std::collections::HashMap;

use oci_spec::image::Descriptor;

pub use base::{load as load_image, local_name, looks_qualified};
pub use commit::ImageFormat;
pub use error::BuildError;
pub use options::{BuildOptions, PullPolicy};

use crate::build::context::Context;
use crate::build::events::{Event, Reporter};
use crate::build::stage::StageEnv;
use crate::image::Platform;
use crate::plan::{self, Plan, PlanOptions};
use crate::registry::Client;
use crate::store::Store;

/// The shared, read-only state of one build.
pub struct BuildCtx<'a> {
    /// The store images and layers go to.
    pub store: &'a Store,
    /// The registry client for base images.
    pub client: &'a Client,
    /// Plain HTTP(S) client for ADD URLs.
    pub http: step::fetch::Http,
    /// The build's options.
    pub options: &'a BuildOptions,
    /// Where events go.
    pub reporter: &'a dyn Reporter,
    /// The platform images are built for (the host's).
    pub platform: Platform,
    /// The Dockerfile's name for messages (`Dockerfile:12`).
    pub file_label: String,
    /// `SOURCE_DATE_EPOCH` (build argument, global ARG default or environment): clamps file times and
    /// fixes every `created` time.
    pub epoch: Option<i64>,
    /// Timestamp (seconds) for things this build creates.
    pub created_at: i64,
    /// The same timestamp in RFC 3339, for configs and history.
    pub created_rfc3339: String,
    /// The step cache's records.
    pub cache: crate::cache::Cache,
    /// What earlier runs of the same steps left (layers to reuse gzip members of, snapshots to link from).
    pub lineage: crate::cache::lineage::Lineage,
    /// Remembered file digests for source hashing.
    pub stats: crate::cache::sources::StatCache,
    /// Full snapshots this build created and no one else has used yet: a chroot-mode RUN may claim them.
    pub owned_snapshots: std::sync::Mutex<std::collections::HashSet<oci_spec::image::Digest>>,
    /// Steps run and steps taken from the cache, for the closing line.
    pub counts: (std::sync::atomic::AtomicUsize, std::sync::atomic::AtomicUsize),
    /// The sandbox RUN steps use, found at the first RUN (a failure is kept as its message).
    pub sandbox: std::sync::OnceLock<Result<crate::sandbox::Sandbox, String>>,
    /// The sandbox probe started ahead of the first RUN, while an earlier step works.
    pub sandbox_ahead: std::sync::Mutex<SandboxAhead>,
    /// CA trust, Nexus routing and egress for RUN steps.
    pub supply: crate::supply::Supply,
    /// Base images and downloads, recorded for provenance.
    pub evidence: evidence::Recorder,
}

/// Where the sandbox probe started ahead stands.
#[derive(Debug, Default)]
pub enum SandboxAhead {
    /// Not started.
    #[default]
    Idle,
    /// Probing on its own thread.
    Probing(std::thread::JoinHandle<Result<crate::sandbox::Sandbox, String>>),
    /// Taken by the first RUN: the sandbox is known (or its failure) and no probe starts again.
    Done,
}

impl BuildCtx<'_> {
    /// Reports an informational line.
    pub fn info(&self, text: String) {
        self.reporter.report(Event::Info(text));
    }

    /// Starts finding the sandbox on a thread of its own, so that the probe (a re-executed child trying
    /// namespaces and mounts, ~15 ms) runs beside the step that works now instead of before the first RUN.
    pub fn probe_sandbox_ahead(&self) {
        let mut ahead = self.sandbox_ahead.lock().unwrap_or_else(|p| p.into_inner());
        if !matches!(*ahead, SandboxAhead::Idle) {
            return;
        }
        let Ok(scratch) = self.store.temp_dir() else { return };
        let isolation = self.options.isolation;
        let spawned = std::thread::Builder::new()
            .name("kiln-sandbox-probe".into())
            .spawn(move || detect_sandbox(isolation, scratch.path()));
        *ahead = match spawned {
            Ok(thread) => SandboxAhead::Probing(thread),
            Err(_) => SandboxAhead::Idle,
        };
    }

    /// The sandbox for RUN steps, detected once per build.
    pub fn sandbox(&self) -> Result<crate::sandbox::Sandbox, step::StepError> {
        let found = self.sandbox.get_or_init(|| {
            let ahead = std::mem::replace(
                &mut *self.sandbox_ahead.lock().unwrap_or_else(|p| p.into_inner()),
                SandboxAhead::Done,
            );
            let found = match ahead {
                SandboxAhead::Probing(thread) => {
                    thread.join().unwrap_or_else(|_| Err("the sandbox probe thread panicked".to_string()))
                }
                SandboxAhead::Idle | SandboxAhead::Done => {
                    let scratch = self.store.temp_dir().map_err(|e| e.to_string())?;
                    detect_sandbox(self.options.isolation, scratch.path())
                }
            }?;
            self.info(format!("RUN isolation: {found}"));
            Ok(found)
        });
        found.clone().map_err(|message| step::StepError::Sandbox(crate::sandbox::SandboxError::Unavailable(message)))
    }
}

/// The sandbox this process can have, or why none: what [`BuildCtx::sandbox`] keeps.
fn detect_sandbox(
    isolation: crate::sandbox::Requested,
    scratch: &std::path::Path,
) -> Result<crate::sandbox::Sandbox, String> {
    crate::sandbox::detect(isolation, scratch).map_err(|e| match e {
        crate::sandbox::SandboxError::Unavailable(why) => why,
        other => other.to_string(),
    })
}

/// What a successful build produced.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    /// The image ID: the config digest's hex.
    pub image_id: String,
    /// The manifest as stored.
    pub manifest: Descriptor,
    /// The names given to it.
    pub tags: Vec<String>,
    /// Repositories that hold layers the store lacks (for the push to mount from).
    pub mount_from: Vec<crate::image::Reference>,
    /// Tagged in the local store (false when its layers stayed in the registry cache).
    pub local: bool,
    /// Base images and downloads, for provenance.
    pub recorded: evidence::Recorded,
}

/// Parses and plans a Dockerfile without building it (for `--dry-run`); build checks run silently and
/// fail it only under `error=true`.
pub fn load_plan(options: &BuildOptions) -> Result<(Plan, String), BuildError> {
    load_checked_plan(options, &events::Silent).map(|(plan, label, _)| (plan, label))
}

/// Reads and parses the Dockerfile; the label names it in messages. When an instruction does not parse,
/// the build checks on the instructions before it are reported first, as BuildKit does.
pub fn parse_dockerfile(
    options: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<(crate::dockerfile::Dockerfile, String), BuildError> {
    let source = fs_err::read_to_string(&options.dockerfile)
        .map_err(|source| BuildError::ReadDockerfile { path: options.dockerfile.clone(), source })?;
    let label = options.dockerfile.display().to_string();
    match crate::dockerfile::parse(&source, &label) {
        Ok(parsed) => Ok((parsed, label)),
        Err(error) => {
            checks::before_error(&source, &error, options, reporter);
            Err(error.into())
        }
    }
}

/// Parses, runs the build checks (findings to `reporter`, before any planning error as in BuildKit) and
/// plans.
fn load_checked_plan(
    options: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<(Plan, String, crate::dockerfile::Dockerfile), BuildError> {
    let (parsed, label) = parse_dockerfile(options, reporter)?;
    checks::run(&parsed, options, reporter)?;
    let mut build_args = options.build_args.clone();
    // The environment's SOURCE_DATE_EPOCH is a build argument unless one is given (as buildx does).
    if let Some(epoch) = options.source_date_epoch {
        build_args.entry("SOURCE_DATE_EPOCH".to_string()).or_insert_with(|| epoch.to_string());
    }
    let plan_options = PlanOptions {
        build_args,
        target: options.target.clone(),
        from_override: options.from_override.clone(),
        from_rule: options.from_rule,
        stage_env: options.stage_env.clone(),
        platform: None,
    };
    let plan = plan::plan(&parsed.instructions, parsed.escape, &label, &plan_options)?;
    Ok((plan, label, parsed))
}

/// Runs a whole build and stores its result under `options.tags`.
pub async fn build(
    store: &Store,
    client: &Client,
    options: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<BuildOutcome, BuildError> {
    let (mut plan, file_label, parsed) = load_checked_plan(options, reporter)?;
    for warning in &plan.warnings {
        reporter.report(Event::Warning(warning.clone()));
    }
    let _lock = store.lock_shared()?;
    let context = Context::open(&options.context, &options.dockerfile)?;
    let http = step::fetch::Http::new(options.fetch_timeouts, client.roots());
    if let Some(plan::Epoch::Remote { url, checksum }) = plan.epoch.clone() {
        let seconds =
            step::fetch::source_time(&http, &url, checksum.as_deref()).await.map_err(|e| BuildError::Step {
                location: file_label.clone(),
                instruction: "SOURCE_DATE_EPOCH".to_string(),
                source: e.into(),
            })?;
        plan.set_epoch(seconds);
    }
    let epoch = plan.source_date_epoch();
    let created_at = epoch.unwrap_or_else(now);
    let supply = crate::supply::Supply::start(&options.supply, store.kiln_dir().join("supply"))
        .map_err(|e| BuildError::Supply(Box::new(e)))?;
    let ctx = BuildCtx {
        store,
        client,
        http,
        supply,
        options,
        reporter,
        platform: Platform::host(),
        file_label,
        epoch,
        created_at,
        created_rfc3339: rfc3339(created_at),
        sandbox: std::sync::OnceLock::new(),
        sandbox_ahead: Default::default(),
        cache: crate::cache::Cache::open(store),
        lineage: crate::cache::lineage::Lineage::open(store),
        stats: crate::cache::sources::StatCache::load(crate::cache::stat_cache_path(store)),
        counts: Default::default(),
        owned_snapshots: Default::default(),
        evidence: Default::default(),
    };
    let started = std::time::Instant::now();
    let bases = resolve_image_bases(&ctx, &mut plan).await?;
    checks::run_stages(&parsed, options, &plan, &bases, reporter)?;
    let mut done: HashMap<usize, crate::build::state::ImageState> = HashMap::new();
    for &index in &plan.order {
        let env = StageEnv { ctx: &ctx, context: &context, plan: &plan, done: &done, bases: &bases };
        let state = stage::run(&env, index).await?;
        done.insert(index, state);
    }
    let mut final_state = done.remove(&plan.target).ok_or_else(|| BuildError::BadImage {
        digest: format!("stage {}", plan.target),
        message: "the target stage was not built".to_string(),
    })?;
    if options.squash {
        step::ensure_local(&ctx, &final_state.layers).await.map_err(|e| BuildError::Step {
            location: ctx.file_label.clone(),
            instruction: "--squash".to_string(),
            source: e,
        })?;
        squash::squash(&ctx, &mut final_state)?;
    }
    if !options.labels.is_empty() {
        step::config::labels(&mut final_state.config, &options.labels);
    }
    if ctx.supply.persist() {
        ca_layer::add(&ctx, &mut final_state).await?;
    }
    // The newest history time: the build's own, or — when every step came from the cache — the time the
    // cached steps first ran, so an unchanged rebuild yields the same image ID.
    let newest = final_state.config.history.iter().filter_map(|h| h.created.clone()).max();
    final_state.config.created = Some(match (ctx.epoch, newest) {
        (None, Some(newest)) => newest,
        _ => ctx.created_rfc3339.clone(),
    });
    ctx.stats.save();
    if let Some(summary) = ctx.supply.summary() {
        ctx.info(summary);
    }
    for request in ctx.supply.requests() {
        ctx.evidence.fetched(evidence::proxy_request(&request));
    }
    let (steps, cached) = (&ctx.counts.0, &ctx.counts.1);
    let ordering = std::sync::atomic::Ordering::Relaxed;
    ctx.info(format!(
        "{} steps, {} cached, {:.2}s",
        steps.load(ordering),
        cached.load(ordering),
        started.elapsed().as_secs_f64()
    ));
    let committed = commit::commit(store, &final_state, options.format)?;
    let remote: Vec<&state::LayerRef> =
        final_state.layers.iter().filter(|l| l.remote.is_some() && !store.has_blob(&l.digest)).collect();
    let mount_from: Vec<crate::image::Reference> = remote.iter().filter_map(|l| l.remote.clone()).collect();
    // Mounting works only within one registry: every destination must be where the cached layers are.
    let same_registry = !options.tags.is_empty()
        && options.tags.iter().all(|t| {
            crate::image::Reference::parse(t).is_ok_and(|t| mount_from.iter().all(|m| m.registry() == t.registry()))
        });
    if !remote.is_empty() && options.layers_may_stay_remote && same_registry {
        // Pushed right after to the registry that has these layers: mounted there, never downloaded. The
        // store never names an image whose blobs it lacks, so this one is not tagged locally.
        ctx.info(format!(
            "{} layers stay in the registry cache; the image is not kept in the local store",
            remote.len()
        ));
        return Ok(BuildOutcome {
            image_id: committed.config.digest().to_string(),
            manifest: committed.manifest,
            tags: options.tags.clone(),
            mount_from,
            local: false,
            recorded: ctx.evidence.take(),
        });
    }
    step::ensure_local(&ctx, &final_state.layers).await.map_err(|e| BuildError::Step {
        location: ctx.file_label.clone(),
        instruction: "fetching cached layers".to_string(),
        source: e,
    })?;
    for tag in &options.tags {
        store.set_tag(tag, &committed.manifest)?;
    }
    if options.tags.is_empty() {
        store.set_tag(&format!("localhost/untagged:{}", &committed.config.digest()[..12]), &committed.manifest)?;
    }
    Ok(BuildOutcome {
        image_id: committed.config.digest().to_string(),
        manifest: committed.manifest,
        tags: options.tags.clone(),
        mount_from: Vec::new(),
        local: true,
        recorded: ctx.evidence.take(),
    })
}

/// Resolves the base image of every needed stage built on an image, before any stage runs: their ONBUILD
/// triggers may read from stages of this Dockerfile (`COPY --from=NAME`, `RUN --mount=from=NAME`), which
/// then have to be built first — as BuildKit resolves base images before it dispatches a stage.
async fn resolve_image_bases(
    ctx: &BuildCtx<'_>,
    plan: &mut Plan,
) -> Result<HashMap<usize, crate::build::state::ImageState>, BuildError> {
    let mut bases = HashMap::new();
    loop {
        let mut added = false;
        for index in plan.order.clone() {
            let plan::Base::Image(name) = &plan.stages[index].base else { continue };
            if bases.contains_key(&index) {
                continue;
            }
            let state = base::image(ctx, &name.clone()).await?.0;
            let triggers = stage::parse_triggers(&state)?;
            added |= plan.add_trigger_deps(index, &triggers)?;
            bases.insert(index, state);
        }
        if !added {
            return Ok(bases);
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-11-25T07:00:00Z`), without a date crate.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_590_000), "2026-11-25T07:00:00Z");
    }
}
