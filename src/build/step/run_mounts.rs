//! `RUN --mount`s turned into sandbox mounts: cache directories in the store, binds of the context or of
//! another stage or image, tmpfs, and secrets (a read-only file, or an environment variable of the command
//! only). Writable binds get a private copy, as BuildKit discards what a step writes to them.

use std::path::{Path, PathBuf};

use crate::build::rootfs;
use crate::build::stage::StageEnv;
use crate::build::step::StepError;
use crate::build::step::add::from_root;
use crate::build::step::copy::{self, CopySpec, SourceRoot};
use crate::layer;
use nix::fcntl::{Flock, FlockArg};

use crate::plan::{self, RunMount, RunMountKind, Sharing};
use crate::sandbox::SandboxMount;

/// What a step's `--mount`s become: sandbox mounts, environment variables (secrets with `env=`), and the
/// locks of `sharing=locked|private` cache directories, held until the step ends.
#[derive(Default)]
pub struct Prepared {
    /// Mounts for the sandbox.
    pub mounts: Vec<SandboxMount>,
    /// Extra environment for the command.
    pub vars: Vec<(String, String)>,
    /// Cache-directory locks.
    pub locks: Vec<Flock<std::fs::File>>,
}

/// Sandbox mounts for `mounts`, and what else the step needs while it runs (see [`Prepared`]).
pub async fn prepare(
    env: &StageEnv<'_>,
    mounts: &[RunMount],
    cwd: &str,
    scratch: &Path,
) -> Result<Prepared, StepError> {
    let mut prepared = Prepared::default();
    let (out, vars) = (&mut prepared.mounts, &mut prepared.vars);
    for (n, m) in mounts.iter().enumerate() {
        let target = absolute(&m.target, cwd);
        match m.kind {
            RunMountKind::Tmpfs => out.push(SandboxMount::Tmpfs { target, size: m.size }),
            RunMountKind::Cache => {
                let (mount, lock) = cache(env, m, target, &scratch.join(format!("cache-{n}")))?;
                out.push(mount);
                prepared.locks.extend(lock);
            }
            RunMountKind::Bind => out.push(bind(env, m, target, &scratch.join(format!("bind-{n}"))).await?),
            RunMountKind::Secret => secret(env, m, scratch, out, vars)?,
            RunMountKind::Ssh => {
                return Err(StepError::Unsupported("RUN --mount=type=ssh is not supported yet".to_string()));
            }
        }
    }
    Ok(prepared)
}

/// A relative mount target is relative to the working directory (as in BuildKit).
fn absolute(target: &str, cwd: &str) -> String {
    if target.starts_with('/') { target.to_string() } else { format!("{}/{target}", cwd.trim_end_matches('/')) }
}

/// The cache directory for `m`, with BuildKit's sharing modes: `shared` as is, `locked` one step at a time
/// (waits), `private` the shared directory when free, else a fresh one for this step only.
fn cache(
    env: &StageEnv<'_>,
    m: &RunMount,
    target: String,
    fresh: &Path,
) -> Result<(SandboxMount, Option<Flock<std::fs::File>>), StepError> {
    let id = m.id.clone().unwrap_or_else(|| target.clone());
    let shared = env.ctx.store.cache_mount_dir(&id)?;
    let lock_file = || std::fs::File::open(&shared).map_err(StepError::Temp);
    let (dir, lock) = match m.sharing {
        Sharing::Shared => (shared.clone(), None),
        Sharing::Locked => {
            let lock =
                Flock::lock(lock_file()?, FlockArg::LockExclusive).map_err(|(_, e)| StepError::Temp(e.into()))?;
            (shared.clone(), Some(lock))
        }
        Sharing::Private => match Flock::lock(lock_file()?, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => (shared.clone(), Some(lock)),
            Err(_) => {
                std::fs::create_dir_all(fresh).map_err(StepError::Temp)?;
                (fresh.to_path_buf(), None)
            }
        },
    };
    // A new cache directory gets the mount's owner and mode (root, 0755 by default), as BuildKit does.
    let meta = std::fs::metadata(&dir).map_err(StepError::Temp)?;
    if std::fs::read_dir(&dir).map(|mut d| d.next().is_none()).unwrap_or(false) {
        let _ = std::os::unix::fs::chown(&dir, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)));
        let mode = m.mode.unwrap_or(0o755);
        if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777 != mode {
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .map_err(StepError::Temp)?;
        }
    }
    Ok((SandboxMount::Bind { source: dir, target, readonly: m.readonly }, lock))
}

async fn bind(env: &StageEnv<'_>, m: &RunMount, target: String, private: &Path) -> Result<SandboxMount, StepError> {
    let root: PathBuf = match &m.from {
        None => env.context.root().to_path_buf(),
        Some(from) => {
            let names: Vec<Option<String>> = env.plan.stages.iter().map(|s| s.name.clone()).collect();
            let source = plan::resolve_from(from, names.len(), &names).map_err(StepError::Unsupported)?;
            match from_root(env, Some(&source)).await? {
                Some((path, _)) => path,
                None => rootfs::empty(env.ctx.store)?,
            }
        }
    };
    let parts = layer::clean_components(m.source.as_deref().unwrap_or("/"));
    let source = match parts.split_last() {
        None => root,
        Some((last, parents)) => {
            layer::resolve_dir(&root, parents, false, m.source.as_deref().unwrap_or("/"))?.join(last)
        }
    };
    if std::fs::symlink_metadata(&source).is_err() {
        return Err(StepError::Unsupported(format!(
            "RUN --mount=type=bind: source {:?} not found",
            m.source.as_deref().unwrap_or("/")
        )));
    }
    if m.readonly {
        return Ok(SandboxMount::Bind { source, target, readonly: true });
    }
    layer::copy_tree(&source, private)?;
    Ok(SandboxMount::Bind { source: private.to_path_buf(), target, readonly: false })
}

fn secret(
    env: &StageEnv<'_>,
    m: &RunMount,
    scratch: &Path,
    out: &mut Vec<SandboxMount>,
    vars: &mut Vec<(String, String)>,
) -> Result<(), StepError> {
    let id = m.id.clone().or_else(|| (!m.target.is_empty()).then(|| base_name(&m.target))).unwrap_or_default();
    let Some(source) = env.ctx.options.secrets.get(&id) else {
        if m.required {
            // BuildKit's words first, then how to give it.
            return Err(StepError::Unsupported(format!(
                "secret {id}: not found (required; give it with --secret id={id},src=FILE)"
            )));
        }
        return Ok(());
    };
    let value = source.read().map_err(StepError::Temp)?;
    if let Some(name) = &m.env {
        vars.push((name.clone(), String::from_utf8_lossy(&value).into_owned()));
        if m.target.is_empty() {
            return Ok(());
        }
    }
    let target = if m.target.is_empty() { format!("/run/secrets/{id}") } else { m.target.clone() };
    let file = source.file_for_mount(scratch, &id).map_err(StepError::Temp)?;
    out.push(SandboxMount::Bind { source: file, target, readonly: true });
    Ok(())
}

fn base_name(path: &str) -> String {
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or_default().to_string()
}

/// What the step's bind mounts show, for its cache key: the digest of each context source, the key of each
/// `from=` stage (an image by its name); `None` without binds.
pub async fn bind_digest(env: &StageEnv<'_>, mounts: &[RunMount]) -> Result<Option<String>, StepError> {
    let mut parts = Vec::new();
    for m in mounts.iter().filter(|m| m.kind == RunMountKind::Bind) {
        let source = m.source.as_deref().unwrap_or("/");
        match &m.from {
            None => {
                let parts_in = layer::clean_components(source);
                let path = parts_in.iter().fold(env.context.root().to_path_buf(), |p, c| p.join(c));
                let entries = if path.is_dir() {
                    layer::entries_from_dir(&path, "")?
                } else {
                    let name = parts_in.last().cloned().unwrap_or_default();
                    let dir = path.parent().unwrap_or(env.context.root());
                    layer::entries_from_dir(dir, "")?.into_iter().filter(|e| e.path == name).collect()
                };
                let digest = crate::cache::sources::digest(&entries, &env.ctx.stats).map_err(StepError::Temp)?;
                parts.push(format!("{source}={digest}"));
            }
            Some(from) => {
                let names: Vec<Option<String>> = env.plan.stages.iter().map(|s| s.name.clone()).collect();
                // A stage by the content the mount selects, as BuildKit keys it: a change elsewhere in that
                // stage keeps the step cached (testMountRWCache).
                let identity = match plan::resolve_from(from, names.len(), &names) {
                    Ok(stage @ plan::CopyFrom::Stage(_)) => match from_root(env, Some(&stage)).await? {
                        Some((root, label)) => selected_digest(env, &SourceRoot::Rootfs(&root, &label), source)?,
                        None => String::new(),
                    },
                    _ => from.clone(),
                };
                parts.push(format!("{from}:{source}={identity}"));
            }
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("\n")))
}

/// The digest of what `source` selects in `root` (nothing when it is missing: the mount then fails itself).
fn selected_digest(env: &StageEnv<'_>, root: &SourceRoot<'_>, source: &str) -> Result<String, StepError> {
    let sources = [source.to_string()];
    let spec = CopySpec {
        sources: &sources,
        dest: "/",
        workdir: "/",
        owner: None,
        chmod: None,
        exclude: &[],
        parents: false,
        image_root: None,
        created_at: 0,
    };
    let entries = match copy::entries(&spec, root) {
        Err(copy::CopyError::NotFound { .. }) => Vec::new(),
        other => other?,
    };
    crate::cache::sources::digest(&entries, &env.ctx.stats).map_err(StepError::Temp)
}
