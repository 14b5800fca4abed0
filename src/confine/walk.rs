//! Walking a tree through descriptors: every entry below a directory, depth first in name order, with what
//! a COPY needs of it (metadata, a symlink's target, extended attributes) read while its directory is open.
//!
//! A large context is mostly system calls (a `stat` and an xattr listing per file), and nothing else can
//! start before the walk ends, so sibling directories are read on rayon's threads; the result is put
//! back in walk order, so what callers see does not depend on which thread read what. Each task opens its
//! own directory, so at most one descriptor per thread and level is open at a time, however wide the tree.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;

use rayon::prelude::*;

use super::dir::{Dir, Meta};

/// One entry a walk found.
pub struct Found {
    /// Its path below the walk's start, '/'-separated, with the walk's prefix.
    pub rel: String,
    /// Its name in its directory.
    pub name: OsString,
    /// Its own metadata (a symlink's, not its target's).
    pub meta: Meta,
    /// A symlink's target, as written.
    pub link: Option<PathBuf>,
    /// Its extended attributes, sorted (none when they cannot be read).
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Which directories a walk enters: `(rel, meta)` of a directory entry, true to list what is in it.
pub type Descend<'a> = dyn Fn(&str, &Meta) -> bool + Sync + 'a;

/// How a walk reports a failure at `rel`.
pub type Fail<'a, E> = dyn Fn(&str, io::Error) -> E + Sync + 'a;

impl Dir {
    /// Every entry below this directory (which is `prefix`, "" for the top), depth first in name order,
    /// entering the directories `descend` accepts (never through a symlink); the first failure in walk
    /// order, as `fail` makes it, when an entry cannot be read.
    pub fn walk<E: Send>(&self, prefix: &str, descend: &Descend<'_>, fail: &Fail<'_, E>) -> Result<Vec<Found>, E> {
        let mut found = Vec::new();
        let mut enter = Vec::new();
        for name in self.names().map_err(|e| fail(prefix, e))? {
            let text = name.to_string_lossy();
            let rel = if prefix.is_empty() { text.into_owned() } else { format!("{prefix}/{text}") };
            let meta = self.lstat(&name).map_err(|e| fail(&rel, e))?;
            let link = if meta.is_symlink() { Some(self.read_link(&name).map_err(|e| fail(&rel, e))?) } else { None };
            if meta.is_dir() && descend(&rel, &meta) {
                enter.push(found.len());
            }
            let xattrs = self.xattrs(&name);
            found.push(Found { rel, name, meta, link, xattrs });
        }
        if enter.is_empty() {
            return Ok(found);
        }
        let below: Vec<Result<Vec<Found>, E>> = enter
            .par_iter()
            .map(|&i| {
                let entry = &found[i];
                let dir = self.dir(&entry.name).map_err(|e| fail(&entry.rel, e))?;
                dir.walk(&entry.rel, descend, fail)
            })
            .collect();
        splice(found, &enter, below)
    }
}

/// `found` with each entered directory's contents (`below`, one per index in `enter`) right after it.
fn splice<E>(found: Vec<Found>, enter: &[usize], below: Vec<Result<Vec<Found>, E>>) -> Result<Vec<Found>, E> {
    let mut below = enter.iter().copied().zip(below).peekable();
    let mut out = Vec::with_capacity(found.len());
    for (i, entry) in found.into_iter().enumerate() {
        out.push(entry);
        if below.peek().is_some_and(|(at, _)| *at == i)
            && let Some((_, contents)) = below.next()
        {
            out.extend(contents?);
        }
    }
    Ok(out)
}
