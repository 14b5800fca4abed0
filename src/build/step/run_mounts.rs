//! `RUN --mount`s turned into sandbox mounts: cache directories in the store, binds of the context or of
//! another stage or image, tmpfs, and secrets (a read-only file in a tmpfs of the step's own, or an
//! environment variable of the command only — never a file on disk).
//!
//! A bind source is a path inside a tree kiln does not own: it is resolved inside that tree (BuildKit's
//! `fs.RootPath`), here for the message when it is missing and again by the sandbox child, which mounts
//! exactly what it resolved. A writable bind gets a private copy started on the resolved descriptor, as
//! BuildKit discards what a step writes to it; no symlink in it can lead the step's writes out.

use std::path::Path;
use std::sync::Arc;

use crate::build::stage::StageEnv;
use crate::build::step::StepError;
use crate::build::step::add::from_root;
use crate::build::step::copy::{self, CopySpec, SourceRoot};
use crate::confine::{self, Root};
use nix::fcntl::{Flock, FlockArg};

use crate::plan::{self, RunMount, RunMountKind, Sharing};
use crate::sandbox::{SandboxMount, SecretBytes};

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
    /// The trees binds read from, with the leases their roots hold: no other build takes a stage's snapshot
    /// while a step has it mounted.
    pub roots: Vec<Arc<Root>>,
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
            RunMountKind::Bind => {
                let (mount, root) = bind(env, m, target, &scratch.join(format!("bind-{n}"))).await?;
                out.push(mount);
                prepared.roots.push(root);
            }
            RunMountKind::Secret => secret(env, m, out, vars)?,
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
    let root = std::path::absolute(&dir).map_err(StepError::Temp)?;
    Ok((SandboxMount::Bind { root, subpath: String::new(), target, readonly: m.readonly }, lock))
}

/// The tree a bind reads from: the context, or the `from=` stage's or image's rootfs; with a label.
async fn bind_root(env: &StageEnv<'_>, m: &RunMount) -> Result<(Arc<Root>, String), StepError> {
    match &m.from {
        None => Ok((env.context.root().clone(), "the build context".to_string())),
        Some(from) => {
            let names: Vec<Option<String>> = env.plan.stages.iter().map(|s| s.name.clone()).collect();
            let source = plan::resolve_from(from, names.len(), &names).map_err(StepError::Unsupported)?;
            match from_root(env, Some(&source)).await? {
                Some(found) => Ok(found),
                None => Err(StepError::Unsupported(format!("RUN --mount=type=bind: no rootfs for from={from}"))),
            }
        }
    }
}

async fn bind(
    env: &StageEnv<'_>,
    m: &RunMount,
    target: String,
    private: &Path,
) -> Result<(SandboxMount, Arc<Root>), StepError> {
    let (root, label) = bind_root(env, m).await?;
    let source = m.source.as_deref().unwrap_or("/");
    let handle = root.resolve(source).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            StepError::Unsupported(format!("RUN --mount=type=bind: source {source:?} not found in {label}"))
        }
        _ => StepError::Open { path: root.path().join(confine::clean(source)), source: e },
    })?;
    if m.readonly {
        let (path, subpath) = (root.path().to_path_buf(), confine::clean(source));
        return Ok((SandboxMount::Bind { root: path, subpath, target, readonly: true }, root));
    }
    confine::private_copy(&handle, private)
        .map_err(|e| StepError::Open { path: root.path().join(source), source: e })?;
    let path = std::path::absolute(private).map_err(StepError::Temp)?;
    Ok((SandboxMount::Bind { root: path, subpath: String::new(), target, readonly: false }, root))
}

/// A secret becomes an environment variable of the command (`env=`) and/or a file the sandbox writes into a
/// tmpfs of the step's own (mode, uid and gid as asked; BuildKit's default 0400 root:root).
fn secret(
    env: &StageEnv<'_>,
    m: &RunMount,
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
    let (mode, uid, gid) = (m.mode.unwrap_or(0o400), m.uid.unwrap_or(0), m.gid.unwrap_or(0));
    out.push(SandboxMount::Secret { target, value: SecretBytes(value), mode, uid, gid });
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
                // What the step will see, read inside the context like any source (owners kept: they show).
                let digest =
                    selected_digest(env, &SourceRoot::Rootfs(env.context.root(), "the build context"), source)?;
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
    let entries = match copy::entries(&CopySpec::plain(&sources, "/"), root) {
        Err(copy::CopyError::NotFound { .. }) => Vec::new(),
        other => other?,
    };
    Ok(crate::cache::sources::digest(&entries, &env.ctx.stats)?)
}
