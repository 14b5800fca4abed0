//! Snapshots that share inodes: a COPY whose result differs from the last one in a file or two gets a
//! snapshot hard-linked from that one, a chroot-mode RUN (which changes its tree in place) never writes
//! through an inode another snapshot holds, and a kill -9 while a snapshot is being filled leaves nothing
//! half-made that a later build would use. Checked from the outside: the store's snapshot directories are
//! walked and compared, the images unpacked with umoci.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{Kiln, Workspace, busybox_workspace, ci, require, tool, umoci_unpack};

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
    kiln.build(version(&ws, 2), "tree:2", &[]);

    // The second COPY's snapshot was derived from the first: all but the changed file share an inode.
    let only = |content: &str| -> PathBuf {
        let found = copy_snapshots_with(&kiln, content);
        assert_eq!(found.len(), 1, "one COPY snapshot with {content}: {found:?}");
        found[0].clone()
    };
    let (first, second) = (only("version 1"), only("version 2"));
    let ino = |tree: &Path, rel: &str| tree.join(rel).symlink_metadata().unwrap().ino();
    for i in (0..FILES).filter(|i| *i != 5) {
        let rel = format!("tree/d{:02}/f{i:05}", i % 10);
        assert_eq!(ino(&first, &rel), ino(&second, &rel), "{rel} is linked, not written again");
    }
    assert_ne!(ino(&first, "tree/d05/f00005"), ino(&second, "tree/d05/f00005"), "the changed file is its own");

    // A third version in chroot mode: its COPY snapshot is linked from the second, and the RUN changes
    // linked files in place (append, chmod, touch, remove) in that very tree.
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
