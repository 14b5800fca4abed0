//! Snapshots that share inodes: a COPY whose result differs from the last one in a file or two gets a
//! snapshot hard-linked from that one, a chroot-mode RUN (which changes its tree in place) never writes
//! through an inode another snapshot holds, and a kill -9 while a snapshot is being filled leaves nothing
//! half-made that a later build would use. A rebuild takes the old COPY snapshot whole when nobody reads it
//! and moves its unchanged directories into the new one; while someone reads it, it links from it and
//! leaves it as it was. Checked from the outside: the store's snapshot directories are walked and compared,
//! the images unpacked with umoci.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{Kiln, Workspace, busybox_workspace, ci, require, rootless, tool, umoci_unpack};

const FILES: usize = 300;

/// `tree/dNN/fNNNNN` files holding their own names, and a Dockerfile that copies them and then changes some
/// of them in place: an append, a chmod, a touch, a removal, a new file. [`version`] changes one file.
fn workspace() -> Workspace {
    let ws = Workspace::new();
    for i in 0..FILES {
        let rel = format!("tree/d{:02}/f{i:05}", i % 10);
        ws.file(&rel, &rel);
    }
    ws.dockerfile(
        "FROM localhost/busybox:test\nCOPY tree /tree\n\
         RUN echo appended >> /tree/d01/f00001 && chmod 600 /tree/d02/f00002 && touch /tree/d03/f00003 \
         && rm /tree/d04/f00004 && echo new > /tree/new\n",
    );
    ws
}

/// `ws` with `tree/d05/f00005` holding `version N` (the rest of the context as it was, times included).
fn version(ws: &Workspace, n: u32) -> &Workspace {
    ws.file("tree/d05/f00005", format!("version {n}"))
}

/// What a tree holds, by path: type, mode, owner, mtime, size and content (symlinks: their target).
/// Link counts and change times are left out: linking an inode into another snapshot changes those.
fn fingerprint(tree: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(tree).into_iter().map(Result::unwrap) {
        let m = entry.path().symlink_metadata().unwrap();
        let what = if m.file_type().is_file() {
            format!("{:?}", std::fs::read(entry.path()).unwrap())
        } else if m.file_type().is_symlink() {
            format!("-> {:?}", std::fs::read_link(entry.path()).unwrap())
        } else {
            String::new()
        };
        let line = format!("{:o} {}:{} {} {} {what}", m.mode(), m.uid(), m.gid(), m.mtime(), m.size());
        out.insert(entry.path().strip_prefix(tree).unwrap().to_path_buf(), line);
    }
    out
}

/// Every complete snapshot's tree in the store, by directory name.
fn snapshots(kiln: &Kiln) -> BTreeMap<String, PathBuf> {
    std::fs::read_dir(kiln.store().join("kiln/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|dir| dir.join("complete").is_file())
        .map(|dir| (dir.file_name().unwrap().to_string_lossy().into_owned(), dir.join("fs")))
        .collect()
}

/// The snapshot trees holding `/tree/d05/f00005` with `content`, before any RUN changed them (the COPY's).
fn copy_snapshots_with(kiln: &Kiln, content: &str) -> Vec<PathBuf> {
    snapshots(kiln)
        .into_values()
        .filter(|fs| std::fs::read_to_string(fs.join("tree/d05/f00005")).is_ok_and(|c| c == content))
        .filter(|fs| !fs.join("tree/new").exists())
        .collect()
}

fn is_root() -> bool {
    tool("id", &["-u"]).trim() == "0"
}

#[test]
fn a_chroot_mode_run_changing_linked_files_leaves_every_other_snapshot_untouched() {
    if !is_root() {
        assert!(!ci(), "CI runs as root: chroot mode must be tested there");
        eprintln!("skipping: chroot mode takes root");
        return;
    }
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "busybox:test", &[]);
    let ws = workspace();
    kiln.build(version(&ws, 1), "tree:1", &[]);
    let first = only_copy_snapshot(&kiln, "version 1");
    let files =
        |tree: &Path| -> Vec<u64> { (0..FILES).map(|i| ino(tree, &format!("tree/d{:02}/f{i:05}", i % 10))).collect() };
    let first_files = files(&first);
    kiln.build(version(&ws, 2), "tree:2", &[]);

    // The second COPY's snapshot was derived from the first (which it took whole): all but the changed file
    // are the same inodes.
    let second = only_copy_snapshot(&kiln, "version 2");
    for (i, (a, b)) in first_files.iter().zip(files(&second)).enumerate().filter(|(i, _)| *i != 5) {
        assert_eq!(*a, b, "file {i} is shared, not written again");
    }
    assert_ne!(first_files[5], ino(&second, "tree/d05/f00005"), "the changed file is its own");

    // A third version in chroot mode, while someone reads the second (so it is linked from, not taken): the
    // third COPY snapshot is linked from the second, and the RUN changes linked files in place (append,
    // chmod, touch, remove) in that very tree.
    let _reader = read_lease(&second);
    let before: BTreeMap<String, _> = snapshots(&kiln).into_iter().map(|(name, fs)| (name, fingerprint(&fs))).collect();
    kiln.build(version(&ws, 3), "tree:3", &["--isolation", "chroot"]);
    let after = snapshots(&kiln);
    for (name, print) in &before {
        let fs = after.get(name).unwrap_or_else(|| panic!("snapshot {name} is still there"));
        let now = fingerprint(fs);
        for (path, line) in print {
            assert_eq!(now.get(path), Some(line), "{name}: {} changed", path.display());
        }
        assert_eq!(now.len(), print.len(), "{name} has the same entries");
    }

    if require("umoci") {
        let (_keep, r) = umoci_unpack(kiln.store(), "localhost/tree:3");
        let read = |p: &str| std::fs::read_to_string(r.join(p)).unwrap();
        assert_eq!(read("tree/d01/f00001"), "tree/d01/f00001appended\n");
        assert_eq!(read("tree/d05/f00005"), "version 3");
        assert_eq!(r.join("tree/d02/f00002").symlink_metadata().unwrap().mode() & 0o777, 0o600);
        assert!(!r.join("tree/d04/f00004").exists() && read("tree/new") == "new\n");
    }
}

/// Waits (up to ~20 s) for `condition`, polling every millisecond.
fn poll(condition: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// A snapshot being filled: `kiln/tmp/<session>/snap-*/fs` with something in it.
fn filling(kiln: &Kiln) -> bool {
    let Ok(sessions) = std::fs::read_dir(kiln.store().join("kiln/tmp")) else { return false };
    sessions.filter_map(Result::ok).any(|s| {
        std::fs::read_dir(s.path()).into_iter().flatten().filter_map(Result::ok).any(|e| {
            e.file_name().to_string_lossy().starts_with("snap-")
                && std::fs::read_dir(e.path().join("fs")).is_ok_and(|mut d| d.next().is_some())
        })
    })
}

#[test]
fn kill_9_while_a_snapshot_is_filled_leaves_nothing_half_made_in_use() {
    if !require("umoci") {
        return;
    }
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "busybox:test", &[]);
    let mut killed_filling = 0;
    let ws = workspace();
    for n in 1..=4 {
        version(&ws, n);
        let ctx = ws.path().to_string_lossy().into_owned();
        let mut build = kiln.spawn(&["build", "-t", "tree:1", &ctx]);
        if n % 2 == 1 {
            killed_filling += usize::from(poll(|| filling(&kiln)));
        } else {
            std::thread::sleep(Duration::from_millis(100 * u64::from(n)));
        }
        let _ = build.kill();
        let _ = build.wait();
        // Whatever was published is complete; nothing in the snapshot directory lacks its marker...
        let run = kiln.run(&["fsck"]);
        let problems: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("problem:")).collect();
        assert!(problems.iter().all(|p| p.contains("killed kiln process")), "{}", run.stdout);
        // ...and the next build, which derives from what is there, makes the whole image.
        kiln.build(&ws, "tree:1", &[]);
        let (_keep, r) = umoci_unpack(kiln.store(), "localhost/tree:1");
        for i in (0..FILES).filter(|i| ![1, 4, 5].contains(i)) {
            let rel = format!("tree/d{:02}/f{i:05}", i % 10);
            assert_eq!(std::fs::read_to_string(r.join(&rel)).unwrap(), rel);
        }
        assert_eq!(std::fs::read_to_string(r.join("tree/d05/f00005")).unwrap(), format!("version {n}"));
        assert_eq!(std::fs::read_to_string(r.join("tree/d01/f00001")).unwrap(), "tree/d01/f00001appended\n");
        // Every full snapshot holding the tree holds all of it (the COPY's, and the RUN's: one removed, one new).
        for (name, fs) in
            snapshots(&kiln).iter().filter(|(name, fs)| !name.ends_with(".diff") && fs.join("tree").exists())
        {
            let files = walkdir::WalkDir::new(fs.join("tree"))
                .into_iter()
                .filter(|e| e.as_ref().unwrap().file_type().is_file());
            assert_eq!(files.count(), FILES, "snapshot {name} is whole");
        }
    }
    assert!(killed_filling > 0, "at least one build was killed while a snapshot was being filled");
    kiln.ok(&["fsck", "--repair"]);
    assert!(kiln.ok(&["fsck"]).contains("no problems"));
}

/// The one COPY snapshot holding `/tree/d05/f00005` with `content`.
fn only_copy_snapshot(kiln: &Kiln, content: &str) -> PathBuf {
    let found = copy_snapshots_with(kiln, content);
    assert_eq!(found.len(), 1, "one COPY snapshot with {content}: {found:?}");
    found.into_iter().next().unwrap()
}

fn ino(tree: &Path, rel: &str) -> u64 {
    tree.join(rel).symlink_metadata().unwrap().ino()
}

/// [`workspace`] with a RUN that reads what the COPY left.
fn reading_workspace() -> Workspace {
    let ws = workspace();
    ws.dockerfile(
        "FROM localhost/busybox:test\nCOPY tree /tree\n\
         RUN cat /tree/d05/f00005 > /seen && ls /tree/d00 | wc -l > /count && ls /tree | wc -l >> /count\n",
    );
    ws
}

/// Builds `tree:1` and, after one file changed, `tree:2`: the second COPY snapshot is made of the first's
/// unchanged directories, moved; the first is gone from the store; the RUN after it reads the new file.
fn rebuild_moves_the_unchanged_directories(kiln: &Kiln, give: impl Fn(&Path)) {
    let base = busybox_workspace();
    give(base.path());
    kiln.build(&base, "busybox:test", &[]);
    let ws = reading_workspace();
    version(&ws, 1);
    give(ws.path());
    kiln.build(&ws, "tree:1", &[]);
    let first = only_copy_snapshot(kiln, "version 1");
    let unchanged: Vec<(String, u64)> = (0..10)
        .filter(|d| *d != 5)
        .map(|d| format!("tree/d{d:02}"))
        .map(|rel| (rel.clone(), ino(&first, &rel)))
        .collect();
    let changed_dir = ino(&first, "tree/d05");
    let linked = ino(&first, "tree/d05/f00015");

    version(&ws, 2);
    give(ws.path());
    kiln.build(&ws, "tree:2", &[]);
    assert!(copy_snapshots_with(kiln, "version 1").is_empty(), "the old COPY snapshot was taken out of the store");
    let second = only_copy_snapshot(kiln, "version 2");
    for (rel, before) in &unchanged {
        assert_eq!(ino(&second, rel), *before, "{rel} was moved whole, not made again");
    }
    assert_ne!(ino(&second, "tree/d05"), changed_dir, "the directory with the changed file is made anew");
    assert_eq!(ino(&second, "tree/d05/f00015"), linked, "its unchanged files are linked");
    let files =
        walkdir::WalkDir::new(second.join("tree")).into_iter().filter(|e| e.as_ref().unwrap().file_type().is_file());
    assert_eq!(files.count(), FILES);

    // Nothing of the old snapshot is left anywhere, and the store is whole.
    let leftovers: Vec<PathBuf> = walkdir::WalkDir::new(kiln.store().join("kiln/tmp"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name() == "claimed")
        .map(|e| e.path().to_path_buf())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(kiln.ok(&["fsck"]).contains("no problems"));

    if require("umoci") {
        let (_keep, r) = umoci_unpack(kiln.store(), "localhost/tree:2");
        let read = |p: &str| std::fs::read_to_string(r.join(p)).unwrap();
        assert_eq!(read("seen"), "version 2", "the RUN reads the new file");
        assert_eq!(read("count").split_whitespace().collect::<Vec<_>>(), ["30", "10"]);
        for i in (0..FILES).filter(|i| *i != 5) {
            let rel = format!("tree/d{:02}/f{i:05}", i % 10);
            assert_eq!(read(&rel), rel);
        }
    }
}

#[test]
fn a_rebuild_moves_the_old_snapshots_unchanged_directories_into_the_new_one() {
    rebuild_moves_the_unchanged_directories(&Kiln::new(), |_| {});
}

#[test]
fn a_rootless_rebuild_moves_the_old_snapshots_unchanged_directories_into_the_new_one() {
    let Some(kiln) = rootless::kiln() else { return };
    rebuild_moves_the_unchanged_directories(&kiln, rootless::give);
}

#[test]
fn a_snapshot_someone_reads_is_linked_from_and_left_as_it_was() {
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "busybox:test", &[]);
    let ws = reading_workspace();
    kiln.build(version(&ws, 1), "tree:1", &[]);
    let first = only_copy_snapshot(&kiln, "version 1");
    let before = fingerprint(&first);
    let lease = read_lease(&first);

    kiln.build(version(&ws, 2), "tree:2", &[]);
    assert_eq!(copy_snapshots_with(&kiln, "version 1"), vec![first.clone()], "the read snapshot stays");
    assert_eq!(fingerprint(&first), before, "and is unchanged");
    let second = only_copy_snapshot(&kiln, "version 2");
    assert_ne!(ino(&second, "tree/d00"), ino(&first, "tree/d00"), "nothing was moved out of it");
    assert_eq!(ino(&second, "tree/d00/f00010"), ino(&first, "tree/d00/f00010"), "its files are linked");
    drop(lease);
}

/// A COPY smaller than its base image does not take the old snapshot: what would be left of it is mostly the
/// base, one unlink per file, more than linking the COPY's files costs. It links from the old one instead,
/// which stays in the store.
#[test]
fn a_copy_smaller_than_its_base_links_from_the_old_snapshot_and_keeps_it() {
    let kiln = Kiln::new();
    let base = busybox_workspace();
    for i in 0..FILES * 3 {
        base.file(&format!("rootfs/usr/share/big/f{i:05}"), "base");
    }
    kiln.build(&base, "busybox:test", &[]);
    let ws = reading_workspace();
    kiln.build(version(&ws, 1), "tree:1", &[]);
    let first = only_copy_snapshot(&kiln, "version 1");
    kiln.build(version(&ws, 2), "tree:2", &[]);
    assert_eq!(copy_snapshots_with(&kiln, "version 1"), vec![first.clone()], "the old snapshot stays");
    let second = only_copy_snapshot(&kiln, "version 2");
    assert_ne!(ino(&second, "tree/d00"), ino(&first, "tree/d00"), "nothing was moved out of it");
    assert_eq!(ino(&second, "tree/d00/f00010"), ino(&first, "tree/d00/f00010"), "its files are linked");
    assert!(kiln.ok(&["fsck"]).contains("no problems"));
}

/// A reader's lease on the snapshot whose tree is `tree`, as another build's RUN holds on its lower dirs.
fn read_lease(tree: &Path) -> nix::fcntl::Flock<std::fs::File> {
    let marker = std::fs::File::open(tree.parent().unwrap().join("complete")).unwrap();
    nix::fcntl::Flock::lock(marker, nix::fcntl::FlockArg::LockSharedNonblock).unwrap()
}
