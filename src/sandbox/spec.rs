//! What the builder asks the sandbox to run, sent as JSON to the re-executed child over its stdin.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How a step's command is isolated from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Isolation {
    /// Mount, pid, uts and ipc namespaces inside a user namespace (kiln re-executed itself into it).
    Rootless,
    /// The same namespaces, without a user namespace (real root on a host).
    Root,
    /// No namespaces: a chroot into a private copy of the rootfs (build pods that cannot mount).
    Chroot,
}

impl Isolation {
    /// The name `--isolation` uses.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Rootless => "rootless",
            Isolation::Root => "root",
            Isolation::Chroot => "chroot",
        }
    }
}

/// How the step's root filesystem is assembled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootfsSpec {
    /// An overlay mount; lower dirs are given relative to `base` to stay under the mount-option page limit.
    Overlay {
        /// Directory the lower dirs are relative to.
        base: PathBuf,
        /// Lower dirs, topmost first.
        lower: Vec<String>,
        /// The step's upper dir (its diff).
        upper: PathBuf,
        /// Overlay's work dir (same filesystem as `upper`).
        work: PathBuf,
        /// Where to mount it.
        merged: PathBuf,
        /// Mount with fuse-overlayfs instead of the kernel's overlay.
        fuse: bool,
    },
    /// A private directory the step may change in place.
    Dir(PathBuf),
}

/// What a step gets from the kernel — /proc, /dev/pts, /sys, a host name of its own — as detection found
/// this machine allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facilities {
    /// How /proc is provided.
    pub proc: ProcFs,
    /// A private devpts instance on /dev/pts (else /dev/pts is left out).
    pub devpts: bool,
    /// The host's /sys bound read-only (else /sys is left out).
    pub sys: bool,
    /// The step's own host name in its uts namespace (else it keeps the host's).
    pub hostname: bool,
}

impl Facilities {
    /// Nothing (chroot mode: no namespaces).
    pub const NONE: Facilities = Facilities { proc: ProcFs::None, devpts: false, sys: false, hostname: false };
}

/// The step's /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcFs {
    /// A new procfs for the step's pid namespace.
    Fresh,
    /// The existing /proc bound recursively, its masked paths still masked. The kernel refuses a fresh
    /// procfs in a user namespace when the /proc it can see has paths mounted over (a container's masked
    /// paths): then the step sees the processes of the pod instead of only its own. It cannot reach into
    /// them: ptrace access (memory, environment, fds, root) to a process outside the step's user namespace,
    /// or inside it with capabilities the step lacks (kiln's own), needs CAP_SYS_PTRACE where they live.
    /// Steps of one build running at once (parallel stages) share creds, and can reach each other.
    Bound,
    /// No /proc.
    None,
}

/// The step's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Network {
    /// The host's network (the default, as with `podman build`).
    #[default]
    Host,
    /// A new network namespace with only loopback.
    None,
}

/// An extra mount inside the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxMount {
    /// A bind of something inside a tree: the child resolves `subpath` inside `root` (symlinks followed
    /// there, never out) and mounts exactly what it resolved, through its descriptor.
    Bind {
        /// The tree (a path kiln trusts: the context, a snapshot, a cache directory, its own scratch).
        root: PathBuf,
        /// What to bind, inside `root` ("" for `root` itself).
        subpath: String,
        /// Absolute path inside the rootfs.
        target: String,
        /// Mounted read-only.
        readonly: bool,
    },
    /// An empty tmpfs.
    Tmpfs {
        /// Absolute path inside the rootfs.
        target: String,
        /// Size limit in bytes.
        size: Option<u64>,
    },
    /// A secret file: written by the child into a tmpfs that exists only in the step's mount namespace and
    /// bound read-only at `target`, so its value never reaches a disk and dies with the step.
    Secret {
        /// Absolute path inside the rootfs.
        target: String,
        /// The value.
        value: SecretBytes,
        /// File mode.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
}

impl SandboxMount {
    /// A read-only bind of a file or directory kiln made itself (its CA bundle, generated settings): the
    /// root is the source's parent directory, which kiln owns too.
    pub fn bind_own(source: &Path, target: &str) -> SandboxMount {
        let root = source.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
        let subpath = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        SandboxMount::Bind { root, subpath, target: target.to_string(), readonly: true }
    }

    /// The host path a bind names, for kiln's own checks (the child resolves it inside `root` instead).
    pub fn bind_source(&self) -> Option<PathBuf> {
        match self {
            SandboxMount::Bind { root, subpath, .. } => Some(root.join(subpath)),
            _ => None,
        }
    }

    /// Where the mount appears inside the rootfs.
    pub fn target(&self) -> &str {
        match self {
            SandboxMount::Bind { target, .. }
            | SandboxMount::Tmpfs { target, .. }
            | SandboxMount::Secret { target, .. } => target,
        }
    }
}

/// A secret's bytes: sent to the child over its stdin pipe, never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretBytes(pub Vec<u8>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One command to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Isolation mode.
    pub isolation: Isolation,
    /// The root filesystem.
    pub rootfs: RootfsSpec,
    /// argv; `args[0]` is looked up in the image's PATH when it has no slash.
    pub args: Vec<String>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// Working directory inside the rootfs (created when missing).
    pub cwd: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Host name inside the step.
    pub hostname: String,
    /// Network mode.
    pub network: Network,
    /// A network namespace to join instead of creating one (`/proc/PID/fd/N` of the builder's descriptor);
    /// only with [`Network::None`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    /// Extra mounts, in order.
    pub mounts: Vec<SandboxMount>,
    /// What the step gets from the kernel: /proc, /dev/pts, /sys, its host name.
    pub facilities: Facilities,
    /// Host files bind-mounted over /etc/resolv.conf, /etc/hosts and /etc/hostname (never captured).
    pub etc_files: Vec<(PathBuf, String)>,
    /// File-mode creation mask.
    pub umask: u32,
    /// Host file the child writes the mount points it created into (one relative path per line).
    pub created_report: PathBuf,
    /// An empty directory the child mounts a private tmpfs on (in its own mount namespace, invisible to the
    /// host) to hold secret files.
    pub secret_stage: PathBuf,
}
