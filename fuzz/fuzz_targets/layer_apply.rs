//! Layer application with hostile tar entries — `..` and absolute names, symlink chains pointing up or at
//! an absolute host path, hard links to outside files, whiteouts and opaque markers — into a fresh root
//! deep inside a scratch tree. Whatever the result (applied, or an error), nothing outside the root may
//! change: every file, directory and link of the scratch tree outside the root is compared before and
//! after (type, size, mode, inode, link count, content, link target).
#![no_main]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// Name components the fuzzer combines; `..`, `.` and whiteout markers are the interesting ones.
const VOCAB: [&str; 10] = ["a", "b", "..", ".", "link", ".wh.a", ".wh.link", ".wh..wh..opq", "outside", "dir"];

/// Directories between the scratch tree's top and the root: a chain of `..` (up to this many levels,
/// counting symlink chains) still lands inside the scratch tree, where the comparison sees it.
const DEPTH: usize = 48;

#[derive(Debug, Arbitrary)]
struct Name {
    absolute: bool,
    parts: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
enum Target {
    /// A name like an entry's.
    Name(Name),
    /// `../` repeated, then a component.
    Up(u8, u8),
    /// The host path of a directory outside the root.
    HostDir,
    /// The host path of a file outside the root.
    HostFile,
}

#[derive(Debug, Arbitrary)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(Target),
    Hardlink(Target),
}

#[derive(Debug, Arbitrary)]
struct Spec {
    name: Name,
    kind: Kind,
    mode: u8,
}

fn name_text(name: &Name) -> String {
    let parts: Vec<&str> = name.parts.iter().take(5).map(|p| VOCAB[*p as usize % VOCAB.len()]).collect();
    let joined = parts.join("/");
    if name.absolute { format!("/{joined}") } else { joined }
}

fn target_text(target: &Target, outside: &Path) -> String {
    match target {
        Target::Name(name) => name_text(name),
        Target::Up(n, c) => format!("{}{}", "../".repeat(*n as usize % 5), VOCAB[*c as usize % VOCAB.len()]),
        Target::HostDir => outside.display().to_string(),
        Target::HostFile => outside.join("canary").display().to_string(),
    }
}

/// A tar of the specs; names are written raw (the tar crate refuses `..`, which is the point here).
fn archive(specs: &[Spec], outside: &Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for spec in specs.iter().take(16) {
        let name = name_text(&spec.name);
        if name.is_empty() || name.len() > 99 {
            continue;
        }
        let mut header = tar::Header::new_gnu();
        let mode = [0o644, 0o755, 0o000, 0o4755, 0o1777][spec.mode as usize % 5];
        header.set_mode(mode);
        let (kind, link, data): (tar::EntryType, String, &[u8]) = match &spec.kind {
            Kind::File(bytes) => (tar::EntryType::Regular, String::new(), &bytes[..bytes.len().min(64)]),
            Kind::Dir => (tar::EntryType::Directory, String::new(), &[]),
            Kind::Symlink(t) => (tar::EntryType::Symlink, target_text(t, outside), &[]),
            Kind::Hardlink(t) => (tar::EntryType::Link, target_text(t, outside), &[]),
        };
        if link.len() > 99 {
            continue;
        }
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_cksum();
        builder.append(&header, data).expect("appending to a Vec");
    }
    builder.into_inner().expect("finishing a Vec")
}

/// What can be seen of a path without following links.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    mode: u32,
    size: u64,
    ino: u64,
    nlink: u64,
    content: Option<Vec<u8>>,
    link: Option<PathBuf>,
}

/// Everything under `top` except the subtree `skip`.
fn survey(top: &Path, skip: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    let walk = walkdir::WalkDir::new(top).into_iter().filter_entry(|e| e.path() != skip);
    for entry in walk.filter_map(Result::ok) {
        let Ok(meta) = entry.path().symlink_metadata() else { continue };
        let seen = Seen {
            mode: meta.mode(),
            size: if meta.is_dir() { 0 } else { meta.len() },
            ino: meta.ino(),
            nlink: if meta.is_dir() { 0 } else { meta.nlink() },
            content: meta.is_file().then(|| std::fs::read(entry.path()).unwrap_or_default()),
            link: std::fs::read_link(entry.path()).ok(),
        };
        out.insert(entry.path().to_path_buf(), seen);
    }
    out
}

fn scratch() -> tempfile::TempDir {
    // tmpfs when there is one: many small files per run.
    let shm = Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix("kiln-fuzz-").tempdir_in(shm);
    builder.or_else(|_| tempfile::tempdir()).expect("a scratch dir")
}

fuzz_target!(|specs: Vec<Spec>| {
    let top = scratch();
    let outside = top.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("canary"), b"host file").unwrap();
    let mut deep = top.path().to_path_buf();
    for level in 0..DEPTH {
        deep.push(format!("d{level}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("near"), b"next to the root").unwrap();
    let root = deep.join("root");
    std::fs::create_dir(&root).unwrap();

    let tar = archive(&specs, &outside);
    let before = survey(top.path(), &root);
    let opts = kiln::layer::ApplyOptions { whiteouts: true, chown: false };
    let _ = kiln::layer::apply_layer(tar.as_slice(), &root, &opts);
    let after = survey(top.path(), &root);
    assert_eq!(before, after, "applying wrote outside the root");
});
