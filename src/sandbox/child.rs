//! The sandbox child: kiln re-executed as `kiln __kiln-sandbox run|probe`, single-threaded, so that it can
//! enter namespaces. It reads its [`RunSpec`] from stdin, unshares, forks the step's pid 1 (a small init that
//! assembles the rootfs, starts the command, forwards signals and reaps orphans) and exits with the
//! command's status. Setup failures go to its stderr, which the parent keeps apart from the command's output.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use super::command;
use super::mounts::{self, SetupError};
use super::spec::{Facilities, Isolation, Network, RunSpec};
use crate::sys;

/// argv[1] that selects the child role.
pub const CHILD_ARG: &str = "__kiln-sandbox";

/// Exit status of a child whose setup failed (as runc uses 125 for its own failures).
pub const SETUP_FAILED: u8 = 125;

/// Runs the child role when argv asks for it.
pub fn run_if_requested() -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some(CHILD_ARG) {
        return None;
    }
    let result = match args.get(2).map(String::as_str) {
        Some("probe-chroot") => nix::unistd::chroot("/").map(|()| 0).map_err(|e| setup("chroot")(e.into())),
        Some("probe") => probe(
            args.get(3).map(Path::new),
            args.get(4).map(String::as_str) == Some("rootless"),
            args.get(5).and_then(|p| p.parse().ok()),
        ),
        _ => read_spec().and_then(|spec| run(&spec, args.get(3).and_then(|p| p.parse().ok()))),
    };
    Some(match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(SETUP_FAILED)
        }
    })
}

fn read_spec() -> Result<RunSpec, SetupError> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(setup("read the run spec"))?;
    // The command must not read the spec pipe: give it /dev/null as stdin.
    let null = std::fs::File::open("/dev/null").map_err(setup("open /dev/null"))?;
    nix::unistd::dup2_stdin(null).map_err(|e| setup("redirect stdin")(std::io::Error::from(e)))?;
    serde_json::from_str(&text).map_err(|e| setup("parse the run spec")(std::io::Error::other(e)))
}

fn setup(what: &'static str) -> impl Fn(std::io::Error) -> SetupError {
    move |e| SetupError::new(what, e)
}

/// Arms SIGKILL for when kiln dies, and fails when it already has. `parent` is the pid of the kiln that
/// started this child, as it told it on the command line.
///
/// A child that outlived kiln would go on writing in kiln's temp directory after a later start (or
/// `fsck --repair`) had claimed it as a dead session's — re-creating it, half-filled, behind the claim.
fn die_with_kiln(parent: Option<i32>) -> Result<(), SetupError> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| setup("set the parent-death signal")(e.into()))?;
    // kiln may have died before the signal was armed; the child was then re-parented. Comparing with kiln's
    // own pid, not with 1: kiln may itself be pid 1 (a container's command).
    if parent.is_some_and(|p| nix::unistd::getppid() != Pid::from_raw(p)) {
        return Err(setup("start")(std::io::Error::other("kiln exited before the sandbox started")));
    }
    Ok(())
}

/// `parent` is the pid of the kiln that started this child, as it told it on the command line.
fn run(spec: &RunSpec, parent: Option<i32>) -> Result<u8, SetupError> {
    die_with_kiln(parent)?;
    if spec.isolation != Isolation::Chroot {
        let mut flags =
            CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
        match (&spec.network, &spec.netns) {
            (Network::None, Some(path)) => join_netns(path)?,
            (Network::None, None) => flags |= CloneFlags::CLONE_NEWNET,
            _ => {}
        }
        unshare(flags).map_err(|e| setup("create namespaces")(e.into()))?;
    }
    match sys::fork().map_err(|e| setup("fork the step's init")(e.into()))? {
        ForkResult::Child => {
            let code = match init(spec) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("{e}");
                    SETUP_FAILED
                }
            };
            let _ = std::io::stderr().flush();
            // The init's exit ends its pid namespace: the kernel kills whatever the command left running.
            std::process::exit(code as i32);
        }
        ForkResult::Parent { child } => {
            sys::forward_signals_to(child);
            Ok(wait_for(child))
        }
    }
}

/// Enters the network namespace the builder prepared for the step (it holds the descriptor open).
fn join_netns(path: &Path) -> Result<(), SetupError> {
    let ns = std::fs::File::open(path).map_err(setup("open the step's network namespace"))?;
    nix::sched::setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| setup("join the step's network namespace")(e.into()))
}

/// pid 1 of the step: assemble the rootfs, start the command, reap until it exits.
fn init(spec: &RunSpec) -> Result<u8, SetupError> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| setup("set the parent-death signal")(e.into()))?;
    let mut created = Vec::new();
    let root = mounts::assemble(spec, &mut created)?;
    let report = created.join("\n");
    std::fs::write(&spec.created_report, report).map_err(setup("write the mount-point report"))?;
    mounts::enter(&root, spec.isolation)?;
    // Chroot mode has no /dev of its own: what the step leaves there (a `> /dev/null` where mknod was
    // refused) is removed afterwards, as a step's tmpfs /dev would have dropped it.
    let dev_before = (spec.isolation == Isolation::Chroot).then(mounts::dev_entries);
    if spec.facilities.hostname {
        nix::unistd::sethostname(&spec.hostname).map_err(|e| setup("set the host name")(e.into()))?;
    }
    if spec.network == Network::None {
        sys::loopback_up().map_err(setup("bring up loopback"))?;
    }
    let code = match sys::fork().map_err(|e| setup("fork the command")(e.into()))? {
        ForkResult::Child => {
            let err = command::exec(spec);
            eprintln!("{err}");
            let _ = std::io::stderr().flush();
            std::process::exit(command::exec_failure_code(&err));
        }
        ForkResult::Parent { child } => {
            sys::forward_signals_to(child);
            wait_for(child)
        }
    };
    if let Some(before) = dev_before {
        mounts::remove_new_dev_entries(&before);
    }
    if spec.isolation == Isolation::Chroot {
        mounts::remove_created(Path::new("/"), &created);
    }
    Ok(code)
}

/// Waits for `pid` and returns its status as a shell reports it, reaping any other child that exits meanwhile
/// (orphans re-parented to pid 1).
pub(super) fn wait_for(pid: Pid) -> u8 {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => return code as u8,
            Ok(WaitStatus::Signaled(p, signal, _)) if p == pid => return 128 + signal as u8,
            Err(nix::Error::EINTR) | Ok(_) => continue,
            Err(_) => return SETUP_FAILED,
        }
    }
}

/// What the probe found, as JSON on its stdout.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ProbeReport {
    /// `overlay`, `fuse` or `copy`.
    pub rootfs: String,
    /// What a step can have from the kernel.
    pub facilities: Facilities,
}

/// Tells the parent what this machine allows ([`ProbeReport`] on stdout), or why namespaces cannot be
/// created (on stderr, exit 1). It sets up namespaces as `run` does and mounts as the step's init would.
/// It dies with kiln, like `run`: it creates directories in kiln's temp directory.
fn probe(dir: Option<&Path>, rootless: bool, parent: Option<i32>) -> Result<u8, SetupError> {
    let dir = dir.ok_or_else(|| setup("probe")(std::io::Error::other("no directory given")))?;
    die_with_kiln(parent)?;
    // The pid namespace is checked last: its first child would become its init, and the fuse daemon
    // started by the overlay test must not be that.
    let flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if let Err(e) = unshare(flags) {
        eprintln!("cannot create mount/pid namespaces: {}", std::io::Error::from(e));
        return Ok(1);
    }
    let private = nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE;
    if let Err(e) = nix::mount::mount(None::<&str>, "/", None::<&str>, private, None::<&str>) {
        eprintln!("cannot mount in a new mount namespace: {}", std::io::Error::from(e));
        return Ok(1);
    }
    let rootfs = mounts::probe_overlay(dir, rootless).to_string();
    if let Err(e) = unshare(CloneFlags::CLONE_NEWPID) {
        eprintln!("cannot create a pid namespace: {}", std::io::Error::from(e));
        return Ok(1);
    }
    // /proc is mounted by the pid namespace's first process, as in a step: the kernel decides by it.
    match sys::fork().map_err(|e| setup("fork the probe's init")(e.into()))? {
        ForkResult::Child => {
            // A fork does not inherit the parent-death signal.
            if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
                eprintln!("{}", setup("set the parent-death signal")(e.into()));
                std::process::exit(1);
            }
            let mut facilities = mounts::probe_kernel_fs(&dir.join("kernel"));
            // Seccomp profiles of pods without CAP_SYS_ADMIN refuse sethostname, even in a new uts namespace.
            facilities.hostname = nix::unistd::sethostname("kiln").is_ok();
            let report = ProbeReport { rootfs, facilities };
            let code = match serde_json::to_string(&report) {
                Ok(json) => {
                    println!("{json}");
                    0
                }
                Err(e) => {
                    eprintln!("cannot write the probe report: {e}");
                    1
                }
            };
            let _ = std::io::stdout().flush();
            std::process::exit(code);
        }
        ForkResult::Parent { child } => Ok(wait_for(child)),
    }
}
