//! Running one command in a rootfs inside Linux namespaces: the builder's RUN steps.
//!
//! The builder process is multi-threaded (tokio), and a multi-threaded process cannot enter namespaces, so
//! each step runs in kiln re-executed as a single-threaded child ([`child`]). A non-root kiln first enters a
//! user namespace of its own at start ([`userns`]), so a rootless build does everything as root of that
//! namespace. What this machine allows — which namespaces, which rootfs, which kernel filesystems — is found
//! once per build ([`detect`]). `unsafe` code lives in [`crate::sys`] only.

mod child;
mod command;
mod detect;
mod mounts;
mod netns;
mod spec;
pub mod userns;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitCode, Stdio};

pub use command::DEFAULT_PATH;
pub use detect::{Requested, RootfsKind, Sandbox, detect};
pub use netns::loopback_netns;
pub use spec::{Facilities, Isolation, Network, ProcFs, RootfsSpec, RunSpec, SandboxMount, SecretBytes};

/// Runs the sandbox child role when argv asks for it, before anything else starts a thread. `Some(code)`
/// means this process's work is done and `main` must exit with `code`.
pub fn run_child_if_requested() -> Option<ExitCode> {
    child::run_if_requested()
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
    // The child checks that its parent is still this process (see `child::run`).
    let mut child = Command::new("/proc/self/exe")
        .args([child::CHILD_ARG, "run", &std::process::id().to_string()])
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
