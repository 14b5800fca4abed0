//! Where a COPY/ADD's entries land in the image: their paths resolved through the image's symlinks, as
//! BuildKit's copy and unpack write them into the real filesystem. `ADD payload.tar /` whose archive holds
//! `var/run/x` in an image where `/var/run -> /run` gives `run/x` and keeps the link (moby/moby#53258);
//! `COPY foo /link/` writes `target/foo`. A directory entry never replaces a symlink that leads to a
//! directory; anything else at a link's own path replaces the link, as a copy over it does.
//!
//! Input: the step's entries and a look-up of the image's paths; output: the entries with their paths (and
//! hard-link targets) rewritten. It reads nothing itself — the caller's look-up resolves inside the image.

use std::collections::HashMap;

use crate::layer::{Entry, EntryKind};

/// What the image has at a path whose parents are real directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Nothing.
    Missing,
    /// A directory.
    Dir,
    /// A symlink, with its target as written.
    Link(String),
    /// Anything else (a file, a device...).
    Other,
}

/// How many links one path may pass through (Linux's limit).
const MAX_LINKS: usize = 40;

/// The entries with their paths resolved through the image's links (`lookup` answers for real paths).
pub fn resolve(entries: Vec<Entry>, lookup: &dyn Fn(&str) -> Node) -> Vec<Entry> {
    let mut renamed: HashMap<String, String> = HashMap::new();
    // Many entries share a parent: each parent is resolved once.
    let mut parents: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for mut entry in entries {
        let (parent, name) = match entry.path.rsplit_once('/') {
            Some((p, n)) => {
                let real = parents.entry(p.to_string()).or_insert_with(|| real_dir(p, lookup)).clone();
                (real, n.to_string())
            }
            None => (String::new(), entry.path.clone()),
        };
        let path = if parent.is_empty() { name } else { format!("{parent}/{name}") };
        if entry.kind == EntryKind::Dir
            && let Node::Link(_) = lookup(&path)
            && lookup(&real_dir(&path, lookup)) == Node::Dir
        {
            // The image's link to a directory stays; what the entry holds goes where the link leads.
            continue;
        }
        if path != entry.path {
            renamed.insert(entry.path.clone(), path.clone());
            entry.path = path;
        }
        out.push(entry);
    }
    for entry in &mut out {
        if let EntryKind::Hardlink(target) = &mut entry.kind {
            let real = renamed.get(target.as_str()).cloned();
            if let Some(real) = real {
                *target = real;
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The real path of the directory `path` names in the image: every link followed inside the image (an
/// absolute target from the image's root, `..` clamped there), a missing component and what follows kept
/// as written (the step creates them).
fn real_dir(path: &str, lookup: &dyn Fn(&str) -> Node) -> String {
    let mut stack: Vec<String> = components(path).into_iter().rev().collect();
    let mut current: Vec<String> = Vec::new();
    let mut followed = 0;
    while let Some(part) = stack.pop() {
        if part == ".." {
            current.pop();
            continue;
        }
        let candidate = join(&current, &part);
        match lookup(&candidate) {
            Node::Link(target) if followed < MAX_LINKS => {
                followed += 1;
                if target.starts_with('/') {
                    current.clear();
                }
                stack.extend(components(&target).into_iter().rev());
            }
            Node::Missing => {
                current.push(part);
                current.extend(stack.drain(..).rev().filter(|p| p != ".."));
                break;
            }
            // A directory, or something the step's own entries replace: kept as written.
            _ => current.push(part),
        }
    }
    current.join("/")
}

fn components(path: &str) -> Vec<String> {
    path.split('/').filter(|p| !p.is_empty() && *p != ".").map(String::from).collect()
}

fn join(parts: &[String], last: &str) -> String {
    if parts.is_empty() { last.to_string() } else { format!("{}/{last}", parts.join("/")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(path: &str) -> Node {
        match path {
            "run" | "var" | "tmp" | "tmp/target" => Node::Dir,
            "var/run" => Node::Link("/run".into()),
            "rel" => Node::Link("../../tmp/target".into()),
            "loop" => Node::Link("loop".into()),
            "file" => Node::Other,
            _ => Node::Missing,
        }
    }

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry { path: path.into(), kind, mode: 0o755, uid: 0, gid: 0, mtime: 0, xattrs: Vec::new() }
    }

    fn paths(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn an_archive_unpacks_through_an_absolute_link_and_keeps_it() {
        let file = || EntryKind::File(crate::layer::FileSource::Bytes(b"x".to_vec()));
        let entries = vec![
            entry("var", EntryKind::Dir),
            entry("var/run", EntryKind::Dir),
            entry("var/run/act", EntryKind::Dir),
            entry("var/run/act/HEAD", file()),
            entry("var/run/act/HEAD.link", EntryKind::Hardlink("var/run/act/HEAD".into())),
        ];
        let out = resolve(entries, &image);
        assert_eq!(paths(&out), ["run/act", "run/act/HEAD", "run/act/HEAD.link", "var"]);
        assert_eq!(out[2].kind, EntryKind::Hardlink("run/act/HEAD".into()));
    }

    #[test]
    fn relative_links_stay_inside_the_image_and_files_replace_links() {
        let file = || EntryKind::File(crate::layer::FileSource::Bytes(Vec::new()));
        let out = resolve(vec![entry("rel/foo", file()), entry("var/run", file())], &image);
        assert_eq!(paths(&out), ["tmp/target/foo", "var/run"]);
        let out = resolve(vec![entry("loop/x", file()), entry("file/x", file())], &image);
        assert_eq!(paths(&out), ["file/x", "loop/x"], "what cannot be resolved is left as written");
    }
}
