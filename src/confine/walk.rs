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

/// What a walk does with an entry, given `(rel, meta)`: whether to keep it in the result, and (for a
/// directory) whether to list what is in it. Called on the walk's threads, so it is where filtering
/// by pattern belongs, not after.
pub type Judge<'a> = dyn Fn(&str, &Meta) -> Verdict + Sync + 'a;

/// What a [`Judge`] decides for one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The entry is part of the result.
    pub keep: bool,
    /// A directory's contents are walked (whether or not the directory itself is kept).
    pub descend: bool,
}

impl Verdict {
    /// Keep everything, enter every directory.
    pub const ALL: Verdict = Verdict { keep: true, descend: true };
}

/// How a walk reports a failure at `rel`.
pub type Fail<'a, E> = dyn Fn(&str, io::Error) -> E + Sync + 'a;

impl Dir {
    /// The entries below this directory (which is `prefix`, "" for the top) that `judge` keeps, depth first
    /// in name order, entering the directories it says to (never through a symlink); the first failure in
    /// walk order, as `fail` makes it, when an entry cannot be read.
    pub fn walk<E: Send>(&self, prefix: &str, judge: &Judge<'_>, fail: &Fail<'_, E>) -> Result<Vec<Found>, E> {
        let mut found = Vec::new();
        // Where each entered directory's contents go in `found` (after the directory, when it is kept).
        let mut enter = Vec::new();
        for name in self.names().map_err(|e| fail(prefix, e))? {
            let text = name.to_string_lossy();
            let rel = if prefix.is_empty() { text.into_owned() } else { format!("{prefix}/{text}") };
            let meta = self.lstat(&name).map_err(|e| fail(&rel, e))?;
            let verdict = judge(&rel, &meta);
            if meta.is_dir() && verdict.descend {
                enter.push((found.len() + usize::from(verdict.keep), name.clone(), rel.clone()));
            }
            if !verdict.keep {
                continue;
            }
            let link = if meta.is_symlink() { Some(self.read_link(&name).map_err(|e| fail(&rel, e))?) } else { None };
            let xattrs = self.xattrs(&name);
            found.push(Found { rel, name, meta, link, xattrs });
        }
        if enter.is_empty() {
            return Ok(found);
        }
        let below: Vec<Result<Vec<Found>, E>> = enter
            .par_iter()
            .map(|(_, name, rel)| {
                let dir = self.dir(name).map_err(|e| fail(rel, e))?;
                dir.walk(rel, judge, fail)
            })
            .collect();
        splice(found, enter.iter().map(|(at, ..)| *at), below)
    }
}

/// `found` with each entered directory's contents (`below`, one per position in `at`, ascending) inserted
/// at its position.
fn splice<E>(
    found: Vec<Found>,
    at: impl Iterator<Item = usize>,
    below: Vec<Result<Vec<Found>, E>>,
) -> Result<Vec<Found>, E> {
    let mut below = at.zip(below).peekable();
    let mut out = Vec::with_capacity(found.len());
    let mut found = found.into_iter();
    let mut i = 0;
    loop {
        while let Some((_, contents)) = below.next_if(|(at, _)| *at == i) {
            out.extend(contents?);
        }
        let Some(entry) = found.next() else { break };
        out.push(entry);
        i += 1;
    }
    Ok(out)
}
