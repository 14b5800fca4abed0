//! The build context: the directory COPY and ADD read from, seen through `.dockerignore`.
//!
//! The context is a tree kiln does not own: it is opened once as a [`confine::Root`] and every path in it
//! is resolved inside it (a link to `/etc` names the context's own `etc`). Walks go through directory
//! descriptors, sorted, never following a symlink (a link is an entry of its own); an excluded directory is
//! still entered when a `!` exception might match something inside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::confine::{self, Dir, Found, Meta, Root, Verdict};
use crate::dockerfile::ignore::{Ignore, IgnoreError, ignore_file_candidates};

/// Why the context could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The context directory is missing or not a directory.
    #[error("build context {path} is not a directory")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path being read (on the host, for the message).
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The ignore file has a bad pattern.
    #[error("{path}: {source}")]
    Ignore {
        /// The ignore file.
        path: PathBuf,
        /// The bad pattern.
        source: IgnoreError,
    },
}

/// An opened build context.
#[derive(Debug)]
pub struct Context {
    root: Arc<Root>,
    ignore: Ignore,
}

impl Context {
    /// Opens `root`, reading the ignore file that applies to `dockerfile`.
    pub fn open(root: &Path, dockerfile: &Path) -> Result<Context, ContextError> {
        let not_dir = || ContextError::NotADirectory { path: root.to_path_buf() };
        let opened = Root::open(root).map_err(|_| not_dir())?;
        if !opened.stat("").is_ok_and(|m| m.is_dir()) {
            return Err(not_dir());
        }
        let mut ignore = Ignore::empty();
        for candidate in ignore_file_candidates(dockerfile, root) {
            match read_ignore_file(&opened, root, &candidate) {
                Ok(text) => {
                    ignore = Ignore::parse(&text).map_err(|source| ContextError::Ignore { path: candidate, source })?;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(ContextError::Read { path: candidate, source }),
            }
        }
        Ok(Context { root: Arc::new(opened), ignore })
    }

    /// The context's root, for resolving paths inside it.
    pub fn root(&self) -> &Arc<Root> {
        &self.root
    }

    /// The context directory on the host (messages, and the root mounts are resolved from).
    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// Whether `rel` is hidden by `.dockerignore`.
    pub fn is_excluded(&self, rel: &str) -> bool {
        self.ignore.is_excluded(rel)
    }

    /// Every included entry below `dir` (which is `rel_dir` in the context, "" for the root), sorted by
    /// path, depth first; an excluded directory is entered only when a `!` pattern may bring back
    /// something below it.
    pub fn walk(&self, dir: &Dir, rel_dir: &str) -> Result<Vec<Found>, ContextError> {
        let judge = |rel: &str, meta: &Meta| {
            let excluded = self.is_excluded(rel);
            Verdict { keep: !excluded, descend: meta.is_dir() && (!excluded || self.ignore.may_include_under(rel)) }
        };
        let read = |rel: &str, source| ContextError::Read { path: self.display(rel), source };
        dir.walk(rel_dir, &judge, &read)
    }

    /// Where `rel` is on the host, for messages.
    pub fn display(&self, rel: &str) -> PathBuf {
        self.path().join(confine::clean(rel))
    }
}

/// An ignore file: the context's own is read inside the context (it may be a symlink like any entry); one
/// beside a Dockerfile outside the context is the user's own file.
fn read_ignore_file(root: &Root, context: &Path, candidate: &Path) -> std::io::Result<String> {
    let absolute = std::path::absolute(candidate)?;
    match absolute.strip_prefix(root.path()).or_else(|_| candidate.strip_prefix(context)) {
        Ok(rel) => String::from_utf8(root.read(&rel.to_string_lossy())?).map_err(std::io::Error::other),
        Err(_) => std::fs::read_to_string(candidate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            if !f.ends_with('/') {
                std::fs::write(&p, f).unwrap();
            }
        }
        dir
    }

    fn paths(ctx: &Context, rel: &str) -> Vec<String> {
        let mut out = Vec::new();
        let dir = ctx.root().dir(rel).unwrap();
        out.extend(ctx.walk(&dir, rel).unwrap().into_iter().map(|f| f.rel));
        out
    }

    #[test]
    fn walk_is_sorted_and_honours_dockerignore() {
        let dir = tree(&["b.txt", "a/x.go", "a/y.md", "vendor/keep/k.go", "vendor/drop.go", ".dockerignore"]);
        std::fs::write(dir.path().join(".dockerignore"), "*.md\n**/*.md\nvendor\n!vendor/keep\n").unwrap();
        let ctx = Context::open(dir.path(), &dir.path().join("Dockerfile")).unwrap();
        assert_eq!(paths(&ctx, ""), [".dockerignore", "a", "a/x.go", "b.txt", "vendor/keep", "vendor/keep/k.go"]);
        assert_eq!(paths(&ctx, "a"), ["a/x.go"]);
    }

    #[test]
    fn dockerfile_specific_ignore_wins() {
        let dir = tree(&["a.txt", "b.txt", "app.Dockerfile"]);
        std::fs::write(dir.path().join(".dockerignore"), "a.txt\n").unwrap();
        std::fs::write(dir.path().join("app.Dockerfile.dockerignore"), "b.txt\n").unwrap();
        let ctx = Context::open(dir.path(), &dir.path().join("app.Dockerfile")).unwrap();
        assert!(!ctx.is_excluded("a.txt") && ctx.is_excluded("b.txt"));
    }

    #[test]
    fn symlinks_are_listed_not_followed() {
        let dir = tree(&["d/f"]);
        std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
        let ctx = Context::open(dir.path(), &dir.path().join("Dockerfile")).unwrap();
        let root = ctx.root().dir("").unwrap();
        let seen: Vec<_> =
            ctx.walk(&root, "").unwrap().into_iter().map(|f| (f.rel, f.meta.is_symlink(), f.link)).collect();
        assert!(seen.contains(&("link".to_string(), true, Some(PathBuf::from("/etc")))));
        assert!(!seen.iter().any(|(p, ..)| p.starts_with("link/")));
    }

    #[test]
    fn a_linked_dockerignore_is_read_inside_the_context() {
        let dir = tree(&["etc/ignore", "x.txt"]);
        std::fs::write(dir.path().join("etc/ignore"), "x.txt\n").unwrap();
        std::os::unix::fs::symlink("/etc/ignore", dir.path().join(".dockerignore")).unwrap();
        let ctx = Context::open(dir.path(), &dir.path().join("Dockerfile")).unwrap();
        assert!(ctx.is_excluded("x.txt"), "the link names the context's own /etc/ignore");
    }

    #[test]
    fn missing_context_is_a_clear_error() {
        let e = Context::open(Path::new("/nonexistent/ctx"), Path::new("Dockerfile")).unwrap_err();
        assert_eq!(e.to_string(), "build context /nonexistent/ctx is not a directory");
    }
}
