//! Snapshots derived from earlier ones (hard links, donors, populated from entries while the layer is written,
//! overlay uppers merged, trees unshared) are the same trees — content and metadata — as applying the layers
//! from scratch gives, and never change the trees they share inodes with.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::*;

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn entry(path: &str, kind: EntryKind, mode: u32, mtime: i64) -> Entry {
    Entry { path: path.into(), kind, mode, uid: 0, gid: 0, mtime, xattrs: Vec::new() }
}

fn file(path: &str, content: &[u8], mode: u32, mtime: i64) -> Entry {
    entry(path, EntryKind::File(FileSource::Bytes(content.to_vec())), mode, mtime)
}

fn owned(mut e: Entry, uid: u32, gid: u32) -> Entry {
    if root() {
        (e.uid, e.gid) = (uid, gid);
    }
    e
}

fn with_xattr(mut e: Entry, value: &[u8]) -> Entry {
    e.xattrs = vec![("user.kiln.test".to_string(), value.to_vec())];
    e
}

/// A tree with every kind of entry and the metadata that is easy to get wrong.
fn tree_v1() -> Vec<Entry> {
    let big: Vec<u8> = (0..(4 << 20) + 77).map(|i| (i * 31 % 251) as u8).collect();
    vec![
        entry("app", EntryKind::Dir, 0o755, 1_600_000_000),
        owned(entry("app/sgid", EntryKind::Dir, 0o2775, 1_600_000_001), 0, 1000),
        entry("app/sticky", EntryKind::Dir, 0o1777, 1_600_000_002),
        file("app/plain", b"plain v1", 0o644, 1_600_000_010),
        file("app/exe", b"#!/bin/sh\n", 0o4755, 1_600_000_011),
        file("app/wide", b"anyone writes", 0o666, 1_600_000_012),
        owned(file("app/owned", b"mine", 0o640, 1_600_000_013), 1000, 1000),
        file("app/sgid/inherits", b"in a setgid dir", 0o644, 1_600_000_014),
        with_xattr(file("app/tagged", b"tagged", 0o644, 1_600_000_015), b"v1"),
        entry("app/link", EntryKind::Symlink("plain".into()), 0o777, 1_600_000_016),
        entry("app/abs", EntryKind::Symlink("/etc/passwd".into()), 0o777, 1_600_000_017),
        entry("app/zhard", EntryKind::Hardlink("app/plain".into()), 0o644, 1_600_000_010),
        entry("app/fifo", EntryKind::Fifo, 0o600, 1_600_000_018),
        file("app/big", &big, 0o644, 1_600_000_019),
        file("app/same-a", b"twin", 0o644, 1_600_000_020),
        file("app/same-b", b"twin", 0o644, 1_600_000_020),
        with_xattr(entry("empty", EntryKind::Dir, 0o700, 1_600_000_030), b"dir"),
    ]
}

/// `tree_v1` with one of each change: content, mode, owner, time, xattr; one file gone, one new.
fn tree_v2() -> Vec<Entry> {
    let mut out: Vec<Entry> = tree_v1()
        .into_iter()
        .filter(|e| e.path != "app/sticky")
        .map(|e| match e.path.as_str() {
            "app/plain" => file("app/plain", b"plain v2, longer", 0o644, 1_600_000_010),
            "app/exe" => file("app/exe", b"#!/bin/sh\n", 0o755, 1_600_000_011),
            "app/owned" => owned(file("app/owned", b"mine", 0o640, 1_600_000_013), 1001, 1000),
            "app/wide" => file("app/wide", b"anyone writes", 0o666, 1_700_000_000),
            "app/tagged" => with_xattr(file("app/tagged", b"tagged", 0o644, 1_600_000_015), b"v2"),
            _ => e,
        })
        .collect();
    out.push(file("app/new", b"new in v2", 0o600, 1_600_000_040));
    out
}

fn layer(entries: Vec<Entry>) -> Vec<u8> {
    let mut out = Vec::new();
    write_layer(entries, &mut out, &plain()).unwrap();
    out
}

/// Uncompressed layers: what is tested here is the tree, and debug-built gzip is slow.
fn plain() -> WriteOptions {
    WriteOptions { compression: Compression::None, ..Default::default() }
}

fn opts() -> ApplyOptions {
    ApplyOptions::for_current_user()
}

fn digests(entries: &[Entry]) -> HashMap<String, ContentDigest> {
    entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::File(FileSource::Bytes(b)) => Some((e.path.clone(), Sha256::digest(b).into())),
            _ => None,
        })
        .collect()
}

/// Fills `root` from `entries` while their layer is written, as a COPY step does.
fn populated(entries: Vec<Entry>, root: &Path, donor: Option<Donor>) -> Placed {
    let entries = normalize(entries);
    let sums = digests(&entries);
    let (writer, reader) = tee();
    std::thread::scope(|s| {
        let filling = s.spawn(|| populate(root, &entries, &sums, reader, &opts(), donor, None));
        write_normalized(&entries, std::io::sink(), &plain(), Some(&writer)).unwrap();
        drop(writer);
        filling.join().unwrap().unwrap()
    })
}

/// Everything that makes a tree what it is, one line per path: type, mode, owner, mtime (with
/// nanoseconds), size, content digest, link target, device, xattrs (overlay's own left out), and which
/// earlier path of the tree it is a hard link of. Access times and inode numbers are not part of it.
fn listing(root: &Path) -> BTreeMap<String, String> {
    let mut first_of: HashMap<(u64, u64), String> = HashMap::new();
    let mut out = BTreeMap::new();
    for item in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let item = item.unwrap();
        let rel = item.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let m = item.path().symlink_metadata().unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() {
            "char"
        } else {
            "other"
        };
        let content =
            if ft.is_file() { hex::encode(Sha256::digest(std::fs::read(item.path()).unwrap())) } else { String::new() };
        let target = if ft.is_symlink() {
            std::fs::read_link(item.path()).unwrap().display().to_string()
        } else {
            String::new()
        };
        let same = if !ft.is_dir() && m.nlink() > 1 {
            let first = first_of.entry((m.dev(), m.ino())).or_insert_with(|| rel.clone());
            if *first == rel { String::new() } else { format!(" same-as={first}") }
        } else {
            String::new()
        };
        let xattrs: Vec<String> =
            read_xattrs(item.path()).into_iter().map(|(k, v)| format!("{k}={}", hex::encode(v))).collect();
        let size = if ft.is_dir() { 0 } else { m.size() };
        let line = format!(
            "{kind} {:o} {}:{} {}.{:09} size={size} sha={content} link={target} rdev={} xattrs=[{}]{same}",
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            m.mtime(),
            m.mtime_nsec(),
            m.rdev(),
            xattrs.join(",")
        );
        out.insert(rel, line);
    }
    out
}

fn assert_same_tree(derived: &Path, scratch: &Path) {
    let (a, b) = (listing(derived), listing(scratch));
    for (path, line) in &b {
        assert_eq!(a.get(path), Some(line), "{path} differs");
    }
    assert_eq!(a.len(), b.len(), "extra paths: {:?}", a.keys().filter(|k| !b.contains_key(*k)).collect::<Vec<_>>());
}

fn inode(path: &Path) -> (u64, u64) {
    let m = path.symlink_metadata().unwrap();
    (m.dev(), m.ino())
}

fn scratch(layers: &[&[u8]]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for l in layers {
        apply_layer(*l, dir.path(), &opts()).unwrap();
    }
    dir
}

#[test]
fn populating_while_the_layer_is_written_gives_the_tree_applying_it_gives() {
    let from_layer = scratch(&[&layer(tree_v1())]);
    let populated_dir = tempfile::tempdir().unwrap();
    let placed = populated(tree_v1(), populated_dir.path(), None);
    assert_same_tree(populated_dir.path(), from_layer.path());
    assert_eq!(placed.linked, 0);
    assert!(placed.notes.contains_key("app/big") && !placed.notes.contains_key("app/link"));
}

#[test]
fn a_snapshot_derived_from_the_previous_one_is_the_one_made_from_scratch() {
    let v1 = tempfile::tempdir().unwrap();
    let notes = populated(tree_v1(), v1.path(), None).notes;
    let before = listing(v1.path());

    let v2 = tempfile::tempdir().unwrap();
    let placed = populated(tree_v2(), v2.path(), Some(Donor::open(v1.path(), notes).unwrap()));
    assert_same_tree(v2.path(), scratch(&[&layer(tree_v2())]).path());
    assert_eq!(listing(v1.path()), before, "the donor is untouched");

    let shared = |p: &str| inode(&v1.path().join(p)) == inode(&v2.path().join(p));
    for unchanged in ["app/big", "app/sgid/inherits", "app/link", "app/abs"] {
        assert!(shared(unchanged), "{unchanged} is linked, not written again");
    }
    for changed in ["app/plain", "app/exe", "app/wide", "app/tagged"] {
        assert!(!shared(changed), "{changed} changed and has its own inode");
    }
    if root() {
        assert!(!shared("app/owned"), "a new owner is a new inode");
    }
    assert_ne!(inode(&v2.path().join("app/same-a")), inode(&v2.path().join("app/same-b")));
    assert!(placed.linked >= 4, "{} linked", placed.linked);
}

/// Two equal files the layer keeps apart stay apart, even where the donor holds them as one inode.
#[test]
fn one_donor_inode_is_linked_for_one_path_only() {
    let twins = |linked: bool| {
        let second = if linked {
            entry("b", EntryKind::Hardlink("a".into()), 0o644, 1_600_000_000)
        } else {
            file("b", b"twin", 0o644, 1_600_000_000)
        };
        vec![file("a", b"twin", 0o644, 1_600_000_000), second]
    };
    let donor_dir = tempfile::tempdir().unwrap();
    let notes = populated(twins(true), donor_dir.path(), None).notes;
    assert_eq!(inode(&donor_dir.path().join("a")), inode(&donor_dir.path().join("b")));
    let derived = tempfile::tempdir().unwrap();
    populated(twins(false), derived.path(), Some(Donor::open(donor_dir.path(), notes).unwrap()));
    assert_ne!(inode(&derived.path().join("a")), inode(&derived.path().join("b")));
    assert_same_tree(derived.path(), scratch(&[&layer(twins(false))]).path());
}

#[test]
fn applying_a_layer_with_a_donor_compares_while_streaming_and_gives_the_same_tree() {
    let v1 = scratch(&[&layer(tree_v1())]);
    let v2 = tempfile::tempdir().unwrap();
    let donor = Donor::open(v1.path(), HashMap::new()).unwrap();
    let placed = apply_layer_sharing(&layer(tree_v2())[..], v2.path(), &opts(), Some(donor)).unwrap();
    assert_same_tree(v2.path(), scratch(&[&layer(tree_v2())]).path());
    assert_eq!(inode(&v1.path().join("app/big")), inode(&v2.path().join("app/big")));
    assert_ne!(inode(&v1.path().join("app/plain")), inode(&v2.path().join("app/plain")));
    assert!(placed.linked >= 4);
}

#[test]
fn a_copy_on_top_of_a_linked_parent_is_the_two_layers_applied() {
    let base: Vec<Entry> = vec![
        entry("etc", EntryKind::Dir, 0o755, 1_500_000_000),
        file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644, 1_500_000_001),
        entry("app", EntryKind::Dir, 0o750, 1_500_000_002),
        file("app/plain", b"from the base", 0o600, 1_500_000_003),
        entry("bin", EntryKind::Symlink("usr/bin".into()), 0o777, 1_500_000_004),
    ];
    let parent = scratch(&[&layer(base.clone())]);
    let before = listing(parent.path());
    let child = tempfile::tempdir().unwrap();
    let linked = link_tree(parent.path(), child.path()).unwrap();
    assert_eq!((linked.linked, linked.dirs), (3, 2));
    populated(tree_v1(), child.path(), None);
    assert_same_tree(child.path(), scratch(&[&layer(base), &layer(tree_v1())]).path());
    assert_eq!(listing(parent.path()), before, "the parent keeps its own app/plain");
    assert_eq!(inode(&parent.path().join("etc/passwd")), inode(&child.path().join("etc/passwd")));
}

#[test]
fn an_overlay_upper_merged_by_links_is_its_layer_applied() {
    if !root() {
        return; // whiteout devices and trusted.* xattrs need privilege; the rootless tests cover user.*
    }
    let parent = scratch(&[&layer(tree_v1())]);
    let upper = tempfile::tempdir().unwrap();
    let u = upper.path();
    std::fs::create_dir_all(u.join("app/sgid")).unwrap();
    std::fs::write(u.join("app/plain"), b"changed by RUN").unwrap();
    nix::sys::stat::mknod(&u.join("app/exe"), nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0)
        .unwrap();
    xattr::set(u.join("app/sgid"), "trusted.overlay.opaque", b"y").unwrap();
    std::fs::write(u.join("app/sgid/fresh"), b"only this").unwrap();
    std::fs::create_dir(u.join("made")).unwrap();
    for p in ["app/plain", "app/sgid/fresh", "app/sgid", "made", "app"] {
        let t = filetime::FileTime::from_unix_time(1_650_000_000, 0);
        filetime::set_symlink_file_times(u.join(p), t, t).unwrap();
    }
    let diff = entries_from_overlay_upper(u).unwrap();
    let expected = scratch(&[&layer(tree_v1()), &layer(diff)]);
    let merged = tempfile::tempdir().unwrap();
    link_tree(parent.path(), merged.path()).unwrap();
    merge_upper(u, merged.path()).unwrap();
    assert_same_tree(merged.path(), expected.path());
    assert!(!merged.path().join("app/exe").exists() && !merged.path().join("app/sgid/inherits").exists());
}

#[test]
fn an_unshared_tree_is_the_same_tree_with_inodes_of_its_own() {
    let parent = scratch(&[&layer(tree_v1())]);
    let before = listing(parent.path());
    let child = tempfile::tempdir().unwrap();
    link_tree(parent.path(), child.path()).unwrap();
    let copied = unshare(child.path()).unwrap();
    assert!(copied >= 10, "{copied}");
    assert_same_tree(child.path(), parent.path());
    for item in walkdir::WalkDir::new(child.path()).min_depth(1) {
        let item = item.unwrap();
        let theirs = parent.path().join(item.path().strip_prefix(child.path()).unwrap());
        if !item.file_type().is_dir() {
            assert_ne!(inode(item.path()), inode(&theirs), "{} still shared", item.path().display());
        }
    }
    // In-tree hard links stay one inode.
    assert_eq!(inode(&child.path().join("app/plain")), inode(&child.path().join("app/zhard")));
    std::fs::write(child.path().join("app/plain"), b"changed in place").unwrap();
    assert_eq!(listing(parent.path()), before, "writing through the unshared tree changes nothing else");
}

/// Directories of 3 files each: unchanged ones, nested ones, one with a changed file, one that loses a file,
/// one whose mode changes, one holding a symlink, a setgid one with owned files.
fn adoptable(v: u32) -> Vec<Entry> {
    let mut out = vec![
        entry("app", EntryKind::Dir, 0o755, 1_600_000_000),
        entry("other", EntryKind::Dir, 0o750, 1_600_000_001),
        entry("app/same2", EntryKind::Dir, 0o755, 1_600_000_002),
        entry("app/same2/deep", EntryKind::Dir, 0o700, 1_600_000_003),
        owned(entry("app/sgid", EntryKind::Dir, 0o2775, 1_600_000_004), 0, 1000),
        entry("app/links", EntryKind::Symlink("same1".into()), 0o777, 1_600_000_005),
        entry("app/linkdir", EntryKind::Dir, 0o755, 1_600_000_006),
        entry("app/linkdir/to", EntryKind::Symlink("../same1/f0".into()), 0o777, 1_600_000_007),
        entry("app/moded", EntryKind::Dir, if v == 1 { 0o755 } else { 0o775 }, 1_600_000_008),
    ];
    for dir in ["app/same1", "app/same2/deep", "app/changed", "app/removed", "app/linkdir", "app/moded", "other"] {
        if !out.iter().any(|e| e.path == dir) {
            out.push(entry(dir, EntryKind::Dir, 0o755, 1_600_000_009));
        }
        for n in 0..3 {
            let path = format!("{dir}/f{n}");
            let body = if dir == "app/changed" && n == 1 { format!("{path} v{v}") } else { path.clone() };
            if !(dir == "app/removed" && n == 2 && v == 2) {
                out.push(file(&path, body.as_bytes(), 0o644, 1_600_000_010 + n));
            }
        }
    }
    out.push(file("app/same2/top", b"top", 0o4755, 1_600_000_020));
    out.push(owned(file("app/sgid/mine", b"mine", 0o640, 1_600_000_021), 1000, 1000));
    out.push(file("app/sgid/theirs", b"theirs", 0o644, 1_600_000_022));
    out
}

#[test]
fn unchanged_directories_of_a_movable_donor_are_moved_whole_and_the_tree_is_the_one_made_from_scratch() {
    let v1 = tempfile::tempdir().unwrap();
    let notes = populated(adoptable(1), v1.path(), None).notes;
    let ino = |p: &str| inode(&v1.path().join(p));
    let before: HashMap<&str, (u64, u64)> =
        ["other", "app/same1", "app/same2", "app/sgid", "app/changed/f0", "app/removed/f0"].map(|p| (p, ino(p))).into();

    let v2 = tempfile::tempdir().unwrap();
    let donor = Donor::open(v1.path(), notes).unwrap().movable(());
    let placed = populated(adoptable(2), v2.path(), Some(donor));
    assert_same_tree(v2.path(), scratch(&[&layer(adoptable(2))]).path());

    // Moved whole: the very directories, gone from the donor.
    for dir in ["other", "app/same1", "app/same2", "app/sgid"] {
        assert_eq!(inode(&v2.path().join(dir)), before[dir], "{dir} was moved");
        assert!(!v1.path().join(dir).exists(), "{dir} left the donor");
    }
    assert_eq!(placed.adopted, 4);
    // Not moved (a changed file, a removed one, a new mode, a symlink inside): made anew, files linked.
    for dir in ["app", "app/changed", "app/removed", "app/moded", "app/linkdir"] {
        assert!(v1.path().join(dir).is_dir(), "{dir} stays in the donor");
    }
    assert_eq!(inode(&v2.path().join("app/changed/f0")), before["app/changed/f0"]);
    assert_eq!(inode(&v2.path().join("app/removed/f0")), before["app/removed/f0"]);
    // 3 + 3 + 4 + 2 files moved; 2 + 2 + 3 + 3 files and the 2 symlinks linked; the changed file written.
    assert_eq!(placed.linked, 12 + 10 + 2, "{} linked", placed.linked);
    assert_eq!(placed.notes.len(), adoptable(2).iter().filter(|e| matches!(e.kind, EntryKind::File(_))).count());
}

#[test]
fn a_directory_the_donor_holds_with_an_extra_file_is_not_moved() {
    let dir = |extra: bool| {
        let mut out = vec![entry("d", EntryKind::Dir, 0o755, 1_600_000_000)];
        for name in ["a", "b", "c"].into_iter().filter(|n| extra || *n != "c") {
            out.push(file(&format!("d/{name}"), name.as_bytes(), 0o644, 1_600_000_001));
        }
        out
    };
    let v1 = tempfile::tempdir().unwrap();
    let notes = populated(dir(true), v1.path(), None).notes;
    let v2 = tempfile::tempdir().unwrap();
    let placed = populated(dir(false), v2.path(), Some(Donor::open(v1.path(), notes).unwrap().movable(())));
    assert_same_tree(v2.path(), scratch(&[&layer(dir(false))]).path());
    assert_eq!((placed.adopted, placed.linked), (0, 2));
    assert!(v1.path().join("d/c").is_file(), "the donor keeps its directory");
}

#[test]
fn a_directory_the_tree_already_has_is_never_replaced_by_the_donors() {
    let entries = || vec![entry("d", EntryKind::Dir, 0o755, 1_600_000_000), file("d/a", b"a", 0o644, 1_600_000_001)];
    let v1 = tempfile::tempdir().unwrap();
    let notes = populated(entries(), v1.path(), None).notes;
    let v2 = tempfile::tempdir().unwrap();
    std::fs::create_dir(v2.path().join("d")).unwrap();
    std::fs::write(v2.path().join("d/from-parent"), b"p").unwrap();
    let placed = populated(entries(), v2.path(), Some(Donor::open(v1.path(), notes).unwrap().movable(())));
    assert_eq!((placed.adopted, placed.linked), (0, 1));
    assert!(v2.path().join("d/from-parent").is_file());
}
