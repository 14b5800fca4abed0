//! kiln as the build pod: its image — the repository's `Containerfile` over the context `pod/context.sh`
//! assembles from the kiln under test (no CA bundle) — built by kiln itself, pushed to a test registry and
//! run by podman with its default security (default seccomp profile, default capabilities, no extra
//! privileges), kiln being the container's command, as build pods run it. Images built inside are read
//! back from the registry and unpacked with umoci, to compare file by file with the host's build.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{Registry, Run, require, tool};

/// The name of kiln's image in the shared store.
const IMAGE: &str = "localhost/kiln-pod:test";

/// The store holding kiln's image, built once per test process (a debug kiln takes a while to compress
/// itself) under cargo's scratch directory for integration tests; what earlier runs left there is removed.
fn image_store() -> Result<&'static Path, String> {
    static STORE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    STORE.get_or_init(build_image).as_deref().map_err(Clone::clone)
}

fn build_image() -> Result<PathBuf, String> {
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build-pod");
    for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
        let alive = entry.file_name().to_str().is_some_and(|pid| Path::new("/proc").join(pid).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = parent.join(std::process::id().to_string());
    let (context, store) = (dir.join("context"), dir.join("store"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = repo.join("pod/context.sh");
    let context_arg = context.to_string_lossy().into_owned();
    run_tool("sh", &[&script.to_string_lossy(), env!("CARGO_BIN_EXE_kiln"), &context_arg])?;
    let containerfile = repo.join("Containerfile").to_string_lossy().into_owned();
    let store_arg = store.to_string_lossy().into_owned();
    // zstd: a debug kiln compresses its own 30 MB several times faster than with gzip.
    let build = ["--root", &store_arg, "build", "-f", &containerfile, "--compression-format", "zstd", "-t", IMAGE];
    run_tool(env!("CARGO_BIN_EXE_kiln"), &[&build[..], &[context_arg.as_str()]].concat())?;
    let _ = std::fs::remove_dir_all(&context);
    Ok(store)
}

fn run_tool(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!("{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// kiln's image in a registry, and a podman storage to run it from.
pub struct Pod {
    /// The registry holding the image (plain HTTP on 127.0.0.1).
    pub registry: Registry,
    /// `127.0.0.1:PORT/kiln-pod:test`.
    pub image: String,
    podman: tempfile::TempDir,
}

impl Pod {
    /// kiln's image in a fresh registry, with a podman storage holding it; `None` (after saying why; a
    /// failure under CI) when a tool is missing.
    pub fn start() -> Option<Pod> {
        if !["podman", "runc", "skopeo", "umoci", "setcap"].into_iter().all(require) {
            return None;
        }
        let store = image_store().unwrap_or_else(|e| panic!("cannot build kiln's image: {e}"));
        let registry = Registry::start()?;
        let image = registry.name("kiln-pod:test");
        let store = store.to_string_lossy();
        tool(env!("CARGO_BIN_EXE_kiln"), &["--root", &store, "push", "--tls-verify=false", IMAGE, &image]);
        let pod = Pod { registry, image, podman: tempfile::tempdir().expect("temp dir") };
        pod.podman(&["pull", "--quiet", "--tls-verify=false", &pod.image]);
        Some(pod)
    }

    fn podman(&self, args: &[&str]) -> Run {
        let root = format!("--root={}", self.podman.path().join("root").display());
        let runroot = format!("--runroot={}", self.podman.path().join("run").display());
        let out = Command::new("podman")
            .args([root.as_str(), runroot.as_str(), "--storage-driver=vfs", "--runtime", "runc"])
            .args(args)
            .output()
            .expect("podman runs");
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(args[0] == "run" || run.code == 0, "podman {args:?} failed:\n{}", run.stderr);
        run
    }

    /// Runs `command` as the container's command (pid 1) with podman `options` (`--user`, `--security-opt`,
    /// `-v` ...), the host's network (to reach the registry on 127.0.0.1) and `ctx` at /ctx, read-only.
    pub fn run(&self, options: &[&str], ctx: &Path, command: &[&str]) -> Run {
        // The container's user may be anyone: let it read the context.
        for entry in walkdir::WalkDir::new(ctx) {
            let entry = entry.expect("walk the context");
            let mode = if entry.file_type().is_dir() { 0o755 } else { 0o644 };
            if !entry.path_is_symlink() {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode)).expect("chmod");
            }
        }
        let volume = format!("{}:/ctx:ro", ctx.display());
        let mut args = vec![
            "run",
            "--rm",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "--network",
            "host",
            "-v",
            &volume,
        ];
        args.extend_from_slice(options);
        args.push(&self.image);
        args.extend_from_slice(command);
        self.podman(&args)
    }
}

/// Copies `reference` (`127.0.0.1:PORT/name:tag`, plain HTTP) out of its registry and unpacks it with umoci;
/// returns the rootfs (and the directory that keeps it).
pub fn unpack_from_registry(reference: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = dir.path().join("layout");
    let src = format!("docker://{reference}");
    let dest = format!("oci:{}:image", layout.display());
    tool("skopeo", &["copy", "--quiet", "--src-tls-verify=false", &src, &dest]);
    let (keep, rootfs) = super::umoci_unpack(&layout, "image");
    drop(dir);
    (keep, rootfs)
}

/// Every entry under `root` as `kind mode uid:gid links content`, by path: what two builds must agree on
/// (times left out). Regular files are named by a digest of their content, symlinks by their target.
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut entries = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.expect("walk the rootfs");
        let rel = entry.path().strip_prefix(root).expect("inside").to_string_lossy().into_owned();
        let meta = entry.path().symlink_metadata().expect("metadata");
        let what = if meta.file_type().is_symlink() {
            format!("link -> {}", std::fs::read_link(entry.path()).expect("readlink").display())
        } else if meta.is_file() {
            use sha2::Digest as _;
            let content = std::fs::read(entry.path()).expect("read");
            format!("file {} links={}", hex::encode(sha2::Sha256::digest(&content)), meta.nlink())
        } else if meta.is_dir() {
            "dir".to_string()
        } else {
            format!("special rdev={}", meta.rdev())
        };
        entries
            .insert(format!("/{rel}"), format!("{what} mode={:o} {}:{}", meta.mode() & 0o7777, meta.uid(), meta.gid()));
    }
    entries
}

/// The entries where `a` and `b` differ, one line each, for an assertion message.
pub fn tree_diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let paths: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    paths
        .into_iter()
        .filter(|p| a.get(*p) != b.get(*p))
        .map(|p| format!("{p}: host {:?}, pod {:?}", a.get(p), b.get(p)))
        .collect()
}
