//! RUN steps in every isolation mode: as root (or the calling user), as an unprivileged user with a
//! sub-id range, and in chroot mode (no mount rights, as in a locked-down build pod). Results are unpacked
//! with umoci and checked from the outside; the end-to-end test runs the image with podman.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::harness::rootless;
use crate::harness::{
    Kiln, Registry, Workspace, busybox_rootfs, ci, processes_with_cmdline, require, tool, umoci_unpack, wait_for,
};

fn is_root() -> bool {
    tool("id", &["-u"]).trim() == "0"
}

/// The busybox base, with a file carrying a capability when this process may set one.
fn base(kiln: &Kiln) -> bool {
    let ws = Workspace::new();
    let rootfs = ws.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let capped = rootfs.join("bin/capped");
    std::fs::copy(rootfs.join("bin/busybox"), &capped).unwrap();
    ws.dockerfile("FROM scratch\nCOPY rootfs/ /\n");
    rootless::give(ws.path());
    // After the chown above, which clears file capabilities.
    let has_caps = is_root() && require("setcap") && {
        tool("setcap", &["cap_net_raw+ep", &capped.to_string_lossy()]);
        true
    };
    kiln.build(&ws, "busybox:test", &[]);
    has_caps
}

const CHANGES: &str = "FROM localhost/busybox:test
RUN echo old > /home/app/old && echo keep > /keep-me && mkdir /opaque && echo a > /opaque/a
RUN true
RUN echo new > /new.txt && echo changed >> /etc/passwd && rm /bin/vi \\
 && rm -rf /home/app && mkdir -p /home/app && echo fresh > /home/app/only \\
 && rm -rf /opaque && mkdir /opaque && echo b > /opaque/b
RUN ln /new.txt /hard.txt && cp /bin/busybox /suid && chmod 4755 /suid && chown app:staff /new.txt \\
 && chmod 0750 /bin/capped
USER app
WORKDIR /tmp
RUN id -u > whoami && id -G >> whoami && echo $HOME >> whoami && umask >> whoami
";

/// Builds [`CHANGES`] with `kiln` (and `extra` build flags) and checks every change from the outside.
fn check_filesystem_changes(kiln: &Kiln, extra: &[&str]) {
    if !require("umoci") {
        return;
    }
    let has_caps = base(kiln);
    let ws = Workspace::new();
    ws.dockerfile(CHANGES);
    rootless::give(ws.path());
    kiln.build(&ws, "changes:1", extra);
    let (_keep, r) = umoci_unpack(kiln.store(), "localhost/changes:1");
    let read = |p: &str| std::fs::read_to_string(r.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("new.txt"), "new\n");
    assert_eq!(read("keep-me"), "keep\n", "files of earlier RUN layers stay");
    assert!(read("etc/passwd").ends_with("changed\n"), "a base file modified");
    assert!(r.join("bin/vi").symlink_metadata().is_err(), "a deleted base file is whited out");
    assert!(r.join("bin/sh").symlink_metadata().is_ok());
    assert!(r.join("home/app/only").is_file() && !r.join("home/app/old").exists(), "a replaced directory");
    assert!(r.join("opaque/b").is_file() && !r.join("opaque/a").exists(), "a replaced directory of a RUN layer");
    let meta = |p: &str| std::fs::symlink_metadata(r.join(p)).unwrap();
    assert_eq!(meta("hard.txt").ino(), meta("new.txt").ino(), "hard links stay links");
    assert_eq!(meta("suid").permissions().mode() & 0o7777, 0o4755, "setuid bit");
    assert_eq!(read("tmp/whoami"), "1000\n1000 50\n/home/app\n0022\n", "USER with its groups, HOME, umask");
    for stub in ["proc", "dev", "sys", "etc/hosts", "etc/resolv.conf", "etc/hostname"] {
        assert!(r.join(stub).symlink_metadata().is_err(), "{stub} is the sandbox's, not the image's");
    }
    if is_root() {
        assert_eq!((meta("new.txt").uid(), meta("new.txt").gid()), (1000, 50), "chown inside RUN");
        assert_eq!(meta("tmp/whoami").uid(), 1000, "files of USER app");
    }
    if has_caps {
        let caps = tool("getcap", &[&r.join("bin/capped").to_string_lossy()]);
        assert!(caps.contains("cap_net_raw"), "file capabilities survive a RUN that touched the file: {caps}");
    }
}

#[test]
fn run_as_root_or_the_calling_user() {
    check_filesystem_changes(&Kiln::new(), &[]);
}

#[test]
fn run_rootless_with_a_subuid_range() {
    let Some(kiln) = rootless::kiln() else { return };
    check_filesystem_changes(&kiln, &[]);
    let run = kiln.run(&["build", "--isolation", "root", "-t", "x", "/nonexistent"]);
    assert_ne!(run.code, 0);
}

#[test]
fn run_in_chroot_mode_without_mount_rights() {
    if !is_root() || !require("setpriv") {
        assert!(!ci(), "CI runs as root: chroot mode must be tested there");
        eprintln!("skipping: imitating a pod without mount rights takes root (setpriv)");
        return;
    }
    let kiln = Kiln::without_mount_rights();
    check_filesystem_changes(&kiln, &["--isolation", "chroot"]);
    let ws = Workspace::new();
    ws.dockerfile("FROM localhost/busybox:test\nRUN true\n");
    let ctx = ws.path().to_string_lossy();
    let run = kiln.run(&["build", "--isolation", "root", "-t", "x", &ctx]);
    assert_ne!(run.code, 0, "namespaces cannot be had here");
    assert!(run.stderr.contains("namespace"), "says why: {}", run.stderr);
    // Left to choose, root without mount rights takes a user namespace, where it has them.
    let run = kiln.run(&["build", "-t", "x", &ctx]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("RUN isolation: rootless (root in a user namespace"), "{}", run.stderr);
}

#[test]
fn mounts_cache_secret_bind_and_tmpfs() {
    if !require("umoci") {
        return;
    }
    let kiln = Kiln::new();
    base(&kiln);
    let ws = Workspace::new();
    let secret = ws.path().join("token.txt");
    std::fs::write(&secret, "s3cr3t-value").unwrap();
    ws.file("ctx/data.txt", "from the context").dockerfile(
        "FROM localhost/busybox:test AS tools\n\
         RUN echo tool > /tool.txt\n\
         FROM localhost/busybox:test\n\
         RUN --mount=type=cache,target=/cache echo run >> /cache/log && wc -l < /cache/log > /cache-count\n\
         RUN --mount=type=secret,id=token cat /run/secrets/token | wc -c > /secret-size\n\
         RUN --mount=type=secret,id=token,env=TOKEN printf %s \"$TOKEN\" | wc -c > /secret-env\n\
         RUN --mount=type=bind,source=ctx,target=/ctx cp /ctx/data.txt /copied.txt\n\
         RUN --mount=type=bind,from=tools,source=/tool.txt,target=/mnt/tool.txt cp /mnt/tool.txt /from-stage.txt\n\
         RUN --mount=type=bind,source=ctx,target=/ctx,rw echo scribble > /ctx/data.txt\n\
         RUN --mount=type=tmpfs,target=/scratch echo gone > /scratch/file && mount | grep -q ' /scratch '\n",
    );
    let secret_flag = format!("id=token,src={}", secret.display());
    kiln.build(&ws, "mounts:1", &["--secret", &secret_flag]);
    kiln.build(&ws, "mounts:2", &["--secret", &secret_flag, "--no-cache"]);
    let (_keep, r) = umoci_unpack(kiln.store(), "localhost/mounts:2");
    let read = |p: &str| std::fs::read_to_string(r.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("cache-count").trim(), "2", "the cache mount persists between builds");
    assert!(!r.join("cache").join("log").exists(), "cache contents stay out of the image");
    assert_eq!(read("secret-size").trim(), "12");
    assert_eq!(read("secret-env").trim(), "12", "env= secrets reach the command");
    assert!(r.join("run/secrets/token").symlink_metadata().is_err(), "no secret file in the image");
    assert_eq!(read("copied.txt"), "from the context");
    assert_eq!(read("from-stage.txt"), "tool\n");
    assert_eq!(
        std::fs::read_to_string(ws.path().join("ctx/data.txt")).unwrap(),
        "from the context",
        "rw binds are private"
    );
    assert!(r.join("scratch/file").symlink_metadata().is_err(), "tmpfs contents stay out of the image");
    let grep = std::process::Command::new("grep").arg("-rl").arg("s3cr3t-value").arg(kiln.store()).output().unwrap();
    assert_eq!(
        grep.status.code(),
        Some(1),
        "the secret is nowhere in the store: {}",
        String::from_utf8_lossy(&grep.stdout)
    );
}

#[test]
fn a_failing_command_names_its_exit_code_and_output() {
    let kiln = Kiln::new();
    base(&kiln);
    let ws = Workspace::new();
    ws.dockerfile("FROM localhost/busybox:test\nRUN echo before\nRUN echo about to fail; echo on stderr >&2; exit 2\n");
    let run = kiln.fails(&["build", "-t", "fail:1", &ws.path().to_string_lossy()]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("Dockerfile:3"), "{}", run.stderr);
    assert!(
        run.stderr.contains("process \"/bin/sh -c echo about to fail; echo on stderr >&2; exit 2\" did not complete successfully: exit code: 2"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("on stderr"), "the last lines of output: {}", run.stderr);
    let images = kiln.ok(&["images"]);
    assert!(!images.contains("fail"), "no image from a failed build: {images}");
    ws.dockerfile("FROM localhost/busybox:test\nRUN [\"/no/such/program\"]\n");
    let run = kiln.fails(&["build", "-t", "fail:2", &ws.path().to_string_lossy()]);
    assert!(run.stderr.contains("/no/such/program"), "{}", run.stderr);
}

#[test]
fn a_build_killed_during_run_leaves_nothing_behind() {
    let kiln = Kiln::new();
    base(&kiln);
    let ws = Workspace::new();
    let marker = format!("sleep\0{}\0", 600 + std::process::id() % 1000);
    ws.dockerfile(&format!("FROM localhost/busybox:test\nRUN {}\n", marker.trim_end_matches('\0').replace('\0', " ")));
    let ctx = ws.path().to_string_lossy().into_owned();
    let mut child = kiln.spawn(&["build", "-t", "killed:1", &ctx]);
    let started = wait_for(|| processes_with_cmdline(&marker) > 0);
    let _ = child.kill();
    let _ = child.wait();
    assert!(started, "the RUN step started");
    assert!(wait_for(|| processes_with_cmdline(&marker) == 0), "the step's processes die with the build");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&*kiln.store().to_string_lossy()), "nothing left mounted");
    ws.dockerfile("FROM localhost/busybox:test\nRUN echo fine > /fine\n");
    kiln.build(&ws, "after:1", &[]);
    kiln.ok(&["prune"]);
}

#[test]
fn an_image_built_with_run_runs_in_podman() {
    if !require("podman") || !require("skopeo") {
        return;
    }
    let Some(registry) = Registry::start() else { return };
    let kiln = Kiln::new();
    base(&kiln);
    let ws = Workspace::new();
    ws.dockerfile(
        "FROM localhost/busybox:test\n\
         RUN mkdir -p /opt/app && printf '#!/bin/sh\\necho built by kiln as $(id -u)\\n' > /opt/app/run && chmod 755 /opt/app/run\n\
         RUN echo 'svc:x:2000:2000::/:/bin/sh' >> /etc/passwd\n\
         USER svc\n\
         CMD [\"/opt/app/run\"]\n",
    );
    let name = registry.name("team/run:1");
    kiln.build(&ws, &name, &["--push", "--tls-verify=false"]);
    assert_eq!(crate::harness::podman_run(&name, &[]).trim(), "built by kiln as 2000");
}

#[test]
fn a_locked_cache_mount_is_used_by_one_step_at_a_time() {
    let kiln = Kiln::new();
    base(&kiln);
    let ws = Workspace::new();
    // Fails when another step holds the cache at the same time.
    ws.dockerfile(
        "FROM localhost/busybox:test\n\
         RUN --mount=type=cache,id=shared-tool,target=/c,sharing=locked \
         test ! -e /c/busy && touch /c/busy && sleep 1 && rm /c/busy\n",
    );
    let ctx = ws.path().to_string_lossy().into_owned();
    let args = ["build", "--no-cache", "-t", "locked:1", ctx.as_str()];
    let mut children: Vec<_> = (0..2).map(|_| kiln.spawn(&args)).collect();
    let ok = children.iter_mut().all(|c| c.wait().is_ok_and(|s| s.success()));
    assert!(ok, "both builds succeed: the second waited for the first");
}

#[test]
fn mount_points_behind_symlinks_stay_inside_and_out_of_the_layer() {
    if !require("umoci") {
        return;
    }
    let kiln = Kiln::new();
    let ws = Workspace::new();
    let rootfs = ws.path().join("rootfs");
    busybox_rootfs(&rootfs);
    // As in Ubuntu images: resolv.conf points into /run, which the image does not have.
    std::os::unix::fs::symlink("../run/systemd/stub-resolv.conf", rootfs.join("etc/resolv.conf")).unwrap();
    std::os::unix::fs::symlink("/var/run", rootfs.join("cache-link")).unwrap();
    ws.dockerfile(
        "FROM scratch\nCOPY rootfs/ /\n\
         RUN --mount=type=cache,target=/cache-link/c grep -q nameserver /etc/resolv.conf && echo ok > /made\n",
    );
    kiln.build(&ws, "links:1", &[]);
    let (_keep, r) = umoci_unpack(kiln.store(), "localhost/links:1");
    assert_eq!(std::fs::read_to_string(r.join("made")).unwrap(), "ok\n");
    assert!(r.join("etc/resolv.conf").symlink_metadata().unwrap().file_type().is_symlink(), "the image's link stays");
    for stub in ["run", "var"] {
        assert!(r.join(stub).symlink_metadata().is_err(), "{stub}: created only to mount on, so not in the image");
    }
}

#[test]
fn no_isolation_at_all_says_what_is_missing() {
    if !is_root() || !require("setpriv") {
        assert!(!ci(), "CI runs as root: this must be tested there");
        eprintln!("skipping: dropping capabilities with setpriv takes root");
        return;
    }
    // Root without CAP_SYS_ADMIN and CAP_SYS_CHROOT, where user namespaces are disabled: a user namespace
    // of its own (root mapped to root) whose limit for nested ones is 0, so the host's stays untouched.
    let script = "echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --bounding-set -sys_admin,-sys_chroot \
                  --inh-caps -sys_admin,-sys_chroot -- \"$0\" \"$@\"";
    let mut launcher: Vec<std::path::PathBuf> = ["unshare", "--user", "--map-root-user", "--", "sh", "-c", script]
        .iter()
        .map(std::path::PathBuf::from)
        .collect();
    launcher.push(env!("CARGO_BIN_EXE_kiln").into());
    let kiln = Kiln::launched_by(launcher);
    let ws = Workspace::new();
    let rootfs = ws.path().join("rootfs");
    busybox_rootfs(&rootfs);
    ws.dockerfile("FROM scratch\nCOPY rootfs/ /\nRUN true\n");
    let run = kiln.fails(&["build", "-t", "none:1", &ws.path().to_string_lossy()]);
    assert!(run.stderr.contains("Dockerfile:3"), "{}", run.stderr);
    assert!(run.stderr.contains("CAP_SYS_CHROOT"), "says what to grant: {}", run.stderr);
    assert!(run.stderr.contains("user.max_user_namespaces=0"), "says which setting refuses: {}", run.stderr);
    assert!(!kiln.ok(&["images"]).contains("none"), "no image from a failed build");
}

/// The step's root overlay as the step sees it (its `/proc/self/mountinfo` line for `/`).
fn root_mount_of_a_run(kiln: &Kiln) -> String {
    base(kiln);
    let ws = Workspace::new();
    ws.dockerfile("FROM localhost/busybox:test\nRUN grep ' / / ' /proc/self/mountinfo > /root-mount\n");
    rootless::give(ws.path());
    kiln.build(&ws, "mountinfo:1", &[]);
    let (_keep, r) = umoci_unpack(kiln.store(), "localhost/mountinfo:1");
    std::fs::read_to_string(r.join("root-mount")).unwrap()
}

/// A RUN's overlay is volatile: unmounting it must not sync the whole disk under the store.
fn check_the_overlay_is_volatile(kiln: &Kiln) {
    if !require("umoci") {
        return;
    }
    let line = root_mount_of_a_run(kiln);
    if !line.contains(" - overlay ") {
        assert!(!ci(), "CI's kernel has overlayfs, so a RUN's root is an overlay: {line}");
        return;
    }
    // Newer kernels show the option as `fsync=volatile`.
    let options = line.split(' ').next_back().unwrap_or_default().trim();
    assert!(options.split(',').any(|o| o == "volatile" || o == "fsync=volatile"), "{line}");
}

#[test]
fn the_run_overlay_is_volatile_as_root() {
    check_the_overlay_is_volatile(&Kiln::new());
}

#[test]
fn the_run_overlay_is_volatile_rootless() {
    let Some(kiln) = rootless::kiln() else { return };
    check_the_overlay_is_volatile(&kiln);
}
