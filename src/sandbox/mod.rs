//! Running one command in a rootfs inside Linux namespaces: the builder's RUN steps.
//!
//! The builder process is multi-threaded (tokio), and a multi-threaded process cannot enter namespaces, so
//! each step runs in kiln re-executed as a single-threaded child ([`child`]). A non-root kiln first enters a
//! user namespace of its own at start ([`userns`]), so a rootless build does everything as root of that
//! namespace. `unsafe` code lives in [`sys`] only.

mod child;
mod command;
mod mounts;
mod spec;
mod sys;
pub mod userns;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

pub use command::DEFAULT_PATH;
pub use spec::{Isolation, Network, RootfsSpec, RunSpec, SandboxMount, SecretBytes};
use userns::UserNs;

/// Runs the sandbox child role when argv asks for it, before anything else starts a thread. `Some(code)`
/// means this process's work is done and `main` must exit with `code`.
pub fn run_child_if_requested() -> Option<ExitCode> {
    child::run_if_requested()
}

/// What `--isolation` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Requested {
    /// The first mode that works here.
    #[default]
    Auto,
    /// This mode or an error.
    Exactly(Isolation),
}

/// How the step's rootfs can be assembled on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsKind {
    /// Kernel overlayfs.
    Overlay,
    /// fuse-overlayfs.
    FuseOverlay,
    /// A private copy, diffed by metadata afterwards.
    Copy,
}

/// The sandbox this machine gives: isolation mode and rootfs kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sandbox {
    /// The isolation mode.
    pub isolation: Isolation,
    /// How rootfs are assembled.
    pub rootfs: RootfsKind,
}

/// Why a step could not run.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No isolation mode works here.
    #[error("RUN cannot be isolated on this machine: {0}")]
    Unavailable(String),
    /// The child could not be started or talked to.
    #[error("cannot start the sandbox: {0}")]
    Spawn(#[source] std::io::Error),
    /// The child failed while setting up the step.
    #[error("the sandbox could not set up the step: {0}")]
    Setup(String),
}

/// Finds the isolation this process can use; `scratch` is an empty directory for the overlay test.
pub fn detect(requested: Requested, scratch: &Path) -> Result<Sandbox, SandboxError> {
    let ns = userns::state();
    let namespaced = match &ns {
        UserNs::Host => Isolation::Root,
        UserNs::Inside { .. } => Isolation::Rootless,
        UserNs::Unavailable(why) => return Err(SandboxError::Unavailable(why.clone())),
    };
    match requested {
        Requested::Exactly(Isolation::Chroot) => chroot_works()
            .map(|()| Sandbox { isolation: Isolation::Chroot, rootfs: RootfsKind::Copy })
            .map_err(SandboxError::Unavailable),
        Requested::Exactly(mode) if mode != namespaced => Err(SandboxError::Unavailable(format!(
            "--isolation {} needs {}; this kiln runs {}",
            mode.name(),
            if mode == Isolation::Root { "real root" } else { "a non-root user" },
            if namespaced == Isolation::Root {
                "as root (use root or chroot)"
            } else {
                "rootless (use rootless or chroot)"
            }
        ))),
        Requested::Exactly(mode) => probe(mode, scratch).map(|rootfs| Sandbox { isolation: mode, rootfs }),
        Requested::Auto => match probe(namespaced, scratch) {
            Ok(rootfs) => Ok(Sandbox { isolation: namespaced, rootfs }),
            Err(SandboxError::Unavailable(why)) => chroot_works()
                .map(|()| Sandbox { isolation: Isolation::Chroot, rootfs: RootfsKind::Copy })
                .map_err(|e| SandboxError::Unavailable(format!("{why}; and {e}"))),
            Err(e) => Err(e),
        },
    }
}

fn probe(mode: Isolation, scratch: &Path) -> Result<RootfsKind, SandboxError> {
    let mode_arg = if mode == Isolation::Rootless { "rootless" } else { "root" };
    let output = Command::new("/proc/self/exe")
        .args([child::CHILD_ARG, "probe"])
        .arg(scratch)
        .arg(mode_arg)
        .stdin(Stdio::null())
        .output()
        .map_err(SandboxError::Spawn)?;
    if !output.status.success() {
        return Err(SandboxError::Unavailable(String::from_utf8_lossy(&output.stderr).trim().to_string()));
    }
    Ok(match String::from_utf8_lossy(&output.stdout).trim() {
        "overlay" => RootfsKind::Overlay,
        "fuse" => RootfsKind::FuseOverlay,
        _ => RootfsKind::Copy,
    })
}

/// Whether this process may chroot (the only privilege chroot mode needs); the reason when not.
fn chroot_works() -> Result<(), String> {
    // chroot("/") changes nothing but needs the same privilege as a real one.
    let output = Command::new("/proc/self/exe")
        .args([child::CHILD_ARG, "probe-chroot"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start the sandbox: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "chroot is not permitted ({}): chroot mode needs CAP_SYS_CHROOT, the other modes user namespaces or \
             CAP_SYS_ADMIN",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exit code (128 + signal when killed).
    pub exit_code: u8,
    /// Why it could not start, when it could not (exec failures).
    pub start_error: Option<String>,
    /// Mount points the sandbox created in the rootfs (relative paths), to leave out of the diff.
    pub created: Vec<String>,
}

/// Runs `spec`, handing every chunk of the command's output (stdout and stderr joined) to `on_output`.
pub fn run(spec: &RunSpec, on_output: &mut dyn FnMut(&[u8])) -> Result<Outcome, SandboxError> {
    let mut child = Command::new("/proc/self/exe")
        .args([child::CHILD_ARG, "run"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(SandboxError::Spawn)?;
    let json = serde_json::to_vec(spec).map_err(|e| SandboxError::Spawn(std::io::Error::other(e)))?;
    let mut stdin = child.stdin.take().ok_or_else(|| SandboxError::Spawn(std::io::Error::other("no stdin")))?;
    stdin.write_all(&json).map_err(SandboxError::Spawn)?;
    drop(stdin);
    let mut stderr = child.stderr.take().ok_or_else(|| SandboxError::Spawn(std::io::Error::other("no stderr")))?;
    let diagnostics = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    if let Some(stdout) = child.stdout.take() {
        let mut reader = BufReader::new(stdout);
        loop {
            let chunk = match reader.fill_buf() {
                Ok([]) | Err(_) => break,
                Ok(chunk) => chunk,
            };
            on_output(chunk);
            let n = chunk.len();
            reader.consume(n);
        }
    }
    let status = child.wait().map_err(SandboxError::Spawn)?;
    let diagnostics = diagnostics.join().unwrap_or_default().trim().to_string();
    let code = std::os::unix::process::ExitStatusExt::into_raw(status);
    let exit_code = status.code().map_or(128 + (code & 0x7f) as u8, |c| c as u8);
    if exit_code == child::SETUP_FAILED && !diagnostics.is_empty() {
        return Err(SandboxError::Setup(diagnostics));
    }
    let created = std::fs::read_to_string(&spec.created_report).unwrap_or_default();
    Ok(Outcome {
        exit_code,
        start_error: (!diagnostics.is_empty()).then_some(diagnostics),
        created: created.lines().filter(|l| !l.is_empty()).map(str::to_string).collect(),
    })
}
