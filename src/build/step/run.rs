//! RUN: execute the command in the sandbox over an overlay of the image's rootfs; the overlay's upper
//! directory is the step's diff and becomes its layer.
//!
//! Where the machine cannot mount (a build pod without privileges), the command runs chrooted in a copy of
//! the rootfs and the diff is found by a metadata walk against the original.

use std::path::{Path, PathBuf};

use crate::build::rootfs;
use crate::build::stage::StageEnv;
use crate::build::state::{ImageState, LayerRef};
use crate::build::step::{StepError, config, write_layer};
use crate::build::users::Accounts;
use crate::build::events::Event;
use crate::dockerfile::instruction::CommandLine;
use crate::layer;
use crate::plan::{RunMount, RunMountKind};
use crate::sandbox::{self, Isolation, Network, RootfsSpec, RunSpec, SandboxMount, Stream};

/// Everything RUN needs from the resolved step.
pub struct RunStep<'a> {
    /// The command.
    pub cmd: &'a CommandLine,
    /// The SHELL in force.
    pub shell: &'a [String],
    /// The environment the command sees (image ENV + ARGs in scope).
    pub env: Vec<(String, String)>,
    /// `--mount` options.
    pub mounts: &'a [RunMount],
    /// `--network` override.
    pub network: Option<&'a str>,
}

/// Runs one RUN step and returns its layer (none when the command changed nothing).
pub fn execute(env: &StageEnv<'_>, state: &ImageState, run: &RunStep<'_>) -> Result<Option<LayerRef>, StepError> {
    let store = env.ctx.store;
    let lower = match rootfs::materialize(store, &state.layers)? {
        Some(path) => path,
        None => store.create_snapshot(&crate::image::chain_id(&[]), |_| Ok(()))?,
    };
    let accounts = Accounts::read(Some(&lower));
    let user = state.config.config.user.clone().unwrap_or_default();
    let ids = if user.is_empty() { None } else { Some(accounts.resolve(&user, Some(0))?) };
    let scratch = store.temp_dir().map_err(StepError::Store)?;
    let isolation = env.ctx.isolation()?;
    let (rootfs, upper) = prepare_rootfs(isolation, &lower, scratch.path())?;
    let spec = RunSpec {
        isolation,
        rootfs,
        args: config::argv(run.cmd, run.shell),
        env: run.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd: state.config.config.working_dir.clone().unwrap_or_else(|| "/".to_string()),
        uid: ids.as_ref().map_or(0, |i| i.uid),
        gid: ids.as_ref().map_or(0, |i| i.gid),
        additional_gids: ids.as_ref().map(|i| i.groups.clone()).unwrap_or_default(),
        hostname: "kiln".to_string(),
        network: network(env, run.network),
        mounts: mounts(env, run.mounts, scratch.path())?,
        etc_files: sandbox::EtcFiles::for_host("kiln"),
        umask: 0o022,
    };
    let reporter = env.ctx.reporter;
    let mut pending = Vec::new();
    let outcome = sandbox::run(&spec, &mut |_: Stream, bytes: &[u8]| {
        pending.extend_from_slice(bytes);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            reporter.report(Event::Output { line: text });
        }
    })
    .map_err(|e| StepError::Run(e.to_string()))?;
    if outcome.exit_code != 0 {
        return Err(StepError::RunFailed { code: outcome.exit_code, command: describe(run) });
    }
    let entries = match &upper {
        Some(upper) => layer::entries_from_overlay_upper(upper)?,
        None => layer::diff_trees(&lower, &scratch.path().join("rootfs"))?,
    };
    let entries = entries.into_iter().filter(|e| !outcome.mount_points.contains(&e.path)).collect();
    write_layer(env, entries)
}

/// Overlay (upper = the diff) where mounts work, else a private copy of the rootfs to chroot into.
fn prepare_rootfs(isolation: Isolation, lower: &Path, scratch: &Path) -> Result<(RootfsSpec, Option<PathBuf>), StepError> {
    let temp = |e: std::io::Error| StepError::Temp(e);
    if isolation == Isolation::Chroot {
        let copy = scratch.join("rootfs");
        layer::copy_tree(lower, &copy)?;
        return Ok((RootfsSpec::Dir(copy), None));
    }
    let upper = scratch.join("upper");
    let work = scratch.join("work");
    fs_err::create_dir_all(&upper).map_err(temp)?;
    fs_err::create_dir_all(&work).map_err(temp)?;
    Ok((RootfsSpec::Overlay { lower_dirs: vec![lower.to_path_buf()], upper_dir: upper.clone(), work_dir: work }, Some(upper)))
}

fn network(env: &StageEnv<'_>, flag: Option<&str>) -> Network {
    match flag.unwrap_or(env.ctx.options.network.as_str()) {
        "none" => Network::None,
        _ => Network::Host,
    }
}

fn mounts(env: &StageEnv<'_>, mounts: &[RunMount], _scratch: &Path) -> Result<Vec<SandboxMount>, StepError> {
    let mut out = Vec::new();
    for m in mounts {
        match &m.kind {
            RunMountKind::Tmpfs => out.push(SandboxMount::Tmpfs { target: m.target.clone(), size: m.size }),
            RunMountKind::Cache => {
                let dir = env.ctx.store.cache_mount_dir(m.id.as_deref().unwrap_or(&m.target)).map_err(StepError::Store)?;
                out.push(SandboxMount::Bind { source: dir, target: m.target.clone(), readonly: false });
            }
            other => {
                return Err(StepError::Unsupported(format!("RUN --mount type {other:?} is not supported yet")));
            }
        }
    }
    Ok(out)
}

fn describe(run: &RunStep<'_>) -> String {
    match run.cmd {
        CommandLine::Shell(text) => text.clone(),
        CommandLine::Exec(args) => format!("{args:?}"),
    }
}
