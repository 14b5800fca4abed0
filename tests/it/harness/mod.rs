//! The integration-test harness: kiln itself, a real registry on 127.0.0.1, the peers that check our
//! output (skopeo, umoci, podman), a busybox base rootfs and a tiny HTTP server — so a test is a few lines.
//!
//! A missing tool skips the test that needs it with a message, except under `CI=true`, where it fails.

#![allow(dead_code)]

pub mod fixtures;
pub mod http;
pub mod pod;
pub mod registry;
pub mod rootless;
pub mod supply;
pub mod validators;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use registry::Registry;

/// Waits up to 15 s for `condition`, looking every 100 ms.
pub fn wait_for(condition: impl Fn() -> bool) -> bool {
    (0..150).any(|_| {
        let met = condition();
        if !met {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        met
    })
}

/// How many processes on this machine have exactly `cmdline` (NUL-separated argv, NUL-terminated).
pub fn processes_with_cmdline(cmdline: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == cmdline.as_bytes()))
        .count()
}

/// True under `CI=true`.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether `tool` can run; says why not, and fails the test under CI.
pub fn require(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        assert!(!ci(), "{tool} is required under CI=true (make test-deps installs it)");
        eprintln!("skipping: {tool} is not installed (make test-deps)");
    }
    found
}

/// A validator installed by `make test-validators` (PyPI/npm tools kept in /var/cache/kiln-test-tools) or
/// found on PATH; `None` (after saying why) when missing outside CI, a failure under `CI=true`.
pub fn validator(name: &str) -> Option<PathBuf> {
    let cache = Path::new("/var/cache/kiln-test-tools");
    let candidates = [cache.join("venv/bin").join(name), cache.join("npm/node_modules/.bin").join(name)];
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return Some(found);
    }
    require(name).then(|| PathBuf::from(name))
}

/// A scratch directory to write a Dockerfile and its context into.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// An empty workspace.
    pub fn new() -> Workspace {
        Workspace { dir: tempfile::tempdir().expect("temp dir") }
    }

    /// The workspace directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (creating parents) and returns the workspace for chaining.
    pub fn file(&self, rel: &str, content: impl AsRef<[u8]>) -> &Workspace {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write");
        self
    }

    /// The Dockerfile.
    pub fn dockerfile(&self, text: &str) -> &Workspace {
        self.file("Dockerfile", text)
    }
}

/// kiln with a store of its own.
pub struct Kiln {
    store: tempfile::TempDir,
    /// Where `--root` points: the temp dir, or a path inside it that kiln creates.
    root: PathBuf,
    /// Program and leading arguments kiln runs under (`runuser -u USER --`, `setpriv ...`), then kiln.
    launcher: Vec<PathBuf>,
    /// Environment variables set for every run.
    envs: Vec<(String, String)>,
}

/// A finished kiln run.
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Kiln {
    /// kiln with a fresh, empty store.
    pub fn new() -> Kiln {
        Kiln::launched_by(vec![PathBuf::from(env!("CARGO_BIN_EXE_kiln"))])
    }

    /// kiln started through `launcher` (a wrapper command ending with the kiln binary to run).
    pub fn launched_by(launcher: Vec<PathBuf>) -> Kiln {
        let store = tempfile::tempdir().expect("temp dir");
        let root = store.path().to_path_buf();
        Kiln { store, root, launcher, envs: Vec::new() }
    }

    /// The same kiln with `--root` at `rel` inside its temp dir, a store kiln itself creates.
    pub fn with_root_inside(mut self, rel: &str) -> Kiln {
        self.root = self.store.path().join(rel);
        self
    }

    /// The same kiln with `name=value` in its environment.
    pub fn with_env(mut self, name: &str, value: &str) -> Kiln {
        self.envs.push((name.to_string(), value.to_string()));
        self
    }

    /// The temp dir that holds the store (its parent when the store is inside it).
    pub fn home(&self) -> &Path {
        self.store.path()
    }

    /// kiln as root would run it in a build pod without mount rights (no CAP_SYS_ADMIN): chroot mode.
    pub fn without_mount_rights() -> Kiln {
        let mut launcher: Vec<PathBuf> = ["setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", "--"]
            .iter()
            .map(PathBuf::from)
            .collect();
        launcher.push(PathBuf::from(env!("CARGO_BIN_EXE_kiln")));
        Kiln::launched_by(launcher)
    }

    /// The store directory (an OCI layout).
    pub fn store(&self) -> &Path {
        &self.root
    }

    /// The command that runs kiln with `args` (and `--root` pointing at the store), for a test to add a
    /// working directory, environment or stdio before running it.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.launcher[0]);
        command
            .args(&self.launcher[1..])
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .env_remove("SOURCE_DATE_EPOCH")
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs kiln as [`Kiln::command`] prepared it.
    pub fn run_command(&self, mut command: Command) -> Run {
        let out: Output = command.output().expect("kiln runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kiln with `args` (and `--root` pointing at the store).
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_command(self.command(args))
    }

    /// Starts kiln with `args` without waiting (output discarded).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(&self.launcher[0])
            .args(&self.launcher[1..])
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("kiln starts")
    }

    /// Runs kiln and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(run.code, 0, "kiln {args:?} failed\nstdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
        run.stdout
    }

    /// Runs kiln and insists on failure; returns the run for checking its message.
    pub fn fails(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_ne!(run.code, 0, "kiln {args:?} should have failed\nstdout:\n{}", run.stdout);
        run
    }

    /// Builds `ws` tagged `tag`; returns the image ID (the last line of stdout).
    pub fn build(&self, ws: &Workspace, tag: &str, extra: &[&str]) -> String {
        let ctx = ws.path().to_string_lossy().into_owned();
        let mut args = vec!["build", "-t", tag];
        args.extend_from_slice(extra);
        args.push(&ctx);
        let out = self.ok(&args);
        out.lines().last().unwrap_or_default().to_string()
    }

    /// `oci:<store>:<name>` for skopeo and umoci.
    pub fn oci_ref(&self, name: &str) -> String {
        format!("oci:{}:{name}", self.root.display())
    }
}

/// Runs a peer tool and insists on success; returns stdout.
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program} cannot run: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `image` (from the test registry) with podman in a throw-away storage; returns its stdout.
pub fn podman_run(image: &str, command: &[&str]) -> String {
    let storage = tempfile::tempdir().expect("temp dir");
    let root = format!("--root={}", storage.path().join("root").display());
    let runroot = format!("--runroot={}", storage.path().join("run").display());
    let mut args = vec![
        root.as_str(),
        runroot.as_str(),
        "--storage-driver=vfs",
        "--runtime",
        "runc",
        "run",
        "--rm",
        "--tls-verify=false",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        image,
    ];
    args.extend_from_slice(command);
    tool("podman", &args)
}

/// The image config exactly as written (`skopeo inspect --config --raw`).
pub fn skopeo_config(image: &str) -> serde_json::Value {
    let text = tool("skopeo", &["inspect", "--tls-verify=false", "--config", "--raw", image]);
    serde_json::from_str(&text).expect("config JSON")
}

/// Unpacks `image` from an OCI layout with umoci into a fresh directory; returns its rootfs.
pub fn umoci_unpack(layout: &Path, name: &str) -> (tempfile::TempDir, PathBuf) {
    let out = tempfile::tempdir().expect("temp dir");
    let bundle = out.path().join("bundle");
    let image = format!("{}:{name}", layout.display());
    let bundle_str = bundle.to_string_lossy().into_owned();
    let mut args = vec!["unpack", "--image", &image];
    let rootless = !nix_is_root();
    if rootless {
        args.push("--rootless");
    }
    args.push(&bundle_str);
    tool("umoci", &args);
    (out, bundle.join("rootfs"))
}

fn nix_is_root() -> bool {
    tool("id", &["-u"]).trim() == "0"
}

/// A minimal busybox rootfs: the static binary, one symlink per applet, passwd/group with root, daemon,
/// nobody and `app` (1000:1000) — root in `wheel` as in Docker's busybox image — and a world-writable /tmp.
pub fn busybox_rootfs(dir: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(busybox.exists(), "busybox-static is required (make test-deps)");
    for d in ["bin", "etc", "tmp", "root", "home/app"] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    std::fs::copy(busybox, dir.join("bin/busybox")).expect("copy busybox");
    let list = tool("/bin/busybox", &["--list"]);
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\ndaemon:x:1:\nwheel:x:10:root\nnobody:x:65534:\napp:x:1000:\nstaff:x:50:app\n",
    )
    .expect("group");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
}

/// A workspace whose Dockerfile makes a busybox base image (`FROM scratch` + `COPY rootfs/ /`).
pub fn busybox_workspace() -> Workspace {
    let ws = Workspace::new();
    busybox_rootfs(&ws.path().join("rootfs"));
    ws.dockerfile("FROM scratch\nCOPY rootfs/ /\nCMD [\"/bin/sh\"]\n");
    ws
}
