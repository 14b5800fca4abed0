//! The step's filesystem, assembled inside the child's private mount namespace: the overlay (or the
//! private copy), /proc, a minimal /dev, a read-only /sys, the /etc files and the step's own mounts, then
//! `pivot_root` into it. Mount points the step had to create are reported, so the diff leaves them out.
//!
//! The rootfs and every bind source are trees kiln does not own, so both ends of every mount go through
//! [`crate::confine`]: a mount point is resolved (and created where missing) inside the rootfs, a bind
//! source inside its own tree, symlinks followed only inside, and the mount is made through
//! `/proc/self/fd/N` of the descriptors those resolutions returned — an image's or a context's symlink can
//! aim neither end at the host, and nothing can be swapped between the resolution and the mount.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::spec::{Facilities, Isolation, ProcFs, RootfsSpec, RunSpec, SandboxMount};
use crate::confine::{Dir, Handle, Kind, Leaf, Root};

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

/// A mount point inside the rootfs: the descriptor it resolved to, and its in-root path (a mount covers
/// the descriptor's inode, so a remount must resolve the path again to reach the new mount).
struct Point {
    handle: Handle,
    rel: String,
}

/// Mounts the rootfs and everything in it and returns its path on the host, before `enter`.
pub fn assemble(spec: &RunSpec, created: &mut Created) -> Result<PathBuf, SetupError> {
    let path = mount_rootfs(spec)?;
    let rootfs = Root::open(&path).map_err(fail(format!("open the rootfs {}", path.display())))?;
    let can_mount = spec.isolation != Isolation::Chroot;
    if can_mount {
        mount_kernel_fs(&rootfs, spec.facilities, created)?;
    } else {
        chroot_devices(&rootfs, created);
    }
    for (source, target) in &spec.etc_files {
        let (point, made) = mount_point(&rootfs, target, Leaf::File, created)?;
        if can_mount {
            bind(&rootfs, source, &point, true)?;
        } else if made {
            // Without mounts, only a missing file is provided; the image's own stays untouched.
            let text = std::fs::read(source).map_err(fail(format!("read {}", source.display())))?;
            std::fs::write(point.handle.proc_path(), text).map_err(fail(format!("write {target}")))?;
        }
    }
    if !can_mount && let Some(m) = spec.mounts.first() {
        return Err(fail(format!("mount {}", m.target()))(std::io::Error::other(
            "RUN --mount needs mount rights, which chroot isolation does not have (use --isolation rootless or root)",
        )));
    }
    let secrets = stage_secrets(spec)?;
    for (i, m) in spec.mounts.iter().enumerate() {
        match m {
            SandboxMount::Bind { root, subpath, target, readonly } => {
                let shown = root.join(subpath);
                let tree = Root::open(root).map_err(fail(format!("open {}", root.display())))?;
                let source =
                    tree.resolve(subpath).map_err(fail(format!("resolve the bind source {}", shown.display())))?;
                let leaf = match source.meta() {
                    Ok(meta) if meta.is_dir() => Leaf::Dir,
                    _ => Leaf::File,
                };
                let (point, _) = mount_point(&rootfs, target, leaf, created)?;
                bind(&rootfs, &source.proc_path(), &point, *readonly)?;
            }
            SandboxMount::Tmpfs { target, size } => {
                let (point, _) = mount_point(&rootfs, target, Leaf::Dir, created)?;
                let data = size.map(|s| format!("size={s}"));
                let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
                mount(Some("tmpfs"), &point.handle.proc_path(), Some("tmpfs"), flags, data.as_deref())
                    .map_err(|e| fail(format!("mount tmpfs on {target}"))(errno(e)))?;
            }
            SandboxMount::Secret { target, .. } => {
                let (point, _) = mount_point(&rootfs, target, Leaf::File, created)?;
                bind(&rootfs, &secrets.join(i.to_string()), &point, true)?;
            }
        }
    }
    Ok(path)
}

/// Writes the step's secret files into a tmpfs mounted on `spec.secret_stage` — in this mount namespace
/// only: the host sees an empty directory, and the tmpfs dies with the step, however it ends.
fn stage_secrets(spec: &RunSpec) -> Result<PathBuf, SetupError> {
    let stage = spec.secret_stage.clone();
    if !spec.mounts.iter().any(|m| matches!(m, SandboxMount::Secret { .. })) {
        return Ok(stage);
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("tmpfs"), &stage, Some("tmpfs"), flags, Some("mode=0700,size=16m"))
        .map_err(|e| fail("mount the secrets tmpfs")(errno(e)))?;
    for (i, m) in spec.mounts.iter().enumerate() {
        let SandboxMount::Secret { target, value, mode, uid, gid } = m else { continue };
        let path = stage.join(i.to_string());
        let what = || format!("write the secret for {target}");
        std::fs::write(&path, &value.0).map_err(fail(what()))?;
        std::os::unix::fs::chown(&path, Some(*uid), Some(*gid)).map_err(fail(what()))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(*mode)).map_err(fail(what()))?;
    }
    Ok(stage)
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
                mount_overlay(&options, merged)?;
            }
            Ok(merged.clone())
        }
    }
}

/// Mounts a step's overlay `volatile` where the kernel has it (5.10+). Without it, the last unmount syncs the
/// whole upper filesystem (`ovl_sync_fs`): every RUN would wait for the write-back of everything kiln and
/// others just wrote there — 0.28 s after c1r's cold COPY. The upper dir is scratch until kiln commits it,
/// and what kiln keeps it makes durable itself (see "Crash safety").
fn mount_overlay(options: &str, merged: &Path) -> Result<(), SetupError> {
    let volatile = format!("{options},volatile");
    match mount(Some("overlay"), merged, Some("overlay"), MsFlags::empty(), Some(volatile.as_str())) {
        Err(nix::errno::Errno::EINVAL) => {
            mount(Some("overlay"), merged, Some("overlay"), MsFlags::empty(), Some(options))
        }
        other => other,
    }
    .map_err(|e| fail("mount overlay")(errno(e)))
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
fn mount_kernel_fs(rootfs: &Root, kernel: Facilities, created: &mut Created) -> Result<(), SetupError> {
    if kernel.proc != ProcFs::None {
        let (proc, _) = mount_point(rootfs, "/proc", Leaf::Dir, created)?;
        mount_proc(kernel.proc, &proc.handle.proc_path()).map_err(|e| fail("mount /proc")(errno(e)))?;
    }
    let (dev, _) = mount_point(rootfs, "/dev", Leaf::Dir, created)?;
    mount(Some("tmpfs"), &dev.handle.proc_path(), Some("tmpfs"), MsFlags::MS_NOSUID, Some("mode=755,size=65536k"))
        .map_err(|e| fail("mount /dev")(errno(e)))?;
    // The fresh tmpfs, reached by resolving the mount point again.
    let dev = rootfs.dir(&dev.rel).map_err(fail("open /dev"))?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        if host.exists() {
            drop(dev.create_file(name.as_ref(), 0o666).map_err(fail(format!("create /dev/{name}")))?);
            bind_path(&host, &dev.proc_path().join(name))?;
        }
    }
    populate_dev(&dev, kernel.devpts)?;
    if kernel.sys {
        let (sys, _) = mount_point(rootfs, "/sys", Leaf::Dir, created)?;
        bind(rootfs, Path::new("/sys"), &sys, true)?;
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
/// false for the caller to find out. `dir` is kiln's own scratch directory, so plain paths are safe here;
/// its parent must exist: nothing here re-creates it.
pub fn probe_kernel_fs(dir: &Path) -> Facilities {
    let made = std::fs::create_dir(dir).is_ok();
    let sub = |name: &str| {
        let path = dir.join(name);
        (made && std::fs::create_dir(&path).is_ok()).then_some(path)
    };
    let proc = [ProcFs::Fresh, ProcFs::Bound]
        .into_iter()
        .find(|how| sub(&format!("proc-{how:?}")).is_some_and(|p| mount_proc(*how, &p).is_ok()))
        .unwrap_or(ProcFs::None);
    let devpts = sub("pts").is_some_and(|p| mount_devpts(&p).is_ok());
    let sys = sub("sys").is_some_and(|p| bind_path(Path::new("/sys"), &p).is_ok() && remount_readonly(&p).is_ok());
    Facilities { proc, devpts, sys, hostname: false }
}

fn populate_dev(dev: &Dir, devpts: bool) -> Result<(), SetupError> {
    dev.create_dir("pts".as_ref(), 0o755).map_err(fail("create /dev/pts"))?;
    if devpts {
        mount_devpts(&dev.proc_path().join("pts")).map_err(|e| fail("mount /dev/pts")(errno(e)))?;
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    dev.create_dir("shm".as_ref(), 0o1777).map_err(fail("create /dev/shm"))?;
    mount(
        Some("shm"),
        &dev.proc_path().join("shm"),
        Some("tmpfs"),
        flags | MsFlags::MS_NODEV,
        Some("mode=1777,size=65536k"),
    )
    .map_err(|e| fail("mount /dev/shm")(errno(e)))?;
    for (name, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        dev.symlink(name.as_ref(), target.as_ref()).map_err(fail(format!("link /dev/{name}")))?;
    }
    Ok(())
}

/// Resolves `target` inside the rootfs, creating what is missing (a directory, or an empty file for
/// [`Leaf::File`]); a symlink on the way or at the end is followed inside the rootfs, a dangling one by
/// creating its target there (an image's `/etc/resolv.conf -> ../run/...`). Records what it created;
/// tells whether it created the point itself.
fn mount_point(rootfs: &Root, target: &str, leaf: Leaf, created: &mut Created) -> Result<(Point, bool), SetupError> {
    let what = || format!("create the mount point {target}");
    let (handle, made) = rootfs.ensure(target, leaf, 0o755).map_err(fail(what()))?;
    let rel = rootfs.relative(&handle).map_err(fail(what()))?;
    let new = made.last().is_some_and(|last| *last == rel);
    created.extend(made);
    Ok((Point { handle, rel }, new))
}

/// Binds `source` (a path kiln trusts, or a descriptor's `/proc/self/fd/N`) on `point`, read-only when
/// asked; a bind that cannot be made read-only is taken away again.
fn bind(rootfs: &Root, source: &Path, point: &Point, readonly: bool) -> Result<(), SetupError> {
    let what = || format!("bind {} on /{}", source.display(), point.rel);
    bind_path(source, &point.handle.proc_path()).map_err(|e| fail(what())(e.source))?;
    if readonly {
        // The remount must reach the new mount, which covers the descriptor's inode: resolve it again.
        let top_handle = rootfs.resolve_nofollow(&point.rel).map_err(fail(what()))?;
        let top = top_handle.proc_path();
        if let Err(e) = remount_readonly(&top) {
            let _ = umount2(&top, MntFlags::MNT_DETACH);
            return Err(fail(format!("{} read-only", what()))(errno(e)));
        }
    }
    Ok(())
}

/// Makes the bind mount at `target` read-only.
fn remount_readonly(target: &Path) -> nix::Result<()> {
    // A read-only bind takes a remount; locked flags must be repeated or the kernel refuses it.
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    let locked = flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .or_else(|_| mount(None::<&str>, target, None::<&str>, locked, None::<&str>))
}

/// A recursive bind of `source` on `target`, both paths the kernel resolves as they are.
fn bind_path(source: &Path, target: &Path) -> Result<(), SetupError> {
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| fail(format!("bind {} on {}", source.display(), target.display()))(errno(e)))
}

/// Chroot mode cannot mount: missing device nodes are created (where this process may) and removed again
/// by [`remove_created`].
fn chroot_devices(rootfs: &Root, created: &mut Created) {
    let Ok((dev, _)) = mount_point(rootfs, "/dev", Leaf::Dir, created) else { return };
    let Ok(dir) = rootfs.dir(&dev.rel) else { return };
    for name in DEVICES {
        let Ok(host) = std::fs::metadata(Path::new("/dev").join(name)) else { continue };
        if !matches!(dir.try_lstat(name.as_ref()), Ok(None)) {
            continue;
        }
        let rdev = std::os::unix::fs::MetadataExt::rdev(&host);
        let device = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
        if dir.mknod(name.as_ref(), Kind::CharDevice, 0o666, device).is_ok() {
            created.push(format!("{}/{name}", dev.rel));
        }
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
/// `copy` (neither; the step runs in a private copy). `dir` must exist: nothing here re-creates it (it is in
/// kiln's temp directory, which a clean-up may have claimed by the time a late probe gets here).
pub fn probe_overlay(dir: &Path, rootless: bool) -> &'static str {
    let [lower, upper, work, merged] = ["l", "u", "w", "m"].map(|n| dir.join(n));
    if [&lower, &upper, &work, &merged].iter().any(|d| std::fs::create_dir(d).is_err()) {
        return "copy";
    }
    let options = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
    let kernel = if rootless { format!("{options},userxattr") } else { options.clone() };
    if mount_overlay(&kernel, &merged).is_ok() {
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
