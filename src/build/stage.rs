//! Running one stage: resolve its base, run the base's ONBUILD triggers, then each instruction in order,
//! recording a history entry per step.

use std::collections::HashMap;
use std::time::Instant;

use crate::build::BuildCtx;
use crate::build::context::Context;
use crate::build::error::BuildError;
use crate::build::events::Event;
use crate::build::state::ImageState;
use crate::build::{base, history, step};
use crate::cache::CacheKey;
use crate::dockerfile::instruction::{Command, Instruction};
use crate::image::History;
use crate::plan::{Base, BaseConfig, Plan, StageScope};

/// What every step of a stage can see: the build, the context, the stages already built.
pub struct StageEnv<'a> {
    /// The build's shared state.
    pub ctx: &'a BuildCtx<'a>,
    /// The build context.
    pub context: &'a Context,
    /// The plan being executed.
    pub plan: &'a Plan,
    /// Results of the stages built so far, by index.
    pub done: &'a HashMap<usize, ImageState>,
    /// Base images already resolved (to read their ONBUILD triggers before planning), by stage index.
    pub bases: &'a HashMap<usize, ImageState>,
}

impl StageEnv<'_> {
    /// The SHELL in force for `state` (the default `/bin/sh -c` when the image has none).
    pub fn shell(&self, state: &ImageState) -> Vec<String> {
        state.config.config.shell.clone().unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
    }

    /// A stage's name for messages (its `AS` name, else its index).
    pub fn stage_label(&self, index: usize) -> String {
        self.plan.stages.get(index).and_then(|s| s.name.clone()).unwrap_or_else(|| index.to_string())
    }
}

/// Builds stage `index` and returns its final image state.
pub async fn run(env: &StageEnv<'_>, index: usize) -> Result<ImageState, BuildError> {
    let stage = &env.plan.stages[index];
    let label = env.stage_label(index);
    let total = stage.instructions.len() + 1;
    let from_text = match &stage.base {
        Base::Scratch => "FROM scratch".to_string(),
        Base::Image(name) => format!("FROM {name}"),
        Base::Stage(i) => format!("FROM {}", env.stage_label(*i)),
    };
    env.ctx.reporter.report(Event::StepStarted { stage: label.clone(), number: 1, total, text: from_text });
    let started = Instant::now();
    let mut state = match &stage.base {
        Base::Scratch => base::scratch(env.ctx),
        Base::Image(name) => match env.bases.get(&index) {
            Some(state) => state.clone(),
            None => base::image(env.ctx, name).await?.0,
        },
        Base::Stage(i) => {
            let mut s = env.done.get(i).cloned().ok_or_else(|| BuildError::BadImage {
                digest: format!("stage {i}"),
                message: "used before it was built".to_string(),
            })?;
            s.cmd_set_in_stage = false;
            s.base_layers = s.layers.len();
            s.base_history = s.config.history.len();
            s
        }
    };
    env.ctx.reporter.report(Event::StepDone { elapsed: started.elapsed(), cached: false });
    let triggers = onbuild_triggers(&mut state)?;
    base::ensure_path(&mut state);
    let base = BaseConfig {
        env: state.config.env_pairs(),
        shell: state.config.config.shell.clone(),
        workdir: state.config.config.working_dir.clone(),
        args: match stage.base {
            Base::Stage(_) => state.stage_args.clone(),
            _ => Vec::new(),
        },
    };
    let mut scope = StageScope::new(env.plan, index, &base);
    let use_cache = !env.ctx.options.no_cache
        && !stage
            .name
            .as_ref()
            .is_some_and(|n| env.ctx.options.no_cache_filter.iter().any(|f| f.eq_ignore_ascii_case(n)));
    // Config-only steps take the time of the step before them, so a fully cached rebuild is byte-identical.
    let mut last_created = state.config.history.iter().filter_map(|h| h.created.clone()).max();
    let mut key = match (&stage.base, &state.cache_key) {
        (Base::Stage(_), Some(key)) => key.clone(),
        _ => CacheKey::base(&base_identity(&state), &env.ctx.platform.to_string()),
    };
    let instructions: Vec<&Instruction> = triggers.iter().chain(stage.instructions.iter()).collect();
    let total = instructions.len() + 1;
    let read_later = rootfs_read_after(env.plan, index, &instructions);
    for (n, instruction) in instructions.into_iter().enumerate() {
        env.ctx.reporter.report(Event::StepStarted {
            stage: label.clone(),
            number: n + 2,
            total,
            text: instruction.original.clone(),
        });
        let started = Instant::now();
        let place = |source: step::StepError| BuildError::Step {
            location: format!("{}:{}", env.ctx.file_label, instruction.span.start_line),
            instruction: short(&instruction.original),
            source,
        };
        let resolved = scope.resolve(instruction).map_err(|e| place(e.into()))?;
        let shell = env.shell(&state);
        let label = format!("{}:{} {}", env.ctx.file_label, instruction.span.start_line, short(&instruction.original));
        let outcome =
            step::execute(env, &mut state, &resolved, &key, use_cache, &label, read_later[n]).await.map_err(place)?;
        // With SOURCE_DATE_EPOCH every entry has that time, cached or not (BuildKit).
        let created = match env.ctx.epoch {
            Some(_) => env.ctx.created_rfc3339.clone(),
            None => outcome.created.or(last_created).unwrap_or_else(|| env.ctx.created_rfc3339.clone()),
        };
        last_created = Some(created.clone());
        if let Some(entry) = history::entry(&resolved, &shell) {
            record_history(&created, &mut state, &entry.created_by, outcome.layer.is_some());
        }
        if let Some(layer) = outcome.layer {
            state.config.rootfs.diff_ids.push(layer.diff_id.clone());
            state.layers.push(layer);
        }
        key = outcome.key;
        env.ctx.counts.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if outcome.cached {
            env.ctx.counts.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        env.ctx.reporter.report(Event::StepDone { elapsed: started.elapsed(), cached: outcome.cached });
    }
    state.cache_key = Some(key);
    state.config.config.env = Some(scope.image_env().into_iter().map(|(k, v)| format!("{k}={v}")).collect());
    state.stage_args = scope.declared_args();
    Ok(state)
}

/// For each instruction, whether something after it reads the rootfs it leaves: a later RUN, COPY, ADD or
/// WORKDIR of the stage, or another stage built on this one (FROM, `COPY --from`, `RUN --mount=from=`).
fn rootfs_read_after(plan: &Plan, index: usize, instructions: &[&Instruction]) -> Vec<bool> {
    let used_elsewhere = plan.stages.iter().any(|s| s.index != index && s.deps.contains(&index));
    let reads = |i: &&Instruction| {
        matches!(i.command, Command::Run(_) | Command::Copy(_) | Command::Add(_) | Command::Workdir(_))
    };
    (0..instructions.len()).map(|n| used_elsewhere || instructions[n + 1..].iter().any(reads)).collect()
}

/// The base image's ONBUILD triggers, parsed; the new image does not inherit them (the reference's rule).
fn onbuild_triggers(state: &mut ImageState) -> Result<Vec<Instruction>, BuildError> {
    let triggers = parse_triggers(state)?;
    state.config.config.on_build = None;
    Ok(triggers)
}

/// The ONBUILD triggers of an image, parsed (FROM and ONBUILD refused).
pub fn parse_triggers(state: &ImageState) -> Result<Vec<Instruction>, BuildError> {
    let Some(triggers) = &state.config.config.on_build else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for trigger in triggers {
        let parsed = crate::dockerfile::parse(trigger, "ONBUILD trigger")?;
        for instruction in parsed.instructions {
            if matches!(instruction.command, Command::From(_) | Command::Onbuild(_)) {
                return Err(BuildError::BadImage {
                    digest: "base image".to_string(),
                    message: format!(
                        "ONBUILD trigger {trigger:?} is not allowed (FROM and ONBUILD cannot be triggers)"
                    ),
                });
            }
            out.push(instruction);
        }
    }
    Ok(out)
}

/// What a stage's first key stands on: `scratch`, or the base image's config (which names its layers).
fn base_identity(state: &ImageState) -> String {
    if state.layers.is_empty() && state.config.history.is_empty() {
        return "scratch".to_string();
    }
    let config = serde_json::to_vec(&state.config).unwrap_or_default();
    format!("image {}", crate::store::digest_of(&config))
}

/// Appends the step's history entry (its text from [`history::entry`]).
fn record_history(created: &str, state: &mut ImageState, created_by: &str, layer: bool) {
    let created_by = created_by.to_string();
    state.config.history.push(History {
        created: Some(created.to_string()),
        created_by: Some(created_by),
        comment: Some("buildkit.dockerfile.v0".to_string()),
        empty_layer: (!layer).then_some(true),
        ..Default::default()
    });
}

/// An instruction shortened for a one-line error message.
fn short(text: &str) -> String {
    const MAX: usize = 80;
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > MAX {
        format!("{}…", line.chars().take(MAX).collect::<String>())
    } else {
        line.to_string()
    }
}
