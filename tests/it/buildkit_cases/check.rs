//! Checking one build's result against its expectations: files through an `umoci unpack` of the image,
//! config and history through `skopeo inspect --config --raw`. Every mismatch is collected, not just the
//! first, so a failing case says everything that is wrong with it.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::case::{Build, FileExpect, HistoryExpect};

/// An unpacked result, kept while later builds compare with it.
pub struct Unpacked {
    _dir: tempfile::TempDir,
    /// The rootfs.
    pub rootfs: PathBuf,
}

/// Unpacks `name` from the store with `umoci raw unpack` (the rootfs only: a config naming a user the
/// image lacks, `USER nobody` on scratch, must not stop the check).
pub fn unpack(store: &Path, name: &str) -> Result<Unpacked, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let rootfs = dir.path().join("rootfs");
    let image = format!("{}:{name}", store.display());
    let rootfs_arg = rootfs.to_string_lossy().into_owned();
    let mut args = vec!["raw", "unpack", "--image", image.as_str()];
    if !owners_readable() {
        args.push("--rootless");
    }
    args.push(&rootfs_arg);
    let out = std::process::Command::new("umoci").args(&args).output().map_err(|e| format!("umoci: {e}"))?;
    if !out.status.success() {
        return Err(format!("umoci {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(Unpacked { _dir: dir, rootfs })
}

/// Whether owners can be read back (umoci keeps them only when it runs as root).
pub fn owners_readable() -> bool {
    crate::harness::tool("id", &["-u"]).trim() == "0"
}

/// Checks the files of `build` in `rootfs`; `earlier` holds the rootfs of earlier builds (by index).
pub fn files(build: &Build, rootfs: &Path, earlier: &[Option<PathBuf>], problems: &mut Vec<String>) {
    for expect in &build.files {
        file(expect, rootfs, earlier, problems);
    }
}

fn file(e: &FileExpect, rootfs: &Path, earlier: &[Option<PathBuf>], problems: &mut Vec<String>) {
    let path = rootfs.join(e.path.trim_start_matches('/'));
    let mut fail = |what: String| problems.push(format!("{}: {what}", e.path));
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) if e.absent => return fail(format!("should not exist, but is a {}", kind_of(&m.file_type()))),
        Ok(m) => m,
        Err(_) if e.absent => return,
        Err(err) => return fail(format!("missing ({err})")),
    };
    if let Some(kind) = &e.kind
        && kind_of(&meta.file_type()) != kind
    {
        fail(format!("is a {}, expected a {kind}", kind_of(&meta.file_type())));
    }
    if let Some(mode) = e.mode
        && meta.mode() & 0o7777 != mode
    {
        fail(format!("mode {:04o}, expected {mode:04o}", meta.mode() & 0o7777));
    }
    if (e.uid.is_some() || e.gid.is_some()) && owners_readable() {
        let (uid, gid) = (meta.uid(), meta.gid());
        if e.uid.is_some_and(|u| u != uid) || e.gid.is_some_and(|g| g != gid) {
            fail(format!("owner {uid}:{gid}, expected {}:{}", opt(e.uid), opt(e.gid)));
        }
    }
    if let Some(mtime) = e.mtime
        && meta.mtime() != mtime
    {
        fail(format!("mtime {}, expected {mtime}", meta.mtime()));
    }
    if let Some(link) = &e.link {
        match std::fs::read_link(&path) {
            Ok(target) if target.to_string_lossy() == *link => {}
            Ok(target) => fail(format!("links to {}, expected {link}", target.display())),
            Err(err) => fail(format!("not a symlink ({err})")),
        }
    }
    if e.empty_dir {
        match std::fs::read_dir(&path).map(|d| d.count()) {
            Ok(0) => {}
            Ok(n) => fail(format!("directory has {n} entries, expected none")),
            Err(err) => fail(format!("not a directory ({err})")),
        }
    }
    if let Some(other) = &e.same_file_as {
        let same = std::fs::metadata(rootfs.join(other.trim_start_matches('/')))
            .ok()
            .zip(std::fs::metadata(&path).ok())
            .is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev());
        if !same {
            fail(format!("is not the same file as {other}"));
        }
    }
    let needs_content = e.content.is_some() || e.contains.is_some() || e.excludes.is_some();
    let needs_compare = e.equals_build.is_some() || e.differs_from_build.is_some();
    if !needs_content && !needs_compare {
        return;
    }
    let Ok(bytes) = std::fs::read(&path) else { return fail("cannot be read".to_string()) };
    let text = String::from_utf8_lossy(&bytes);
    if let Some(content) = &e.content
        && text != *content
    {
        fail(format!("content {text:?}, expected {content:?}"));
    }
    if let Some(part) = &e.contains
        && !text.contains(part.as_str())
    {
        fail(format!("content {text:?} does not contain {part:?}"));
    }
    if let Some(part) = &e.excludes
        && text.contains(part.as_str())
    {
        fail(format!("content {text:?} contains {part:?}"));
    }
    let other = |n: usize| -> Option<Vec<u8>> {
        earlier.get(n).cloned().flatten().and_then(|r| std::fs::read(r.join(e.path.trim_start_matches('/'))).ok())
    };
    if let Some(n) = e.equals_build
        && other(n).as_deref() != Some(bytes.as_slice())
    {
        fail(format!("differs from build {n}'s, expected the same"));
    }
    if let Some(n) = e.differs_from_build
        && other(n).as_deref() == Some(bytes.as_slice())
    {
        fail(format!("equals build {n}'s, expected a change"));
    }
}

fn opt(v: Option<u32>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "*".to_string())
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else if t.is_socket() {
        "socket"
    } else if t.is_fifo() {
        "fifo"
    } else {
        "device"
    }
}

/// Checks config fields, history and layer count of `build` against `config` (the image config JSON).
pub fn config(build: &Build, config: &Value, problems: &mut Vec<String>) {
    for (pointer, expected) in &build.config {
        let expected = serde_json::to_value(expected).unwrap_or(Value::Null);
        match config.pointer(pointer) {
            Some(actual) if *actual == expected => {}
            actual => problems.push(format!("config {pointer}: {}, expected {expected}", shown(actual))),
        }
    }
    for (pointer, items) in &build.config_contains {
        let actual = config.pointer(pointer).and_then(Value::as_array).cloned().unwrap_or_default();
        for item in items {
            let item = serde_json::to_value(item).unwrap_or(Value::Null);
            if !actual.contains(&item) {
                problems.push(format!("config {pointer}: {actual:?} does not contain {item}"));
            }
        }
    }
    for pointer in &build.config_absent {
        if let Some(v) = config.pointer(pointer).filter(|v| !v.is_null()) {
            problems.push(format!("config {pointer}: {v}, expected absent"));
        }
    }
    let history = config.pointer("/history").and_then(Value::as_array).cloned().unwrap_or_default();
    if let Some(n) = build.history_len
        && history.len() != n
    {
        problems.push(format!("{} history entries, expected {n}: {}", history.len(), created_bys(&history)));
    }
    if let Some(n) = build.layers {
        let layers = config.pointer("/rootfs/diff_ids").and_then(Value::as_array).map_or(0, Vec::len);
        if layers != n {
            problems.push(format!("{layers} layers, expected {n}"));
        }
    }
    for expect in &build.history {
        history_entry(expect, &history, problems);
    }
}

fn history_entry(e: &HistoryExpect, history: &[Value], problems: &mut Vec<String>) {
    let index = if e.index < 0 { history.len() as i64 + e.index } else { e.index };
    let Some(entry) = usize::try_from(index).ok().and_then(|i| history.get(i)) else {
        problems.push(format!("history[{}]: missing ({} entries: {})", e.index, history.len(), created_bys(history)));
        return;
    };
    let created_by = entry.get("created_by").and_then(Value::as_str).unwrap_or_default();
    let mut fail = |what: String| problems.push(format!("history[{}] {created_by:?}: {what}", e.index));
    if let Some(exact) = &e.created_by
        && created_by != exact
    {
        fail(format!("expected created_by {exact:?}"));
    }
    for part in &e.created_by_contains {
        if !created_by.contains(part.as_str()) {
            fail(format!("does not contain {part:?}"));
        }
    }
    for part in &e.created_by_excludes {
        if created_by.contains(part.as_str()) {
            fail(format!("contains {part:?}"));
        }
    }
    let empty = entry.get("empty_layer").and_then(Value::as_bool).unwrap_or(false);
    if let Some(expected) = e.empty_layer
        && expected != empty
    {
        fail(format!("empty_layer {empty}, expected {expected}"));
    }
    if let Some(created) = &e.created {
        let actual = entry.get("created").and_then(Value::as_str).unwrap_or_default();
        if actual != created {
            fail(format!("created {actual:?}, expected {created:?}"));
        }
    }
}

fn created_bys(history: &[Value]) -> String {
    let list: Vec<&str> = history.iter().map(|h| h.get("created_by").and_then(Value::as_str).unwrap_or("")).collect();
    format!("{list:?}")
}

fn shown(v: Option<&Value>) -> String {
    v.map_or_else(|| "absent".to_string(), Value::to_string)
}
