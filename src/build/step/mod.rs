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
pub mod run;
mod run_mounts;
pub mod workdir;

use crate::build::stage::StageEnv;
use crate::build::state::{ImageState, LayerRef};
use crate::layer::{self, Entry};
use crate::plan::ResolvedStep;

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
    /// The command exited non-zero.
    #[error("RUN failed (exit code {code}): {command}{}", tail_text(tail))]
    RunFailed {
        /// Its exit code (128 + signal when killed).
        code: u8,
        /// The command as written.
        command: String,
        /// Its last lines of output.
        tail: Vec<String>,
    },
    /// The sandbox could not run the command.
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// A temp file or directory for the step could not be made.
    #[error("cannot create a temporary file: {0}")]
    Temp(std::io::Error),
}

/// Runs one resolved step against the stage's image; returns the layer it added, if any.
pub async fn execute(
    env: &StageEnv<'_>,
    state: &mut ImageState,
    step: &ResolvedStep,
) -> Result<Option<LayerRef>, StepError> {
    match step {
        ResolvedStep::Copy(c) => copy_step(env, state, c, false).await,
        ResolvedStep::Add(c) => copy_step(env, state, c, true).await,
        ResolvedStep::Workdir(dir) => workdir::execute(env, state, dir),
        ResolvedStep::Run { cmd, shell, mounts, network, heredocs, env: vars, security: _ } => {
            let step = run::RunStep { cmd, shell, heredocs, env: vars, mounts, network: network.as_deref() };
            run::execute(env, state, &step).await
        }
        other => {
            apply_config(env, state, other)?;
            Ok(None)
        }
    }
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

async fn copy_step(
    env: &StageEnv<'_>,
    state: &mut ImageState,
    c: &crate::plan::ResolvedCopy,
    is_add: bool,
) -> Result<Option<LayerRef>, StepError> {
    let entries = add::entries(env, state, c, is_add).await?;
    write_layer(env, entries)
}

/// Writes `entries` as a layer blob in the store; `None` when there is nothing to write.
pub fn write_layer(env: &StageEnv<'_>, entries: Vec<Entry>) -> Result<Option<LayerRef>, StepError> {
    write_layer_with(env.ctx, entries)
}

/// [`write_layer`] for callers outside a stage (squash).
pub fn write_layer_with(ctx: &crate::build::BuildCtx<'_>, entries: Vec<Entry>) -> Result<Option<LayerRef>, StepError> {
    if entries.is_empty() {
        return Ok(None);
    }
    let opts = layer::WriteOptions {
        compression: ctx.options.compression,
        source_date_epoch: ctx.options.source_date_epoch,
        level: None,
    };
    let mut writer = ctx.store.ingest()?;
    let digests = layer::write_layer(entries, &mut writer, &opts)?;
    let (digest, size) = writer.commit(Some(&digests.digest))?;
    Ok(Some(LayerRef {
        digest,
        diff_id: digests.diff_id,
        size,
        media_type: ctx.options.compression.media_type(true).to_string(),
    }))
}
