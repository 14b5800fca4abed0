//! The step's filesystem, assembled inside the child's private mount namespace: the overlay (or the
//! private copy), /proc, a minimal /dev, a read-only /sys, the /etc files and the step's own mounts, then
//! `pivot_root` into it. Every mount point is resolved inside the rootfs, so an image's symlink cannot
//! aim a mount at the host. Mount points the step had to create are reported, so the diff leaves them out.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::spec::{Facilities, Isolation, ProcFs, RootfsSpec, RunSpec, SandboxMount};
use crate::layer::{clean_components, resolve_dir};

/// A setup failure, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct SetupError {
    what: String,
    #[source]
    source: std::io::Error,
}

impl SetupError {
    /// An error while doing `what`.
    pub fn new(what: impl Into<String>, source: std::io::Error) -> Self {
        SetupError { what: what.into(), source }
    }
}

fn fail<E: Into<std::io::Error>>(what: impl Into<String>) -> impl FnOnce(E) -> SetupError {
    let what = what.into();
    move |e| SetupError { what, source: e.into() }
}

fn errno(e: nix::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// Device nodes bound from the host into the step's /dev.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Paths (relative to the rootfs) of mount points this setup created.
pub type Created = Vec<String>;

/// Mounts the rootfs and everything in it and returns its path on the host, before `enter`.
pub fn assemble(spec: &RunSpec, created: &mut Created) -> Result<PathBuf, SetupError> {
    let root = mount_rootfs(spec)?;
    if spec.isolation != Isolation::Chroot {
        mount_kernel_fs(&root, spec.facilities, created)?;
    }
    if spec.isolation == Isolation::Chroot {
        chroot_devices(&root, created);
    }
    for (source, target) in &spec.etc_files {
        let before = created.len();
        let path = mount_point(&root, target, true, created)?;
        if spec.isolation != Isolation::Chroot {
            bind(source, &path, true)?;
        } else if created.len() > before {
            // Without mounts, only a missing file is provided; the image's own stays untouched.
            std::fs::copy(source, &path).map_err(fail(format!("write {}", path.display())))?;
        }
    }
    for m in &spec.mounts {
        let path = mount_point(
            &root,
            m.target(),
            matches!(m, SandboxMount::Bind { source, .. } if source.is_file()),
            created,
        )?;
        match m {
            SandboxMount::Bind { source, readonly, .. } => bind(source, &path, *readonly)?,
            SandboxMount::Tmpfs { size, .. } => {
                let data = size.map(|s| format!("size={s}"));
                mount(Some("tmpfs"), &path, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, data.as_deref())
                    .map_err(|e| fail(format!("mount tmpfs on {}", m.target()))(errno(e)))?;
            }
        }
    }
    Ok(root)
}

fn mount_rootfs(spec: &RunSpec) -> Result<PathBuf, SetupError> {
    if spec.isolation != Isolation::Chroot {
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
            .map_err(|e| fail("make the mount namespace private")(errno(e)))?;
    }
    match &spec.rootfs {
        RootfsSpec::Dir(dir) => {
            if spec.isolation != Isolation::Chroot {
                // pivot_root needs the new root to be a mount point.
                mount(Some(dir.as_path()), dir, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                    .map_err(|e| fail(format!("bind {}", dir.display()))(errno(e)))?;
            }
            Ok(dir.clone())
        }
        RootfsSpec::Overlay { base, lower, upper, work, merged, fuse } => {
            // Relative lower dirs keep long chains under the one-page limit of mount options.
            std::env::set_current_dir(base).map_err(fail(format!("enter {}", base.display())))?;
            let mut options =
                format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), upper.display(), work.display());
            if *fuse {
                fuse_overlay(&options, merged)?;
            } else {
                if spec.isolation == Isolation::Rootless {
                    options.push_str(",userxattr");
                }
                mount(Some("overlay"), merged, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
                    .map_err(|e| fail("mount overlay")(errno(e)))?;
            }
            Ok(merged.clone())
        }
    }
}

fn fuse_overlay(options: &str, merged: &Path) -> Result<(), SetupError> {
    let status = std::process::Command::new("fuse-overlayfs")
        .arg("-o")
        .arg(options)
        .arg(merged)
        .status()
        .map_err(fail("run fuse-overlayfs"))?;
    if !status.success() {
        return Err(fail("mount fuse-overlayfs")(std::io::Error::other(format!("it exited with {status}"))));
    }
    Ok(())
}

/// /proc, /dev and /sys as detection found this machine allows them ([`probe_kernel_fs`]).
fn mount_kernel_fs(root: &Path, kernel: Facilities, created: &mut Created) -> Result<(), SetupError> {
    if kernel.proc != ProcFs::None {
        let proc = mount_point(root, "/proc", false, created)?;
        mount_proc(kernel.proc, &proc).map_err(|e| fail("mount /proc")(errno(e)))?;
    }
    let dev = mount_point(root, "/dev", false, created)?;
    mount(Some("tmpfs"), &dev, Some("tmpfs"), MsFlags::MS_NOSUID, Some("mode=755,size=65536k"))
        .map_err(|e| fail("mount /dev")(errno(e)))?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        if host.exists() {
            let target = dev.join(name);
            std::fs::File::create(&target).map_err(fail(format!("create /dev/{name}")))?;
            bind(&host, &target, false)?;
        }
    }
    populate_dev(&dev, kernel.devpts)?;
    if kernel.sys {
        let sys = mount_point(root, "/sys", false, created)?;
        bind(Path::new("/sys"), &sys, true)?;
    }
    Ok(())
}

/// Mounts the step's /proc on `target`: a fresh procfs, or the existing one bound with everything mounted
/// over its masked paths (a plain bind would be refused: those mounts are locked to it).
fn mount_proc(how: ProcFs, target: &Path) -> nix::Result<()> {
    match how {
        ProcFs::Fresh => {
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            mount(Some("proc"), target, Some("proc"), flags, None::<&str>)
        }
        ProcFs::Bound => mount(Some("/proc"), target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>),
        ProcFs::None => Ok(()),
    }
}

fn mount_devpts(target: &Path) -> nix::Result<()> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount(Some("devpts"), target, Some("devpts"), flags, Some("newinstance,ptmxmode=0666,mode=0620"))
}

/// Which kernel filesystems a step can have, tried by mounting each under `dir` the way a step's init
/// would — the caller must be the first process of a new pid namespace inside a private mount namespace.
/// /proc: fresh, else bound, else none; /dev/pts and /sys: mounted, else left out. `hostname` is left
/// false for the caller to find out.
pub fn probe_kernel_fs(dir: &Path) -> Facilities {
    let sub = |name: &str| {
        let path = dir.join(name);
        std::fs::create_dir_all(&path).ok().map(|()| path)
    };
    let proc = [ProcFs::Fresh, ProcFs::Bound]
        .into_iter()
        .find(|how| sub(&format!("proc-{how:?}")).is_some_and(|p| mount_proc(*how, &p).is_ok()))
        .unwrap_or(ProcFs::None);
    let devpts = sub("pts").is_some_and(|p| mount_devpts(&p).is_ok());
    let sys = sub("sys").is_some_and(|p| bind(Path::new("/sys"), &p, true).is_ok());
    Facilities { proc, devpts, sys, hostname: false }
}

fn populate_dev(dev: &Path, devpts: bool) -> Result<(), SetupError> {
    let pts = dev.join("pts");
    std::fs::create_dir(&pts).map_err(fail("create /dev/pts"))?;
    if devpts {
        mount_devpts(&pts).map_err(|e| fail("mount /dev/pts")(errno(e)))?;
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    let shm = dev.join("shm");
    std::fs::create_dir(&shm).map_err(fail("create /dev/shm"))?;
    mount(Some("shm"), &shm, Some("tmpfs"), flags | MsFlags::MS_NODEV, Some("mode=1777,size=65536k"))
        .map_err(|e| fail("mount /dev/shm")(errno(e)))?;
    for (name, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(name)).map_err(fail(format!("link /dev/{name}")))?;
    }
    Ok(())
}

/// Resolves `target` inside `root`, creating what is missing (a directory, or an empty file when `file`),
/// and records what it created. A symlink at the end is followed inside the root (an image's
/// `/etc/resolv.conf -> ../run/...` gets its target created there).
pub fn mount_point(root: &Path, target: &str, file: bool, created: &mut Created) -> Result<PathBuf, SetupError> {
    let mut target = target.to_string();
    for _ in 0..40 {
        let parts = clean_components(&target);
        let Some((last, parents)) = parts.split_last() else { return Ok(root.to_path_buf()) };
        let dir = parent_dir(root, parents, &target, created)?;
        let path = dir.join(last);
        match std::fs::symlink_metadata(&path) {
            Err(_) => {
                if file { std::fs::File::create(&path).map(drop) } else { std::fs::create_dir(&path) }
                    .map_err(fail(format!("create {}", path.display())))?;
                record(root, &path, created);
                return Ok(path);
            }
            Ok(meta) if meta.file_type().is_symlink() => {
                target = link_target(root, &dir, &path)?;
            }
            Ok(_) => return Ok(path),
        }
    }
    Err(fail(format!("resolve {target}"))(std::io::Error::other("too many levels of symbolic links")))
}

/// The directory `parents` names inside `root` (symlinks followed in the root), created where missing.
fn parent_dir(root: &Path, parents: &[String], target: &str, created: &mut Created) -> Result<PathBuf, SetupError> {
    let mut dir = root.to_path_buf();
    for i in 0..parents.len() {
        match resolve_dir(root, &parents[..=i], false, target) {
            Ok(path) => dir = path,
            Err(_) => {
                let path = dir.join(&parents[i]);
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                    // A dangling link (`/var/run -> /run` without /run): create its target inside the root.
                    dir = mount_point(root, &link_target(root, &dir, &path)?, false, created)?;
                } else {
                    std::fs::create_dir(&path).map_err(fail(format!("create {}", path.display())))?;
                    record(root, &path, created);
                    dir = path;
                }
            }
        }
    }
    Ok(dir)
}

/// Where the symlink `link` (in `dir`) points, as an absolute path inside `root`.
fn link_target(root: &Path, dir: &Path, link: &Path) -> Result<String, SetupError> {
    let to = std::fs::read_link(link).map_err(fail(format!("read link {}", link.display())))?;
    let to = to.to_string_lossy();
    if to.starts_with('/') {
        return Ok(to.into_owned());
    }
    let rel_dir = dir.strip_prefix(root).unwrap_or(Path::new("")).to_string_lossy().into_owned();
    Ok(format!("/{rel_dir}/{to}"))
}

fn record(root: &Path, path: &Path, created: &mut Created) {
    if let Ok(rel) = path.strip_prefix(root) {
        created.push(rel.to_string_lossy().into_owned());
    }
}

fn bind(source: &Path, target: &Path, readonly: bool) -> Result<(), SetupError> {
    let what = || format!("bind {} on {}", source.display(), target.display());
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| fail(what())(errno(e)))?;
    if readonly {
        // A read-only bind takes a remount; locked flags must be repeated or the kernel refuses it.
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        let locked = flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
            .or_else(|_| mount(None::<&str>, target, None::<&str>, locked, None::<&str>))
            .map_err(|e| fail(format!("{} read-only", what()))(errno(e)))?;
    }
    Ok(())
}

/// Chroot mode cannot mount: missing device nodes are created (where this process may) and removed again
/// by [`remove_created`].
fn chroot_devices(root: &Path, created: &mut Created) {
    let Ok(dev) = mount_point(root, "/dev", false, created) else { return };
    for name in DEVICES {
        let target = dev.join(name);
        let Ok(host) = std::fs::metadata(Path::new("/dev").join(name)) else { continue };
        if std::fs::symlink_metadata(&target).is_ok() {
            continue;
        }
        let kind = nix::sys::stat::SFlag::S_IFCHR;
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o666);
        if nix::sys::stat::mknod(&target, kind, mode, std::os::unix::fs::MetadataExt::rdev(&host)).is_ok() {
            record(root, &target, created);
        }
    }
}

/// The names in `/dev` of the current root (chroot mode, after `enter`).
pub fn dev_entries() -> Vec<std::ffi::OsString> {
    std::fs::read_dir("/dev").into_iter().flatten().flatten().map(|e| e.file_name()).collect()
}

/// Removes what appeared in `/dev` since `before` (chroot mode, after the command): in every other mode
/// /dev is a tmpfs, and BuildKit's is too, so nothing a step writes there reaches the image. Skipped when
/// the step replaced /dev with something other than a directory.
pub fn remove_new_dev_entries(before: &[std::ffi::OsString]) {
    if !std::fs::symlink_metadata("/dev").is_ok_and(|m| m.is_dir()) {
        return;
    }
    for name in dev_entries().into_iter().filter(|n| !before.contains(n)) {
        let path = Path::new("/dev").join(name);
        let _ = if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

/// Removes what [`assemble`] created in a rootfs it could not mount over (chroot mode), newest first;
/// a directory the command filled stays.
pub fn remove_created(root: &Path, created: &Created) {
    for rel in created.iter().rev() {
        let path = root.join(rel);
        if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            let _ = std::fs::remove_dir(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Makes `root` the process's root: pivot_root (the old root detached) or, in chroot mode, chroot.
pub fn enter(root: &Path, isolation: Isolation) -> Result<(), SetupError> {
    std::env::set_current_dir(root).map_err(fail(format!("enter {}", root.display())))?;
    if isolation == Isolation::Chroot {
        nix::unistd::chroot(".").map_err(|e| fail("chroot")(errno(e)))?;
    } else {
        // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only the new root.
        nix::unistd::pivot_root(".", ".").map_err(|e| fail("pivot_root")(errno(e)))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(|e| fail("detach the old root")(errno(e)))?;
    }
    std::env::set_current_dir("/").map_err(fail("enter /"))
}

/// Which overlay this mount namespace can mount in `dir`: `overlay` (kernel), `fuse` (fuse-overlayfs) or
/// `copy` (neither; the step runs in a private copy).
pub fn probe_overlay(dir: &Path, rootless: bool) -> &'static str {
    let [lower, upper, work, merged] = ["l", "u", "w", "m"].map(|n| dir.join(n));
    if [&lower, &upper, &work, &merged].iter().any(|d| std::fs::create_dir_all(d).is_err()) {
        return "copy";
    }
    let options = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
    let kernel = if rootless { format!("{options},userxattr") } else { options.clone() };
    if mount(Some("overlay"), &merged, Some("overlay"), MsFlags::empty(), Some(kernel.as_str())).is_ok() {
        let _ = umount2(&merged, MntFlags::MNT_DETACH);
        return "overlay";
    }
    if which("fuse-overlayfs") && Path::new("/dev/fuse").exists() && fuse_overlay(&options, &merged).is_ok() {
        let _ = umount2(&merged, MntFlags::MNT_DETACH);
        return "fuse";
    }
    "copy"
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()))
}
