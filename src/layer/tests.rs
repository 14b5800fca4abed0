//! Layer behaviour: write/apply round trips, determinism, whiteouts, and every escape trick we know.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;

fn entry(path: &str, kind: EntryKind, mode: u32) -> Entry {
    Entry { path: path.into(), kind, mode, uid: 0, gid: 0, mtime: 1_700_000_000, xattrs: Vec::new() }
}

fn file(path: &str, content: &str) -> Entry {
    entry(path, EntryKind::File(FileSource::Bytes(content.as_bytes().to_vec())), 0o644)
}

fn layer_bytes(entries: Vec<Entry>, compression: Compression) -> (Vec<u8>, LayerDigests) {
    let mut out = Vec::new();
    let opts = WriteOptions { compression, ..Default::default() };
    let digests = write_layer(entries, &mut out, &opts).unwrap();
    (out, digests)
}

fn apply(bytes: &[u8], root: &Path) -> Result<ApplyStats, LayerError> {
    apply_layer(bytes, root, &ApplyOptions::for_current_user())
}

/// A raw tar with entries written by hand, for the tricks the writer would never produce.
fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        {
            let bytes = name.as_bytes();
            let field = &mut h.as_old_mut().name;
            field[..bytes.len()].copy_from_slice(bytes);
        }
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn roundtrip_of_every_kind() {
    let long = format!("d/{}", "n".repeat(150));
    let entries = vec![
        entry("d", EntryKind::Dir, 0o755),
        file("d/f", "hello"),
        entry("d/exe", EntryKind::File(FileSource::Bytes(b"#!".to_vec())), 0o4755),
        entry("d/link", EntryKind::Symlink("f".into()), 0o777),
        entry("d/hard", EntryKind::Hardlink("d/f".into()), 0o644),
        file(&long, "long name"),
        entry("d/fifo", EntryKind::Fifo, 0o600),
    ];
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let (bytes, digests) = layer_bytes(entries.clone(), compression);
        assert_eq!(digests.size, bytes.len() as u64);
        let root = tempfile::tempdir().unwrap();
        apply(&bytes, root.path()).unwrap();
        let r = root.path();
        assert_eq!(std::fs::read_to_string(r.join("d/f")).unwrap(), "hello");
        assert_eq!(std::fs::read_link(r.join("d/link")).unwrap(), Path::new("f"));
        assert_eq!(std::fs::metadata(r.join("d/hard")).unwrap().ino(), std::fs::metadata(r.join("d/f")).unwrap().ino());
        assert_eq!(std::fs::metadata(r.join("d/exe")).unwrap().permissions().mode() & 0o7777, 0o4755);
        assert_eq!(std::fs::read_to_string(r.join(&long)).unwrap(), "long name");
        assert_eq!(std::fs::metadata(r.join("d/f")).unwrap().mtime(), 1_700_000_000);
    }
}

#[test]
fn writing_is_deterministic_and_clamped() {
    let entries = vec![file("b", "2"), file("a", "1"), entry("a-dir", EntryKind::Dir, 0o755)];
    let (one, d1) = layer_bytes(entries.clone(), Compression::Gzip);
    let (two, d2) = layer_bytes(entries.into_iter().rev().collect(), Compression::Gzip);
    assert_eq!(one, two);
    assert_eq!(d1, d2);
    let mut out = Vec::new();
    let opts = WriteOptions { compression: Compression::None, source_date_epoch: Some(100), ..Default::default() };
    write_layer(vec![file("a", "1")], &mut out, &opts).unwrap();
    let mut archive = tar::Archive::new(out.as_slice());
    let e = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(e.header().mtime().unwrap(), 100);
    assert_eq!(e.header().username().unwrap(), Some(""));
}

#[test]
fn diff_id_is_the_digest_of_the_uncompressed_tar() {
    let (gz, digests) = layer_bytes(vec![file("x", "data")], Compression::Gzip);
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut decompress(gz.as_slice()).unwrap(), &mut plain).unwrap();
    assert_eq!(crate::store::digest_of(&plain).to_string(), digests.diff_id.to_string());
    assert_eq!(crate::store::digest_of(&gz).to_string(), digests.digest.to_string());
}

#[test]
fn whiteouts_and_opaque_dirs() {
    let root = tempfile::tempdir().unwrap();
    let base = vec![
        entry("keep", EntryKind::Dir, 0o755),
        file("keep/a", "a"),
        file("keep/b", "b"),
        entry("gone", EntryKind::Dir, 0o755),
        file("gone/x", "x"),
        entry("opq", EntryKind::Dir, 0o755),
        file("opq/old", "old"),
    ];
    apply(&layer_bytes(base, Compression::None).0, root.path()).unwrap();
    let top = vec![
        entry("keep/a", EntryKind::Whiteout, 0),
        entry("gone", EntryKind::Whiteout, 0),
        entry("opq", EntryKind::Dir, 0o755),
        entry("opq", EntryKind::OpaqueDir, 0),
        file("opq/new", "new"),
    ];
    let stats = apply(&layer_bytes(top, Compression::None).0, root.path()).unwrap();
    let r = root.path();
    assert!(!r.join("keep/a").exists() && r.join("keep/b").exists());
    assert!(!r.join("gone").exists());
    assert!(!r.join("opq/old").exists() && r.join("opq/new").exists());
    assert_eq!(stats.whiteouts, 3);
}

#[test]
fn dot_dot_and_absolute_names_are_clamped_inside() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let tar = raw_tar(&[
        ("../escape", tar::EntryType::Regular, "", b"x"),
        ("/abs", tar::EntryType::Regular, "", b"y"),
        ("a/../../../up", tar::EntryType::Regular, "", b"z"),
    ]);
    apply(&tar, &root).unwrap();
    assert!(!outer.path().join("escape").exists());
    assert!(root.join("escape").exists() && root.join("abs").exists() && root.join("up").exists());
}

#[test]
fn symlinks_cannot_lead_outside() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let tar = raw_tar(&[
        ("slash", tar::EntryType::Symlink, "/", b""),
        ("slash/etc/passwd", tar::EntryType::Regular, "", b"p"),
        ("up", tar::EntryType::Symlink, "../../..", b""),
        ("up/x", tar::EntryType::Regular, "", b"x"),
    ]);
    apply(&tar, &root).unwrap();
    assert_eq!(std::fs::read_to_string(root.join("etc/passwd")).unwrap(), "p");
    assert_eq!(std::fs::read_to_string(root.join("x")).unwrap(), "x");
    assert!(!outer.path().join("x").exists());
}

#[test]
fn existing_symlinks_in_the_rootfs_are_not_followed_out() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    let victim = outer.path().join("victim");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&victim).unwrap();
    std::os::unix::fs::symlink(&victim, root.join("dir")).unwrap();
    std::os::unix::fs::symlink(victim.join("file"), root.join("file")).unwrap();
    let tar = raw_tar(&[("dir/x", tar::EntryType::Regular, "", b"x"), ("file", tar::EntryType::Regular, "", b"f")]);
    apply(&tar, &root).unwrap();
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0, "nothing written outside");
    assert!(!root.join("file").symlink_metadata().unwrap().file_type().is_symlink(), "the link was replaced");
}

#[test]
fn hardlinks_to_outside_and_bad_whiteouts_are_refused_or_clamped() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(outer.path().join("secret"), "s").unwrap();
    let tar = raw_tar(&[("h", tar::EntryType::Link, "../secret", b"")]);
    // `../secret` clamps to `<root>/secret`, which does not exist: the link fails instead of escaping.
    assert!(apply(&tar, &root).is_err());
    let tar = raw_tar(&[(".wh...", tar::EntryType::Regular, "", b"")]);
    assert!(matches!(apply(&tar, &root), Err(LayerError::Escape { .. })));
}

#[test]
fn a_directory_replaced_by_a_symlink_is_not_written_through() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let tar = raw_tar(&[
        ("d", tar::EntryType::Directory, "", b""),
        ("d", tar::EntryType::Symlink, "/tmp/../..", b""),
        ("d/evil", tar::EntryType::Regular, "", b"e"),
    ]);
    apply(&tar, &root).unwrap();
    assert!(root.join("evil").exists(), "resolved inside the root");
    assert!(!Path::new("/evil").exists());
}

#[test]
fn gnu_tar_reads_our_layers() {
    let (bytes, _) = layer_bytes(vec![entry("d", EntryKind::Dir, 0o755), file("d/f", "x")], Compression::None);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.tar");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("tar").arg("-tvf").arg(&path).output().unwrap();
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("d/f") && listing.contains("0/0"), "{listing}");
}

#[test]
fn xattrs_survive_a_roundtrip() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), "x").unwrap();
    if xattr::set(src.path().join("f"), "user.kiln", b"v").is_err() {
        eprintln!("skipping: this filesystem has no user xattrs");
        return;
    }
    let entries = entries_from_dir(src.path(), "").unwrap();
    assert_eq!(entries[0].xattrs, [("user.kiln".to_string(), b"v".to_vec())]);
    let root = tempfile::tempdir().unwrap();
    apply(&layer_bytes(entries, Compression::Gzip).0, root.path()).unwrap();
    assert_eq!(xattr::get(root.path().join("f"), "user.kiln").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn diff_finds_changes_and_deletions() {
    let lower = tempfile::tempdir().unwrap();
    for (p, c) in [("a", "1"), ("b", "2"), ("d/x", "3")] {
        std::fs::create_dir_all(lower.path().join(p).parent().unwrap()).unwrap();
        std::fs::write(lower.path().join(p), c).unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let changed = work.path().join("rootfs");
    copy_tree(lower.path(), &changed).unwrap();
    std::fs::write(changed.join("a"), "changed").unwrap();
    std::fs::write(changed.join("new"), "n").unwrap();
    std::fs::remove_dir_all(changed.join("d")).unwrap();
    let entries = diff_trees(lower.path(), &changed).unwrap();
    let summary: Vec<(String, bool)> =
        entries.iter().map(|e| (e.path.clone(), matches!(e.kind, EntryKind::Whiteout))).collect();
    assert_eq!(summary, [("a".into(), false), ("new".into(), false), ("d".into(), true)]);
}

/// A host directory holding a file with content that exists nowhere else, and an empty root beside it.
fn victim_and_root() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let outer = tempfile::tempdir().unwrap();
    let victim = outer.path().join("victim");
    let root = outer.path().join("root");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(victim.join("keep"), "host only").unwrap();
    (outer, victim, root)
}

/// `victim`'s absolute path as it appears inside `root`.
fn inside(root: &Path, victim: &Path) -> std::path::PathBuf {
    root.join(victim.strip_prefix("/").unwrap())
}

#[test]
fn symlink_chains_resolve_inside_the_root() {
    let (_outer, victim, root) = victim_and_root();
    let abs = victim.to_string_lossy().into_owned();
    let tar = raw_tar(&[
        ("c", tar::EntryType::Symlink, &abs, b""),
        ("b", tar::EntryType::Symlink, "c", b""),
        ("a", tar::EntryType::Symlink, "/b", b""),
        ("a/x", tar::EntryType::Regular, "", b"x"),
    ]);
    apply(&tar, &root).unwrap();
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 1, "nothing written on the host");
    assert_eq!(std::fs::read_to_string(inside(&root, &victim).join("x")).unwrap(), "x");
}

#[test]
fn whiteouts_and_opaque_markers_through_symlinks_stay_inside() {
    let (_outer, victim, root) = victim_and_root();
    let abs = victim.to_string_lossy().into_owned();
    // A link in the layer and one already on disk, both to the host directory.
    std::os::unix::fs::symlink(&victim, root.join("ondisk")).unwrap();
    let tar = raw_tar(&[
        ("link", tar::EntryType::Symlink, &abs, b""),
        ("link/.wh.keep", tar::EntryType::Regular, "", b""),
        ("link/.wh..wh..opq", tar::EntryType::Regular, "", b""),
        ("ondisk/.wh.keep", tar::EntryType::Regular, "", b""),
        ("ondisk/.wh..wh..opq", tar::EntryType::Regular, "", b""),
        ("../../.wh.victim", tar::EntryType::Regular, "", b""),
    ]);
    apply(&tar, &root).unwrap();
    assert_eq!(std::fs::read_to_string(victim.join("keep")).unwrap(), "host only");
}

#[test]
fn a_hard_link_out_through_a_linked_parent_is_refused_and_names_the_entry() {
    let (_outer, victim, root) = victim_and_root();
    std::os::unix::fs::symlink(&victim, root.join("etc")).unwrap();
    let tar = raw_tar(&[("h", tar::EntryType::Link, "etc/keep", b"")]);
    let err = apply(&tar, &root).unwrap_err().to_string();
    assert!(err.contains("\"h\"") && err.contains("hard link to etc/keep"), "{err}");
    assert!(root.join("h").symlink_metadata().is_err());
    assert_eq!(std::fs::metadata(victim.join("keep")).unwrap().nlink(), 1, "the host file got no new link");
    // The same name inside the root is linked as asked.
    std::fs::create_dir_all(inside(&root, &victim)).unwrap();
    std::fs::write(inside(&root, &victim).join("keep"), "mine").unwrap();
    apply(&tar, &root).unwrap();
    assert_eq!(std::fs::read_to_string(root.join("h")).unwrap(), "mine");
}

#[test]
fn a_dangling_link_parent_gets_its_target_created_inside() {
    let (_outer, victim, root) = victim_and_root();
    let target = victim.join("new").to_string_lossy().into_owned();
    let tar = raw_tar(&[("d", tar::EntryType::Symlink, &target, b""), ("d/f", tar::EntryType::Regular, "", b"f")]);
    apply(&tar, &root).unwrap();
    assert!(!victim.join("new").exists(), "nothing created on the host");
    assert_eq!(std::fs::read_to_string(inside(&root, &victim).join("new/f")).unwrap(), "f");
}

#[test]
fn a_listed_file_is_written_at_its_listed_size_and_one_that_shrank_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("grew"), b"12345").unwrap();
    std::fs::write(dir.path().join("shrank"), b"1234567890").unwrap();
    let root = std::sync::Arc::new(crate::confine::Root::open(dir.path()).unwrap());
    let listed = |name: &str| {
        let meta = root.dir("").unwrap().lstat(std::ffi::OsStr::new(name)).unwrap();
        let source = FileSource::Rooted(crate::confine::RootedPath::listed(root.clone(), name.to_string(), meta));
        entry(name, EntryKind::File(source), 0o644)
    };
    let (grew, shrank) = (listed("grew"), listed("shrank"));
    std::fs::write(dir.path().join("grew"), b"1234567890").unwrap();
    std::fs::write(dir.path().join("shrank"), b"12").unwrap();

    let (bytes, _) = layer_bytes(vec![grew], Compression::None);
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut only = archive.entries().unwrap().next().unwrap().unwrap();
    let mut content = Vec::new();
    std::io::Read::read_to_end(&mut only, &mut content).unwrap();
    assert_eq!(content, b"12345", "cut at the size the walk listed, the header and data agree");

    let opts = WriteOptions { compression: Compression::None, ..Default::default() };
    let err = write_layer(vec![shrank], Vec::new(), &opts).unwrap_err().to_string();
    assert!(err.contains("shrank") && err.contains(&dir.path().join("shrank").display().to_string()), "{err}");
}

#[test]
fn the_diff_id_is_the_digest_of_the_uncompressed_tar_over_many_chunks_reused_or_not() {
    use super::pgzip::tests::noise;
    let files = |changed: u64| -> Vec<Entry> {
        (0..24u64)
            .map(|i| {
                let seed = if i == 7 { changed } else { i + 100 };
                let body = noise(300_000 + i as usize * 4_099, seed);
                entry(&format!("d/f{i:02}"), EntryKind::File(FileSource::Bytes(body)), 0o644)
            })
            .collect()
    };
    let check = |gz: &[u8], digests: &LayerDigests| {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut decompress(gz).unwrap(), &mut plain).unwrap();
        assert_eq!(crate::store::digest_of(&plain).to_string(), digests.diff_id.to_string());
        assert_eq!(crate::store::digest_of(gz).to_string(), digests.digest.to_string());
    };
    let (first, digests) = layer_bytes(files(1), Compression::Gzip);
    let index = digests.chunks.clone().unwrap();
    assert!(index.records.len() > 4, "several chunks: {}", index.records.len());
    check(&first, &digests);
    // One file changed, members reused from the first blob (chunks guessed, some guesses wrong).
    let blob = tempfile::tempfile().unwrap();
    std::os::unix::fs::FileExt::write_all_at(&blob, &first, 0).unwrap();
    let reuse: std::sync::Arc<dyn MemberSource> = std::sync::Arc::new(BlobMembers::new(blob, index));
    let mut out = Vec::new();
    let opts = WriteOptions { compression: Compression::Gzip, reuse: Some(reuse), ..Default::default() };
    let again = write_layer(files(2), &mut out, &opts).unwrap();
    check(&out, &again);
    assert_ne!(again.diff_id, digests.diff_id);
}
