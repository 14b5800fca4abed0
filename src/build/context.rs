//! The build context: the directory COPY and ADD read from, seen through `.dockerignore`.
//!
//! Listing is sorted and never follows symlinks (they are entries of their own); an excluded directory
//! is still entered when a `!` exception might match something inside it.

use std::fs::Metadata;
use std::path::{Path, PathBuf};

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
        /// The path being read.
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

/// What a context entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link and its target as written.
    Symlink(PathBuf),
    /// Anything else (fifo, socket, device).
    Other,
}

/// One entry of the context.
#[derive(Debug, Clone)]
pub struct ContextEntry {
    /// Path relative to the context root, '/'-separated.
    pub rel_path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Its metadata (from lstat).
    pub metadata: Metadata,
}

/// An opened build context.
#[derive(Debug)]
pub struct Context {
    root: PathBuf,
    ignore: Ignore,
}

impl Context {
    /// Opens `root`, reading the ignore file that applies to `dockerfile`.
    pub fn open(root: &Path, dockerfile: &Path) -> Result<Context, ContextError> {
        if !root.is_dir() {
            return Err(ContextError::NotADirectory { path: root.to_path_buf() });
        }
        let mut ignore = Ignore::empty();
        for candidate in ignore_file_candidates(dockerfile, root) {
            match std::fs::read_to_string(&candidate) {
                Ok(text) => {
                    ignore = Ignore::parse(&text).map_err(|source| ContextError::Ignore { path: candidate, source })?;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(ContextError::Read { path: candidate, source }),
            }
        }
        Ok(Context { root: root.to_path_buf(), ignore })
    }

    /// The context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `rel` is hidden by `.dockerignore`.
    pub fn is_excluded(&self, rel: &str) -> bool {
        self.ignore.is_excluded(rel)
    }

    /// Every included entry under `rel_dir` ("" = the whole context), sorted by path, `rel_dir` itself
    /// first when it is not the root.
    pub fn walk(&self, rel_dir: &str) -> Result<Vec<ContextEntry>, ContextError> {
        let mut out = Vec::new();
        let rel_dir = rel_dir.trim_matches('/');
        let start = if rel_dir.is_empty() { self.root.clone() } else { self.root.join(rel_dir) };
        let meta = lstat(&start)?;
        if !rel_dir.is_empty() && !self.is_excluded(rel_dir) {
            out.push(entry(rel_dir.to_string(), &start, meta.clone())?);
        }
        if meta.is_dir() {
            self.walk_dir(&start, rel_dir, &mut out)?;
        }
        Ok(out)
    }

    fn walk_dir(&self, abs: &Path, rel: &str, out: &mut Vec<ContextEntry>) -> Result<(), ContextError> {
        let read = |source| ContextError::Read { path: abs.to_path_buf(), source };
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(abs)
            .map_err(read)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(read)?;
        names.sort();
        for name in names {
            let name_str = name.to_string_lossy();
            let child_rel = if rel.is_empty() { name_str.to_string() } else { format!("{rel}/{name_str}") };
            let child_abs = abs.join(&name);
            let meta = lstat(&child_abs)?;
            let excluded = self.is_excluded(&child_rel);
            if !excluded {
                out.push(entry(child_rel.clone(), &child_abs, meta.clone())?);
            }
            if meta.is_dir() && (!excluded || self.ignore.may_include_under(&child_rel)) {
                self.walk_dir(&child_abs, &child_rel, out)?;
            }
        }
        Ok(())
    }
}

fn lstat(path: &Path) -> Result<Metadata, ContextError> {
    std::fs::symlink_metadata(path).map_err(|source| ContextError::Read { path: path.to_path_buf(), source })
}

fn entry(rel_path: String, abs: &Path, metadata: Metadata) -> Result<ContextEntry, ContextError> {
    let ft = metadata.file_type();
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File
    } else if ft.is_symlink() {
        let target =
            std::fs::read_link(abs).map_err(|source| ContextError::Read { path: abs.to_path_buf(), source })?;
        EntryKind::Symlink(target)
    } else {
        EntryKind::Other
    };
    Ok(ContextEntry { rel_path, kind, metadata })
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
        ctx.walk(rel).unwrap().into_iter().map(|e| e.rel_path).collect()
    }

    #[test]
    fn walk_is_sorted_and_honours_dockerignore() {
        let dir = tree(&["b.txt", "a/x.go", "a/y.md", "vendor/keep/k.go", "vendor/drop.go", ".dockerignore"]);
        std::fs::write(dir.path().join(".dockerignore"), "*.md\n**/*.md\nvendor\n!vendor/keep\n").unwrap();
        let ctx = Context::open(dir.path(), &dir.path().join("Dockerfile")).unwrap();
        assert_eq!(paths(&ctx, ""), [".dockerignore", "a", "a/x.go", "b.txt", "vendor/keep", "vendor/keep/k.go"]);
        assert_eq!(paths(&ctx, "a"), ["a", "a/x.go"]);
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
        let entries = ctx.walk("").unwrap();
        let link = entries.iter().find(|e| e.rel_path == "link").unwrap();
        assert_eq!(link.kind, EntryKind::Symlink(PathBuf::from("/etc")));
        assert!(!entries.iter().any(|e| e.rel_path.starts_with("link/")));
    }

    #[test]
    fn missing_context_is_a_clear_error() {
        let e = Context::open(Path::new("/nonexistent/ctx"), Path::new("Dockerfile")).unwrap_err();
        assert_eq!(e.to_string(), "build context /nonexistent/ctx is not a directory");
    }
}
