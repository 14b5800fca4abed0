use std::ffi::OsStr;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;

use super::*;

/// A host directory outside every root, holding a file whose content exists nowhere else.
struct Host {
    dir: tempfile::TempDir,
    marker: String,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let marker = format!("host-only-{}-{:?}", std::process::id(), std::time::SystemTime::now());
        std::fs::write(dir.path().join("secret"), &marker).unwrap();
        Host { dir, marker }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn tree() -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("real/sub")).unwrap();
    std::fs::write(dir.path().join("real/sub/file"), "inside").unwrap();
    let root = Root::open(dir.path()).unwrap();
    (dir, root)
}

fn read(root: &Root, path: &str) -> std::io::Result<String> {
    root.read(path).map(|b| String::from_utf8(b).unwrap())
}

#[test]
fn an_absolute_link_to_a_host_file_resolves_inside_the_root() {
    let host = Host::new();
    let (dir, root) = tree();
    symlink(host.path().join("secret"), dir.path().join("link")).unwrap();
    let err = read(&root, "link").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "the host file is never reached");
    // The same path under the root is what the link names.
    let inside = dir.path().join(host.path().strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::write(inside.join("secret"), "the root's own").unwrap();
    assert_eq!(read(&root, "link").unwrap(), "the root's own");
}

#[test]
fn a_link_to_a_host_directory_and_dotdot_stay_inside() {
    let host = Host::new();
    let (dir, root) = tree();
    symlink(host.path(), dir.path().join("hostdir")).unwrap();
    symlink("../../../../../../..", dir.path().join("up")).unwrap();
    assert!(read(&root, "hostdir/secret").is_err());
    assert!(read(&root, "../../../../etc/hostname").is_err() || !Path::new("/etc/hostname").exists());
    assert_eq!(read(&root, "up/real/sub/file").unwrap(), "inside", "`..` stops at the root");
    assert_eq!(read(&root, "/up/../real/./sub/file").unwrap(), "inside");
    assert!(root.stat("up").unwrap().is_dir());
    assert_eq!(root.stat("up").unwrap().ino(), root.stat("").unwrap().ino(), "`up` is the root itself");
}

#[test]
fn nofollow_opens_refuse_a_final_symlink_but_follow_parents_inside() {
    let (dir, root) = tree();
    symlink("real/sub/file", dir.path().join("flink")).unwrap();
    symlink("/real", dir.path().join("dlink")).unwrap();
    assert!(root.open_file_nofollow("flink").is_err());
    assert!(root.lstat("flink").unwrap().is_symlink());
    assert!(root.stat("flink").unwrap().is_file());
    let mut text = String::new();
    std::io::Read::read_to_string(&mut root.open_file_nofollow("dlink/sub/file").unwrap(), &mut text).unwrap();
    assert_eq!(text, "inside");
    assert_eq!(root.read_link("flink").unwrap(), Path::new("real/sub/file"));
}

#[test]
fn dir_operations_take_one_plain_name() {
    let (_dir, root) = tree();
    let real = root.dir("real").unwrap();
    for bad in ["..", ".", "", "sub/file", "/etc"] {
        assert!(real.lstat(OsStr::new(bad)).is_err(), "{bad:?}");
        assert!(real.create_dir(OsStr::new(bad), 0o755).is_err(), "{bad:?}");
    }
    assert!(real.lstat(OsStr::new("sub")).unwrap().is_dir());
}

#[test]
fn a_walk_lists_links_and_never_enters_them() {
    let host = Host::new();
    let (dir, root) = tree();
    symlink(host.path(), dir.path().join("real/hostdir")).unwrap();
    let found = root.dir("").unwrap().walk("", &|_, _| Verdict::ALL, &|_, e| e).unwrap();
    let seen: Vec<_> = found.iter().map(|f| (f.rel.clone(), f.meta.kind())).collect();
    let link = found.iter().find(|f| f.rel == "real/hostdir").and_then(|f| f.link.clone());
    assert_eq!(link.as_deref(), Some(host.path()), "a link's target is read, as written");
    assert_eq!(
        seen,
        [
            ("real".to_string(), Kind::Dir),
            ("real/hostdir".to_string(), Kind::Symlink),
            ("real/sub".to_string(), Kind::Dir),
            ("real/sub/file".to_string(), Kind::File),
        ]
    );
}

#[test]
fn ensure_creates_a_dangling_links_target_inside_the_root() {
    let host = Host::new();
    let (dir, root) = tree();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    symlink("../run/systemd/stub.conf", dir.path().join("etc/resolv.conf")).unwrap();
    symlink(host.path().join("new"), dir.path().join("abs")).unwrap();
    let (handle, created) = root.ensure("/etc/resolv.conf", Leaf::File, 0o755).unwrap();
    assert!(handle.meta().unwrap().is_file());
    assert_eq!(created, ["run", "run/systemd", "run/systemd/stub.conf"]);
    assert!(dir.path().join("run/systemd/stub.conf").is_file());
    let (_, created) = root.ensure("abs/deeper", Leaf::Dir, 0o755).unwrap();
    assert!(!host.path().join("new").exists(), "nothing created on the host");
    let inside = host.path().strip_prefix("/").unwrap().join("new/deeper");
    assert!(dir.path().join(&inside).is_dir());
    assert_eq!(created.last().map(String::as_str), Some(inside.to_str().unwrap()));
    assert!(root.ensure("real/sub/file", Leaf::Dir, 0o755).is_err(), "a file is not a directory");
    symlink("loop", dir.path().join("loop")).unwrap();
    assert!(root.ensure("loop/x", Leaf::Dir, 0o755).is_err());
}

#[test]
fn mkdir_all_through_links_stays_inside() {
    let host = Host::new();
    let (dir, root) = tree();
    symlink(host.path(), dir.path().join("hostdir")).unwrap();
    symlink("missing/target", dir.path().join("dangling")).unwrap();
    let made = root.mkdir_all("hostdir/made", 0o755).unwrap();
    assert!(made.meta().unwrap().is_dir());
    assert!(!host.path().join("made").exists());
    root.mkdir_all("dangling/x", 0o755).unwrap();
    assert!(dir.path().join("missing/target/x").is_dir());
}

#[test]
fn remove_through_a_linked_parent_removes_inside() {
    let host = Host::new();
    let (dir, root) = tree();
    symlink(host.path(), dir.path().join("hostdir")).unwrap();
    root.remove("hostdir/secret").unwrap();
    assert_eq!(std::fs::read_to_string(host.path().join("secret")).unwrap(), host.marker);
    let inside = dir.path().join(host.path().strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::write(inside.join("secret"), "x").unwrap();
    root.remove("hostdir/secret").unwrap();
    assert!(!inside.join("secret").exists());
}

#[test]
fn remove_all_empties_read_only_directories() {
    let (dir, root) = tree();
    std::fs::create_dir_all(dir.path().join("ro/inner")).unwrap();
    std::fs::write(dir.path().join("ro/inner/f"), "x").unwrap();
    std::fs::set_permissions(dir.path().join("ro/inner"), std::os::unix::fs::PermissionsExt::from_mode(0o500)).unwrap();
    root.dir("").unwrap().remove_all(OsStr::new("ro")).unwrap();
    assert!(!dir.path().join("ro").exists());
}

#[test]
fn a_private_copy_starts_at_the_resolved_source_and_keeps_links_as_links() {
    let host = Host::new();
    let (dir, root) = tree();
    symlink(host.path(), dir.path().join("real/sub/hostdir")).unwrap();
    symlink("/real/sub", dir.path().join("via")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("copy");
    private_copy(&root.resolve("via").unwrap(), &dest).unwrap();
    assert_eq!(std::fs::read_to_string(dest.join("file")).unwrap(), "inside");
    assert!(dest.join("hostdir").symlink_metadata().unwrap().file_type().is_symlink());
    assert!(dest.join("secret").symlink_metadata().is_err(), "the host directory's content was not copied");
    let file = out.path().join("one");
    private_copy(&root.resolve("real/sub/file").unwrap(), &file).unwrap();
    assert_eq!(std::fs::read_to_string(file).unwrap(), "inside");
}

#[test]
fn a_rooted_path_refuses_a_file_swapped_for_a_link() {
    let host = Host::new();
    let (dir, root) = tree();
    let root = Arc::new(root);
    let named = RootedPath::new(root.clone(), "real/sub/file".to_string());
    assert!(named.open().is_ok());
    std::fs::remove_file(dir.path().join("real/sub/file")).unwrap();
    symlink(host.path().join("secret"), dir.path().join("real/sub/file")).unwrap();
    assert!(named.open().is_err(), "a swapped-in link is not followed");
    assert_eq!(named, RootedPath::new(root, "real/sub/file".to_string()));
}

#[test]
fn metadata_and_xattrs_through_descriptors() {
    let (dir, root) = tree();
    let sub = root.dir("real/sub").unwrap();
    let meta = sub.lstat(OsStr::new("file")).unwrap();
    assert!(meta.is_file() && meta.size() == 6 && meta.nlink() == 1);
    if xattr::set(dir.path().join("real/sub/file"), "user.kiln", b"v").is_ok() {
        assert_eq!(sub.xattrs(OsStr::new("file")), [("user.kiln".to_string(), b"v".to_vec())]);
    }
    sub.set_mtime(OsStr::new("file"), 1_000_000).unwrap();
    sub.chmod(OsStr::new("file"), 0o600).unwrap();
    let meta = sub.lstat(OsStr::new("file")).unwrap();
    assert_eq!((meta.mtime(), meta.permissions()), (1_000_000, 0o600));
}

#[test]
fn xattrs_are_listed_relative_to_the_directory_sorted_and_not_through_symlinks() {
    let (dir, root) = tree();
    let file = dir.path().join("real/sub/file");
    // Enough names that the list outgrows any small first guess of its size.
    let names: Vec<String> = (0..40).rev().map(|i| format!("user.kiln-attribute-number-{i:02}")).collect();
    for n in &names {
        if let Err(e) = xattr::set(&file, n, n.as_bytes()) {
            assert!(std::env::var_os("CI").is_none(), "user xattrs unsupported under {}: {e}", dir.path().display());
            return;
        }
    }
    symlink("file", dir.path().join("real/sub/link")).unwrap();
    std::fs::write(dir.path().join("real/sub/plain"), b"x").unwrap();
    let sub = root.dir("real/sub").unwrap();
    let mut want: Vec<(String, Vec<u8>)> = names.iter().map(|n| (n.clone(), n.as_bytes().to_vec())).collect();
    want.sort();
    assert_eq!(sub.xattrs(OsStr::new("file")), want);
    assert_eq!(sub.xattrs(OsStr::new("link")), [], "a symlink's own attributes, not its target's");
    assert_eq!(sub.xattrs(OsStr::new("plain")), []);
    assert_eq!(sub.xattrs(OsStr::new("missing")), []);
}

#[test]
fn a_walk_reads_wide_and_deep_trees_in_order_and_enters_only_what_descend_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let mut want = Vec::new();
    for a in 0..30 {
        for b in 0..3 {
            let sub = format!("d{a:02}/e{b}");
            std::fs::create_dir_all(dir.path().join(&sub)).unwrap();
            std::fs::write(dir.path().join(format!("{sub}/f")), b"x").unwrap();
        }
    }
    std::fs::create_dir_all(dir.path().join("skip/deep")).unwrap();
    for a in 0..30 {
        want.push(format!("d{a:02}"));
        for b in 0..3 {
            // The `e1` directories are left out, their contents kept (as a `!` pattern re-includes).
            if b != 1 {
                want.push(format!("d{a:02}/e{b}"));
            }
            want.push(format!("d{a:02}/e{b}/f"));
        }
    }
    want.push("skip".to_string());
    let root = Root::open(dir.path()).unwrap();
    let judge = |rel: &str, _: &Meta| Verdict { keep: !rel.ends_with("/e1"), descend: rel != "skip" };
    let found: Vec<Found> = root.dir("").unwrap().walk("", &judge, &|_, e| e).unwrap();
    assert_eq!(found.into_iter().map(|f| f.rel).collect::<Vec<_>>(), want);
}

#[test]
fn paths_are_cleaned_like_path_clean_of_slash_plus_p() {
    assert_eq!(clean("/a/./b/../c/"), "a/c");
    assert_eq!(clean("../../etc/passwd"), "etc/passwd");
    assert_eq!(clean("/"), "");
    assert_eq!(components("a//b"), ["a", "b"]);
}

#[test]
fn an_opener_reads_what_a_rooted_path_reads_and_never_leaves_the_root() {
    let host = Host::new();
    let (dir, root) = tree();
    let root = Arc::new(root);
    std::fs::write(dir.path().join("real/sub/second"), "two").unwrap();
    std::fs::create_dir(dir.path().join("other")).unwrap();
    std::fs::write(dir.path().join("other/file"), "other").unwrap();
    // A parent that is a link: followed inside the root, as the whole-path open follows it.
    symlink("/real/sub", dir.path().join("linked")).unwrap();
    // A parent that leads to the host, and a file that is a link to the host: neither leaves.
    symlink(host.path(), dir.path().join("hostdir")).unwrap();
    symlink(host.path().join("secret"), dir.path().join("real/sub/leak")).unwrap();
    let mut opener = Opener::default();
    for path in [
        "real/sub/file",
        "real/sub/second",
        "other/file",
        "real/sub/file",
        "linked/second",
        "hostdir/secret",
        "real/sub/leak",
    ] {
        let rooted = RootedPath::new(root.clone(), path.to_string());
        let read = |f: std::io::Result<std::fs::File>| {
            f.and_then(|mut f| {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut f, &mut s).map(|_| s)
            })
            .map_err(|e| e.kind())
        };
        let (by_opener, by_path) = (read(opener.open(&rooted)), read(rooted.open()));
        assert_eq!(by_opener, by_path, "{path}");
        assert!(by_opener.as_deref().map_or(true, |s| !s.contains(&host.marker)), "{path} left the root");
    }
    assert!(opener.open(&RootedPath::new(root.clone(), "linked/second".into())).is_ok());
    assert!(opener.open(&RootedPath::new(root, "real/sub/leak".into())).is_err(), "a final link is refused");
}
