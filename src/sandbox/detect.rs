//! Which sandbox this machine gives, found once per build by walking down a ladder and reported in one line:
//!
//! 1. namespaces (mount, pid, uts, ipc) as real root, or inside kiln's user namespace ([`super::userns`]),
//!    with an overlay rootfs (kernel, else fuse-overlayfs, else a private copy) and fresh /proc, /dev/pts, /sys;
//! 2. the same with what cannot be mounted fresh bound from the pod (/proc) or left out (/dev/pts, /sys);
//! 3. chroot mode: no namespaces, a private copy of the rootfs, no /proc.
//!
//! Each rung is tried for real in a re-executed child (`kiln __kiln-sandbox probe`), never guessed from
//! capabilities. Only when no rung works is there an error, naming the privilege or setting that is missing.
//! Input: what `--isolation` asked for and a scratch directory; output: a [`Sandbox`].

use std::path::Path;
use std::process::{Command, Stdio};

use super::SandboxError;
use super::child;
use super::spec::{Facilities, Isolation, ProcFs};
use super::userns::{self, UserNs};

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

/// The sandbox this machine gives: isolation mode, rootfs kind, kernel facilities, and why it is not more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// The isolation mode.
    pub isolation: Isolation,
    /// How rootfs are assembled.
    pub rootfs: RootfsKind,
    /// How /proc, /dev/pts and /sys are provided.
    pub facilities: Facilities,
    /// Why namespaces could not be had, when chroot mode is a fallback.
    pub fallback: Option<String>,
}

impl std::fmt::Display for Sandbox {
    /// One line: the mode and each thing given up, so a build says once what its RUN steps get.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.isolation {
            Isolation::Root => write!(f, "root (mount, pid, uts and ipc namespaces)")?,
            Isolation::Rootless => {
                write!(f, "rootless ({}; mount, pid, uts and ipc namespaces)", userns::state().describe())?
            }
            Isolation::Chroot => {
                write!(f, "chroot (no namespaces")?;
                if let Some(why) = &self.fallback {
                    write!(f, ": {why}")?;
                }
                write!(f, "; steps see every process and mount kiln sees)")?;
            }
        }
        f.write_str(match self.rootfs {
            RootfsKind::Overlay => ", overlay rootfs",
            RootfsKind::FuseOverlay => ", fuse-overlayfs rootfs (no kernel overlay here)",
            RootfsKind::Copy => ", a private copy of the rootfs per step (no overlay here)",
        })?;
        let mut given_up = Vec::new();
        match self.facilities.proc {
            ProcFs::Fresh => {}
            ProcFs::Bound => given_up.push(
                "/proc bound from the pod, as a fresh procfs is refused here (the pod's /proc has masked paths): \
                 steps see the pod's processes",
            ),
            ProcFs::None => given_up.push("no /proc"),
        }
        if self.isolation == Isolation::Chroot {
            given_up.push("device nodes only where mknod is allowed");
        } else {
            if !self.facilities.devpts {
                given_up.push("no /dev/pts (devpts cannot be mounted here)");
            }
            if !self.facilities.sys {
                given_up.push("no /sys (it cannot be bound here)");
            }
            if !self.facilities.hostname {
                given_up.push("the pod's host name (sethostname is refused here)");
            }
        }
        if !given_up.is_empty() {
            write!(f, "; fallbacks: {}", given_up.join(", "))?;
        }
        Ok(())
    }
}

/// Finds the isolation this process can use, walking down the ladder: namespaces (root's own, or kiln's
/// user namespace) with fresh kernel filesystems, the same with what cannot be mounted fresh bound or left
/// out, then chroot mode. `scratch` is an empty directory for the mount tests.
pub fn detect(requested: Requested, scratch: &Path) -> Result<Sandbox, SandboxError> {
    let ns = userns::state();
    let (namespaced, note) = match &ns {
        UserNs::Host { note } => (Isolation::Root, note.clone()),
        UserNs::Inside { .. } => (Isolation::Rootless, None),
        UserNs::Unavailable(why) => {
            return Err(SandboxError::Unavailable(format!(
                "rootless mode needs a user namespace: {why}; root and chroot modes need root (CAP_SYS_ADMIN, \
                 CAP_SYS_CHROOT), which a non-root user does not have"
            )));
        }
    };
    let chroot = |fallback: Option<String>| Sandbox {
        isolation: Isolation::Chroot,
        rootfs: RootfsKind::Copy,
        facilities: Facilities::NONE,
        fallback,
    };
    let found = match requested {
        Requested::Exactly(Isolation::Chroot) => chroot_works()
            .map(|()| chroot(None))
            .map_err(|e| SandboxError::Unavailable(format!("--isolation chroot needs CAP_SYS_CHROOT ({e})"))),
        Requested::Exactly(mode) if mode != namespaced => Err(SandboxError::Unavailable(mismatch(mode, &ns))),
        Requested::Exactly(mode) => probe(mode, scratch).map(|p| namespaced_sandbox(mode, p)),
        Requested::Auto => match probe(namespaced, scratch) {
            Ok(p) => Ok(namespaced_sandbox(namespaced, p)),
            Err(SandboxError::Unavailable(why)) => {
                let lacking = match (namespaced, &note) {
                    (Isolation::Rootless, _) => format!("kiln's user namespace may not mount ({why})"),
                    (_, None) => format!("no CAP_SYS_ADMIN ({why})"),
                    (_, Some(note)) => format!("no CAP_SYS_ADMIN ({why}) and no user namespace ({note})"),
                };
                chroot_works().map(|()| chroot(Some(lacking))).map_err(|e| {
                    let userns = note.unwrap_or_else(|| "not tried".into());
                    SandboxError::Unavailable(format!(
                        "each mode needs what this process lacks: root mode CAP_SYS_ADMIN ({why}); rootless \
                         mode a user namespace ({userns}); chroot mode CAP_SYS_CHROOT ({e}). Grant one of them"
                    ))
                })
            }
            Err(e) => Err(e),
        },
    }?;
    Ok(found)
}

fn namespaced_sandbox(isolation: Isolation, probed: Probed) -> Sandbox {
    Sandbox { isolation, rootfs: probed.rootfs, facilities: probed.facilities, fallback: None }
}

/// Why `--isolation mode` cannot be had by this process.
fn mismatch(mode: Isolation, ns: &UserNs) -> String {
    match (mode, ns) {
        (Isolation::Rootless, UserNs::Host { note: Some(note) }) => format!("--isolation rootless: {note}"),
        (Isolation::Rootless, _) => {
            "--isolation rootless needs a non-root user (or root without CAP_SYS_ADMIN); this kiln runs as root \
             with mount rights (use root or chroot)"
                .into()
        }
        (_, UserNs::Inside { outer_uid: 0, .. }) => {
            "--isolation root needs CAP_SYS_ADMIN, which this root does not have (use rootless or chroot)".into()
        }
        _ => "--isolation root needs real root; this kiln runs rootless (use rootless or chroot)".into(),
    }
}

/// What the probe child found: the rootfs kind and what a step can have from the kernel here.
struct Probed {
    rootfs: RootfsKind,
    facilities: Facilities,
}

fn probe(mode: Isolation, scratch: &Path) -> Result<Probed, SandboxError> {
    let mode_arg = if mode == Isolation::Rootless { "rootless" } else { "root" };
    let output = Command::new("/proc/self/exe")
        .args([child::CHILD_ARG, "probe"])
        .arg(scratch)
        .arg(mode_arg)
        // The child checks that its parent is still this process (see `child::run`).
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(SandboxError::Spawn)?;
    if !output.status.success() {
        return Err(SandboxError::Unavailable(String::from_utf8_lossy(&output.stderr).trim().to_string()));
    }
    let report: child::ProbeReport = serde_json::from_slice(&output.stdout).map_err(|e| {
        SandboxError::Setup(format!("the sandbox probe answered {:?}: {e}", String::from_utf8_lossy(&output.stdout)))
    })?;
    let rootfs = match report.rootfs.as_str() {
        "overlay" => RootfsKind::Overlay,
        "fuse" => RootfsKind::FuseOverlay,
        _ => RootfsKind::Copy,
    };
    Ok(Probed { rootfs, facilities: report.facilities })
}

/// Whether this process may chroot (the only privilege chroot mode needs); the reason when not.
fn chroot_works() -> Result<(), String> {
    // chroot("/") changes nothing but needs the same privilege as a real one.
    let output = Command::new("/proc/self/exe")
        .args([child::CHILD_ARG, "probe-chroot"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start the sandbox: {e}"))?;
    if output.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&output.stderr).trim().to_string()) }
}
