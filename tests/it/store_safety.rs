//! The store stays whole and private: a killed build, prune or push leaves nothing a later build trips on
//! (checked with `kiln fsck` and by unpacking the next image with umoci), other users reach nothing in
//! it, an interrupted build cleans up after itself, escape tricks in archives stay inside the image, and
//! the store commands work together.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{
    Kiln, Registry, Workspace, busybox_rootfs, busybox_workspace, ci, http, require, rootless, tool, umoci_unpack,
};

#[test]
fn a_killed_build_is_followed_by_a_good_one() {
    let ws = Workspace::new();
    // Big enough that the build is still writing its layer when it is killed.
    let big = vec![7u8; 64 << 20];
    for i in 0..4 {
        ws.file(&format!("big/{i}.bin"), &big);
    }
    ws.dockerfile("FROM scratch\nCOPY big /big/\n");
    let kiln = Kiln::new();
    let ctx = ws.path().to_string_lossy().into_owned();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["--root", &kiln.store().to_string_lossy(), "build", "-t", "big:1", &ctx])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    kiln.build(&ws, "big:1", &[]);
    let images = kiln.ok(&["images"]);
    assert!(images.contains("localhost/big"), "{images}");
    let pruned = kiln.ok(&["prune"]);
    assert!(pruned.contains("freed"), "{pruned}");
    if require("skopeo") {
        tool("skopeo", &["inspect", &kiln.oci_ref("localhost/big:1")]);
    }
}

#[test]
fn add_of_an_archive_with_escape_tricks_stays_inside() {
    if !require("umoci") {
        return;
    }
    let ws = Workspace::new();
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, link) in [
        ("../../outside.txt", tar::EntryType::Regular, ""),
        ("/abs.txt", tar::EntryType::Regular, ""),
        ("up", tar::EntryType::Symlink, "../../../.."),
        ("up/through-link.txt", tar::EntryType::Regular, ""),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(if kind == tar::EntryType::Regular { 1 } else { 0 });
        let field = &mut h.as_old_mut().name;
        field[..name.len()].copy_from_slice(name.as_bytes());
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        h.set_cksum();
        let data: &[u8] = if kind == tar::EntryType::Regular { b"x" } else { b"" };
        builder.append(&h, data).unwrap();
    }
    ws.file("evil.tar", builder.into_inner().unwrap()).dockerfile("FROM scratch\nADD evil.tar /dest/\n");
    let kiln = Kiln::new();
    kiln.build(&ws, "evil:1", &[]);
    let (_keep, r) = crate::harness::umoci_unpack(kiln.store(), "localhost/evil:1");
    assert!(r.join("dest/outside.txt").is_file());
    assert!(r.join("dest/abs.txt").is_file());
    assert!(!ws.path().join("outside.txt").exists() && !std::path::Path::new("/outside.txt").exists());
}

#[test]
fn tag_rmi_inspect_and_prune() {
    let ws = Workspace::new();
    ws.file("f", "x").dockerfile("FROM scratch\nCOPY f /\n");
    let kiln = Kiln::new();
    let id = kiln.build(&ws, "one:1", &[]);
    kiln.ok(&["tag", "one:1", "two:2"]);
    let inspect: serde_json::Value = serde_json::from_str(&kiln.ok(&["inspect", "two:2"])).unwrap();
    assert_eq!(inspect["Id"], id);
    assert_eq!(inspect["Name"], "localhost/two:2");
    kiln.ok(&["rmi", "one:1"]);
    assert!(kiln.ok(&["images"]).contains("localhost/two"));
    kiln.ok(&["rmi", "two:2"]);
    let pruned = kiln.ok(&["prune"]);
    assert!(pruned.starts_with("removed 3 blobs"), "config, manifest and layer: {pruned}");
}

fn is_root() -> bool {
    tool("id", &["-u"]).trim() == "0"
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).mode() & 0o7777
}

/// Runs `args` as `user` (runuser); returns (success, stderr).
fn as_user(user: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("runuser").args(["-u", user, "--"]).args(args).output().expect("runuser runs");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A busybox rootfs with a setuid-root copy of busybox (`/bin/suid`) and a world-writable `/tmp`, built
/// with a RUN step so that the store holds snapshots of it.
fn suid_image(kiln: &Kiln) {
    let ws = Workspace::new();
    busybox_rootfs(&ws.path().join("rootfs"));
    let suid = ws.path().join("rootfs/bin/suid");
    std::fs::copy("/bin/busybox", &suid).unwrap();
    ws.dockerfile("FROM scratch\nCOPY rootfs/ /\nRUN echo built > /built\n");
    rootless::give(ws.path());
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    kiln.build(&ws, "suid:1", &[]);
}

/// Checks that `other` can reach the store's parent but nothing of the store, its snapshots included.
fn assert_private(kiln: &Kiln, other: &str) {
    let store = kiln.store();
    assert_eq!(mode(store), 0o700, "the store is private");
    assert_eq!(mode(kiln.home()), 0o755, "its parent keeps its mode");
    let (ok, err) = as_user(other, &["ls", &kiln.home().to_string_lossy()]);
    assert!(ok, "{other} can list the store's parent: {err}");
    let snapshots: Vec<PathBuf> = std::fs::read_dir(store.join("kiln/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("fs/bin/suid").exists())
        .collect();
    assert!(!snapshots.is_empty(), "a snapshot holds the setuid binary");
    for snap in snapshots {
        let fs = snap.join("fs");
        assert_eq!(mode(&fs.join("bin/suid")) & 0o4000, 0o4000, "the binary is setuid in the snapshot");
        assert_eq!(mode(&fs.join("tmp")), 0o1777, "the snapshot's /tmp is world-writable");
        let (ran, err) = as_user(other, &[&fs.join("bin/suid").to_string_lossy(), "true"]);
        assert!(!ran && err.contains("Permission denied"), "{other} cannot run the setuid binary: {err}");
        let (planted, err) = as_user(other, &["touch", &fs.join("tmp/planted").to_string_lossy()]);
        assert!(!planted && err.contains("Permission denied"), "{other} cannot plant files: {err}");
    }
    let (listed, _) = as_user(other, &["ls", &store.to_string_lossy()]);
    assert!(!listed, "{other} cannot list the store");
}

#[test]
fn the_store_and_its_snapshots_are_private_as_root() {
    if !is_root() {
        assert!(!ci(), "CI runs as root");
        eprintln!("skipping: acting as another user needs root");
        return;
    }
    // The other user: the harness's unprivileged test user.
    if rootless::kiln().is_none() {
        return;
    }
    let kiln = Kiln::new().with_root_inside("store");
    std::fs::set_permissions(kiln.home(), std::fs::Permissions::from_mode(0o755)).unwrap();
    suid_image(&kiln);
    assert_private(&kiln, rootless::USER);
    // A store made readable by hand is tightened on the next start, with a notice.
    std::fs::set_permissions(kiln.store(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = kiln.run(&["images"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("was mode 0755") && run.stderr.contains("0700"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
    assert_eq!(mode(kiln.store()), 0o700);
}

#[test]
fn the_store_and_its_snapshots_are_private_rootless() {
    if !is_root() {
        assert!(!ci(), "CI runs as root");
        eprintln!("skipping: acting as another user needs root");
        return;
    }
    let Some(kiln) = rootless::kiln() else { return };
    let kiln = kiln.with_root_inside("store");
    std::fs::set_permissions(kiln.home(), std::fs::Permissions::from_mode(0o755)).unwrap();
    suid_image(&kiln);
    assert_private(&kiln, "nobody");
}

/// `n` files under `tree/`, each holding its own name, in 20 directories.
fn tree_workspace(n: usize) -> Workspace {
    let ws = Workspace::new();
    for i in 0..n {
        let rel = format!("tree/d{:02}/f{i:05}", i % 20);
        ws.file(&rel, &rel);
    }
    ws.dockerfile(
        "FROM localhost/busybox:test\nCOPY tree /tree\nRUN cp -a /tree /copy && find /copy -type f | wc -l > /count\n",
    );
    ws
}

/// The image holds all `n` files twice (the COPY and what the RUN step saw of them), each with its content.
fn assert_whole(layout: &Path, name: &str, n: usize) {
    let (_keep, rootfs) = umoci_unpack(layout, name);
    assert_eq!(std::fs::read_to_string(rootfs.join("count")).unwrap().trim(), n.to_string(), "what RUN saw");
    for top in ["tree", "copy"] {
        let mut count = 0;
        for entry in walkdir::WalkDir::new(rootfs.join(top)).into_iter().map(Result::unwrap) {
            if entry.file_type().is_file() {
                let rel = entry.path().strip_prefix(rootfs.join(top)).unwrap();
                let content = std::fs::read_to_string(entry.path()).unwrap();
                assert_eq!(content, format!("tree/{}", rel.display()), "{top}/{}", rel.display());
                count += 1;
            }
        }
        assert_eq!(count, n, "files in /{top}");
    }
}

/// After a kill -9: fsck finds nothing but the killed run's leftovers, `--repair` removes them.
fn assert_only_leftovers(kiln: &Kiln) {
    let run = kiln.run(&["fsck"]);
    let problems: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("problem:")).collect();
    assert!(problems.iter().all(|p| p.contains("killed kiln process")), "{}", run.stdout);
    assert_eq!(run.code, i32::from(!problems.is_empty()), "{}{}", run.stdout, run.stderr);
    kiln.ok(&["fsck", "--repair"]);
    let clean = kiln.ok(&["fsck"]);
    assert!(clean.contains("no problems"), "{clean}");
}

fn kill9(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits (up to ~10 s) for `condition`, polling every millisecond.
fn poll(condition: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

fn non_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// Enough files that removing a snapshot of them takes a while (a kill lands in the middle).
const FILES: usize = 400;

#[test]
fn kill_9_during_prune_never_leaves_a_half_deleted_snapshot_in_use() {
    if !require("umoci") {
        return;
    }
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "busybox:test", &[]);
    let ws = tree_workspace(FILES);
    let mut mid_removal = 0;
    for round in 0..4 {
        // --no-cache: the RUN step runs again, on the snapshot that the killed prune was removing.
        kiln.build(&ws, "tree:1", &["--no-cache"]);
        kiln.ok(&["rmi", "tree:1"]);
        let mut prune = kiln.spawn(&["prune"]);
        let trash = kiln.store().join("kiln/trash");
        if round % 2 == 0 {
            // Kill it while it removes a snapshot.
            mid_removal += usize::from(poll(|| non_empty(&trash)));
        } else {
            std::thread::sleep(Duration::from_millis(60 * round as u64));
        }
        kill9(&mut prune);
        assert_only_leftovers(&kiln);
        kiln.build(&ws, "tree:1", &["--no-cache"]);
        assert_whole(kiln.store(), "localhost/tree:1", FILES);
    }
    assert!(mid_removal > 0, "at least one prune was killed in the middle of removing a snapshot");
}

#[test]
fn kill_9_during_build_and_push_leaves_a_store_that_builds_and_pushes_whole_images() {
    if !require("umoci") || !require("skopeo") {
        return;
    }
    let Some(registry) = Registry::start() else { return };
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "busybox:test", &[]);
    let ws = tree_workspace(FILES);
    let ctx = ws.path().to_string_lossy().into_owned();
    for round in 0..3u64 {
        let mut build = kiln.spawn(&["build", "--no-cache", "-t", "tree:1", &ctx]);
        std::thread::sleep(Duration::from_millis(150 + 300 * round));
        kill9(&mut build);
        assert_only_leftovers(&kiln);
        kiln.build(&ws, "tree:1", &["--no-cache"]);
        assert_whole(kiln.store(), "localhost/tree:1", FILES);
    }
    let dest = format!("docker://{}", registry.name("tree/pushed:1"));
    for round in 0..2u64 {
        let mut push = kiln.spawn(&["push", "tree:1", &dest, "--tls-verify=false"]);
        std::thread::sleep(Duration::from_millis(50 + 100 * round));
        kill9(&mut push);
        assert_only_leftovers(&kiln);
    }
    kiln.ok(&["push", "tree:1", &dest, "--tls-verify=false"]);
    let layout = tempfile::tempdir().unwrap();
    let oci = format!("oci:{}:pulled", layout.path().display());
    tool("skopeo", &["copy", "--src-tls-verify=false", &registry.docker_ref("tree/pushed:1"), &oci]);
    assert_whole(layout.path(), "pulled", FILES);
}

#[test]
fn a_start_after_a_crash_removes_the_killed_runs_files_but_not_a_live_ones() {
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "busybox:test", &[]);
    let tmp = kiln.store().join("kiln/tmp");
    let entries = || -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().path()).collect();
        found.sort();
        found
    };
    let files_under = |dir: &Path| walkdir::WalkDir::new(dir).into_iter().filter_map(Result::ok).count();

    // A live build, whose files the next start must leave alone.
    let live_ws = Workspace::new();
    live_ws.dockerfile("FROM localhost/busybox:test\nRUN sleep 600\n");
    let mut live = kiln.spawn(&["build", "-t", "live:1", &live_ws.path().to_string_lossy()]);
    assert!(poll(|| entries().iter().any(|e| e.join("work").exists() || files_under(e) > 3)), "the live build runs");
    let live_entries = entries();

    // A build killed while it writes a 64 MiB layer blob (incompressible, so the blob is that big too), the
    // moment more than 1 MiB of it is on disk: a fixed delay would let a fast build finish first.
    let ws = Workspace::new();
    ws.file("big.bin", noise(64 << 20));
    ws.dockerfile("FROM localhost/busybox:test\nCOPY big.bin /\n");
    let mut killed = kiln.spawn(&["build", "-t", "big:1", &ws.path().to_string_lossy()]);
    let killed_files = || entries().iter().filter(|e| !live_entries.contains(e)).map(|e| files_under(e)).sum::<usize>();
    let writing = || {
        entries().iter().filter(|e| !live_entries.contains(e)).any(|e| {
            walkdir::WalkDir::new(e)
                .into_iter()
                .filter_map(Result::ok)
                .any(|f| f.metadata().is_ok_and(|m| m.len() > 1 << 20))
        })
    };
    assert!(poll(writing), "the build writes its layer into its session dir");
    kill9(&mut killed);
    assert!(killed_files() > 1, "a kill -9 leaves its temp files");

    let run = kiln.run(&["images"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("leftovers of killed kiln runs"), "{}", run.stderr);
    assert_eq!(entries(), live_entries, "only the live build's session dir and lock file are left");
    assert!(live.try_wait().unwrap().is_none(), "the live build still runs");
    kill9(&mut live);
    kiln.ok(&["fsck", "--repair"]);
    assert!(kiln.ok(&["fsck"]).contains("no problems"));
}

/// `len` bytes no compressor can shrink (xorshift64).
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Starts a build whose RUN step sleeps, waits until the step runs, and sends `signal` to kiln.
fn interrupt_a_run_step(signal: nix::sys::signal::Signal) {
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "busybox:test", &[]);
    let ws = Workspace::new();
    let marker = format!("{}", 700 + std::process::id() % 1000 + signal as u32);
    ws.dockerfile(&format!("FROM localhost/busybox:test\nRUN sleep {marker}\n"));
    let ctx = ws.path().to_string_lossy().into_owned();
    let mut child = kiln.spawn(&["build", "-t", "stopped:1", &ctx]);
    let sleeping = || tool("ps", &["-eo", "args"]).lines().any(|l| l.trim() == format!("sleep {marker}"));
    assert!(poll(sleeping), "the RUN step started");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + signal as i32), "exit status 128 + signal");
    assert!(poll(|| !sleeping()), "the step's processes are gone");
    for dir in ["kiln/tmp", "kiln/trash"] {
        let left: Vec<_> = std::fs::read_dir(kiln.store().join(dir)).unwrap().collect();
        assert!(left.is_empty(), "{dir} is empty: {left:?}");
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&*kiln.store().to_string_lossy()), "nothing left mounted");
    let clean = kiln.ok(&["fsck"]);
    assert!(clean.contains("no problems"), "{clean}");
}

#[test]
fn sigterm_stops_the_build_and_removes_what_it_made() {
    interrupt_a_run_step(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sigint_stops_the_build_and_removes_what_it_made() {
    interrupt_a_run_step(nix::sys::signal::Signal::SIGINT);
}

#[test]
fn an_add_url_whose_server_stalls_times_out() {
    let server = http::stalling(Duration::from_secs(120));
    let kiln = Kiln::new().with_env("KILN_FETCH_TIMEOUT", "2");
    let ws = Workspace::new();
    ws.dockerfile(&format!("FROM scratch\nADD {} /stalled\n", server.url("/file.bin")));
    let ctx = ws.path().to_string_lossy().into_owned();
    let started = Instant::now();
    let run = kiln.run(&["build", "-t", "stalled:1", &ctx]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("Dockerfile:2") && run.stderr.contains("timed out"), "{}", run.stderr);
    assert!(run.stderr.contains("no data from the server for 2 s"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(60), "gave up long before the server did");
}

/// Files named `name` under `dir`.
fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.file_name() == name)
        .map(|e| e.path().to_path_buf())
        .collect()
}

#[test]
fn a_killed_add_download_is_in_the_store_where_the_clean_up_finds_it() {
    let server = http::stalling(Duration::from_secs(120));
    // kiln's temp files belong in the store: anything in TMPDIR would outlive a kill -9.
    let tmpdir = tempfile::tempdir().unwrap();
    let kiln = Kiln::new().with_env("TMPDIR", &tmpdir.path().to_string_lossy());
    let ws = Workspace::new();
    ws.dockerfile(&format!("FROM scratch\nADD {} /partial.bin\n", server.url("/partial.bin")));
    let mut build = kiln.spawn(&["build", "-t", "partial:1", &ws.path().to_string_lossy()]);
    let tmp = kiln.store().join("kiln/tmp");
    // The server sends the first bytes of a 1 MiB body, then nothing: the download's file stays open.
    assert!(poll(|| !files_named(&tmp, ".download").is_empty()), "the download is under way in the store");
    kill9(&mut build);
    let outside: Vec<_> = std::fs::read_dir(tmpdir.path()).unwrap().collect();
    assert!(outside.is_empty(), "nothing of the build outside the store: {outside:?}");
    let found = kiln.run(&["fsck"]);
    assert!(found.stdout.contains("was left by a killed kiln process"), "{}", found.stdout);
    assert_only_leftovers(&kiln);
    assert!(files_named(kiln.store(), ".download").is_empty(), "the partial download is gone");
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let kiln = Kiln::new();
    let ws = Workspace::new();
    ws.file("f", "x").dockerfile("FROM scratch\nCOPY f /\n");
    for i in 0..3 {
        kiln.build(&ws, &format!("piped:{i}"), &[]);
    }
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--root")
        .arg(kiln.store())
        .arg("images")
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "quiet: {stderr}");
}

#[test]
fn fsck_names_a_corrupt_blob_and_repair_leaves_what_it_cannot_fix() {
    let kiln = Kiln::new();
    let ws = Workspace::new();
    ws.file("f", "content").dockerfile("FROM scratch\nCOPY f /\n");
    kiln.build(&ws, "checked:1", &[]);
    assert!(kiln.ok(&["fsck"]).contains("no problems"));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(kiln.store().join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let blobs = kiln.store().join("blobs/sha256");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blobs.join(&manifest_digest)).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    std::fs::write(blobs.join(&layer), b"bit rot").unwrap();
    let run = kiln.run(&["fsck"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains(&format!("blob sha256:{layer} is corrupt")), "{}", run.stdout);
    assert!(run.stdout.contains("kiln fsck --repair fixes this"), "{}", run.stdout);
    let repaired = kiln.run(&["fsck", "--repair"]);
    assert_eq!(repaired.code, 1, "the image still lacks its layer");
    assert!(repaired.stdout.contains("[repaired]"), "{}", repaired.stdout);
    assert!(repaired.stdout.contains("image localhost/checked:1 needs blob"), "{}", repaired.stdout);
    assert!(!blobs.join(&layer).exists(), "the corrupt blob is out of the store");
    kiln.ok(&["rmi", "checked:1"]);
    kiln.build(&ws, "checked:1", &["--no-cache"]);
    assert!(kiln.ok(&["fsck"]).contains("no problems"));
}

/// A live (not zombie) process seen in /proc: its pid, state, parent and argv.
struct Proc {
    pid: i32,
    state: String,
    ppid: i32,
    argv: Vec<String>,
}

fn processes() -> Vec<Proc> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let (Ok(stat), Ok(cmdline)) =
            (std::fs::read_to_string(entry.path().join("stat")), std::fs::read(entry.path().join("cmdline")))
        else {
            continue;
        };
        // The fields after the command name (which may hold spaces) are: state ppid pgrp ...
        let Some((_, rest)) = stat.rsplit_once(") ") else { continue };
        let fields: Vec<&str> = rest.split(' ').collect();
        let (Some(state), Some(Ok(ppid))) = (fields.first(), fields.get(1).map(|f| f.parse())) else { continue };
        if *state == "Z" || *state == "X" {
            continue;
        }
        let argv = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        found.push(Proc { pid, state: state.to_string(), ppid, argv });
    }
    found
}

fn signal(pids: &[i32], signal: nix::sys::signal::Signal) {
    for pid in pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), signal);
    }
}

/// A build is killed while its sandbox probe runs, the probe stopped first (as a loaded machine may leave
/// it unscheduled): the probe must die with kiln, and `fsck --repair` then leaves nothing behind — a probe
/// that lived on re-created the killed session's directory after repair had claimed it (the cause of a
/// flaky `kill_9_during_build_and_push_...`).
#[test]
fn a_killed_builds_sandbox_probe_does_not_outlive_it() {
    use nix::sys::signal::Signal::{SIGCONT, SIGKILL, SIGSTOP};
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "busybox:test", &[]);
    let ws = Workspace::new();
    ws.dockerfile("FROM localhost/busybox:test\nRUN true\n");
    let ctx = ws.path().to_string_lossy().into_owned();
    let tmp = kiln.store().join("kiln/tmp");
    // The probe's child creates `kernel/` in the scratch dir last: while it is missing, there is work to do.
    let probe_done = || {
        walkdir::WalkDir::new(&tmp).max_depth(3).into_iter().filter_map(Result::ok).any(|e| e.file_name() == "kernel")
    };
    let is_probe =
        |p: &Proc, kiln: i32| p.ppid == kiln && p.argv.get(1..3) == Some(&["__kiln-sandbox".into(), "probe".into()]);
    for _ in 0..40 {
        let mut build = kiln.spawn(&["build", "--no-cache", "-t", "probed:1", &ctx]);
        let pid = build.id() as i32;
        let mut stopped: Vec<i32> = Vec::new();
        if poll(|| processes().iter().any(|p| is_probe(p, pid))) {
            // The probe, then whatever it forked (it may fork while being stopped: look twice).
            for _ in 0..2 {
                let all = processes();
                let probe: Vec<i32> = all.iter().filter(|p| is_probe(p, pid)).map(|p| p.pid).collect();
                stopped.extend(all.iter().filter(|p| probe.contains(&p.pid) || probe.contains(&p.ppid)).map(|p| p.pid));
                stopped.sort();
                stopped.dedup();
                signal(&stopped, SIGSTOP);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let states =
            || processes().into_iter().filter(|p| stopped.contains(&p.pid)).map(|p| p.state).collect::<Vec<_>>();
        let usable = !stopped.is_empty() && states().iter().all(|s| s == "T") && !probe_done();
        kill9(&mut build);
        if !usable {
            signal(&stopped, SIGKILL);
            assert!(poll(|| states().is_empty()), "the probe ends");
            kiln.ok(&["fsck", "--repair"]);
            continue;
        }
        // A process stopped before it armed its parent-death signal cannot die while it is stopped (the
        // test's SIGSTOP can land between fork and prctl); once it runs, its parent check ends it. What
        // must hold either way: it ends, and it re-creates nothing of the session a clean-up claimed.
        poll(|| states().is_empty());
        assert_only_leftovers(&kiln);
        signal(&stopped, SIGCONT);
        assert!(poll(|| states().is_empty()), "the probe ends");
        let after = kiln.ok(&["fsck"]);
        assert!(after.contains("no problems"), "after the probe went on: {after}");
        return;
    }
    panic!("no build was stopped while its probe was still at work");
}
