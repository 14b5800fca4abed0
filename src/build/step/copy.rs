//! COPY (and the local-file half of ADD): turning sources and a destination into layer entries, straight
//! from the context or another rootfs — no container involved.
//!
//! The rules are the Dockerfile reference's: sources are relative to the context root (or the `--from`
//! rootfs) and may not climb out of it; a directory source copies its contents; several sources or a
//! wildcard need a directory destination ending in `/`; a relative destination is relative to WORKDIR;
//! missing parent directories are created; files keep their mode and mtime, get uid/gid 0 unless `--chown`,
//! and `--chmod` overrides the mode of everything copied.

use std::collections::{BTreeMap, HashMap};
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::build::context::Context;
use crate::build::step::glob;
use crate::dockerfile::ignore::Ignore;
use crate::layer::{Entry, EntryKind, FileSource};

/// Why a COPY could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A source matched nothing (BuildKit says "not found").
    #[error("{source_path}: not found{where_}")]
    NotFound {
        /// The source as written.
        source_path: String,
        /// " in the build context" or " in stage X".
        where_: String,
    },
    /// Several sources into a destination that is not a directory.
    #[error("when using COPY with more than one source file, the destination must be a directory and end with a /")]
    DestNotDir,
    /// Reading a source failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path being read.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The context walk failed.
    #[error(transparent)]
    Context(#[from] crate::build::context::ContextError),
    /// A bad `--exclude` pattern.
    #[error("bad --exclude pattern: {0}")]
    Exclude(String),
}

/// Where COPY reads from.
pub enum SourceRoot<'a> {
    /// The build context, filtered by `.dockerignore`.
    Context(&'a Context),
    /// An unpacked rootfs (another stage or an image), with a label for messages.
    Rootfs(&'a Path, &'a str),
}

/// Everything one COPY needs besides its sources.
pub struct CopySpec<'a> {
    /// Source words after expansion.
    pub sources: &'a [String],
    /// Destination after expansion.
    pub dest: &'a str,
    /// The stage's WORKDIR (absolute), for relative destinations.
    pub workdir: &'a str,
    /// Owner for everything copied (`--chown`), else root.
    pub owner: Option<(u32, u32)>,
    /// Mode for everything copied (`--chmod`, octal or symbolic).
    pub chmod: Option<&'a crate::plan::Chmod>,
    /// `--exclude` patterns.
    pub exclude: &'a [String],
    /// `--parents`: keep the source's path below the context root.
    pub parents: bool,
    /// The current image's rootfs, to see whether the destination or its parents exist.
    pub image_root: Option<&'a Path>,
    /// Timestamp for directories this step creates.
    pub created_at: i64,
}

/// A matched source: its path inside the source root and what it is.
struct Matched {
    rel: String,
    abs: PathBuf,
    meta: Metadata,
}

/// Computes the layer entries of one COPY.
pub fn entries(spec: &CopySpec<'_>, root: &SourceRoot<'_>) -> Result<Vec<Entry>, CopyError> {
    if spec.parents {
        return super::parents::entries(spec, root);
    }
    let exclude = if spec.exclude.is_empty() {
        None
    } else {
        Some(Ignore::parse(&spec.exclude.join("\n")).map_err(|e| CopyError::Exclude(e.to_string()))?)
    };
    let mut matched = Vec::new();
    let mut wildcard = false;
    for source in spec.sources {
        wildcard |= glob::has_wildcard(source);
        let found = match_source(root, source)?;
        // A wildcard that matches nothing copies nothing (BuildKit's AllowEmptyWildcard); a path must exist.
        if found.is_empty() && !glob::has_wildcard(source) {
            return Err(not_found(root, source));
        }
        matched.extend(found);
    }
    let dest = absolute_dest(spec.dest, spec.workdir);
    let many = matched.len() > 1 || spec.sources.len() > 1;
    if spec.sources.len() > 1 && !ends_as_dir(spec.dest) {
        return Err(CopyError::DestNotDir);
    }
    let dest_is_dir = ends_as_dir(spec.dest) || many || wildcard && matched.len() > 1 || exists_as_dir(spec, &dest);
    let mut out = Entries::new(spec);
    for m in &matched {
        if m.meta.is_dir() {
            out.dir_contents(root, m, &dest, exclude.as_ref())?;
        } else {
            let target = if dest_is_dir { join(&dest, base_name(&m.rel)) } else { dest.clone() };
            out.single(m, &target, matches!(root, SourceRoot::Rootfs(..)))?;
        }
    }
    Ok(out.finish())
}

/// Accumulates entries by destination path (a later source wins, as a later copy would overwrite).
struct Entries<'a> {
    spec: &'a CopySpec<'a>,
    by_path: BTreeMap<String, Entry>,
    inodes: HashMap<(u64, u64), String>,
}

impl<'a> Entries<'a> {
    fn new(spec: &'a CopySpec<'a>) -> Self {
        Entries { spec, by_path: BTreeMap::new(), inodes: HashMap::new() }
    }

    fn owner(&self, meta: &Metadata, keep_source_owner: bool) -> (u32, u32) {
        match self.spec.owner {
            Some(ids) => ids,
            None if keep_source_owner => (meta.uid(), meta.gid()),
            None => (0, 0),
        }
    }

    fn mode(&self, meta: &Metadata) -> u32 {
        match self.spec.chmod {
            Some(chmod) => chmod.apply(meta.mode(), meta.is_dir()),
            None => meta.mode() & 0o7777,
        }
    }

    /// Adds the parents of `target` that the image lacks, as BuildKit's copy creates them: 0755 (or a
    /// numeric `--chmod`), owned by `--chown` or root, with the step's time.
    fn parents(&mut self, target: &str) {
        let mut path = String::new();
        let parts: Vec<&str> = target.split('/').filter(|p| !p.is_empty()).collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            if self.by_path.contains_key(&path) || exists_in_image(self.spec, &path) {
                continue;
            }
            let (uid, gid) = self.spec.owner.unwrap_or((0, 0));
            let entry = Entry {
                path: path.clone(),
                kind: EntryKind::Dir,
                mode: self.spec.chmod.and_then(|c| c.octal()).unwrap_or(0o755),
                uid,
                gid,
                mtime: self.spec.created_at,
                xattrs: Vec::new(),
            };
            self.by_path.insert(path.clone(), entry);
        }
    }

    fn single(&mut self, m: &Matched, target: &str, from_rootfs: bool) -> Result<(), CopyError> {
        self.parents(target);
        self.add(&m.abs, &m.meta, target.trim_start_matches('/'), from_rootfs)
    }

    fn dir_contents(
        &mut self,
        root: &SourceRoot<'_>,
        m: &Matched,
        target: &str,
        exclude: Option<&Ignore>,
    ) -> Result<(), CopyError> {
        // A destination the image lacks is created as a parent is, not copied from the source directory
        // (BuildKit's copy makes it before it copies the contents into it).
        self.parents(&format!("{target}/x"));
        let top = target.trim_start_matches('/');
        for (rel, abs, meta) in walk(root, &m.rel, &m.abs)? {
            if exclude.is_some_and(|ex| ex.is_excluded(&rel)) {
                continue;
            }
            let dest = if top.is_empty() { rel.clone() } else { format!("{top}/{rel}") };
            self.add(&abs, &meta, &dest, matches!(root, SourceRoot::Rootfs(..)))?;
        }
        Ok(())
    }

    fn add(&mut self, abs: &Path, meta: &Metadata, dest: &str, from_rootfs: bool) -> Result<(), CopyError> {
        let (uid, gid) = self.owner(meta, from_rootfs);
        let read_err = |source| CopyError::Read { path: abs.to_path_buf(), source };
        let kind = if meta.is_dir() {
            EntryKind::Dir
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(abs).map_err(read_err)?;
            EntryKind::Symlink(target.to_string_lossy().into_owned())
        } else if meta.is_file() {
            let key = (meta.dev(), meta.ino());
            match self.inodes.get(&key) {
                Some(first) if meta.nlink() > 1 && first != dest => EntryKind::Hardlink(first.clone()),
                _ => {
                    if meta.nlink() > 1 {
                        self.inodes.insert(key, dest.to_string());
                    }
                    EntryKind::File(FileSource::Path(abs.to_path_buf()))
                }
            }
        } else if meta.file_type().is_socket() && !from_rootfs {
            // BuildKit's context transfer sends a socket as an empty regular file (testCopySocket).
            EntryKind::File(FileSource::Bytes(Vec::new()))
        } else {
            // Fifos and devices are skipped, and sockets of a rootfs (a layer cannot hold one).
            return Ok(());
        };
        // BuildKit's context transfer carries xattrs too (file capabilities above all).
        let xattrs = crate::layer::read_xattrs(abs);
        let mode = if matches!(kind, EntryKind::Symlink(_)) { 0o777 } else { self.mode(meta) };
        let entry = Entry { path: dest.to_string(), kind, mode, uid, gid, mtime: meta.mtime(), xattrs };
        self.by_path.insert(dest.to_string(), entry);
        Ok(())
    }

    fn finish(self) -> Vec<Entry> {
        self.by_path.into_values().collect()
    }
}

/// Every entry below a matched directory: (path relative to that directory, absolute path, metadata).
fn walk(root: &SourceRoot<'_>, rel: &str, abs: &Path) -> Result<Vec<(String, PathBuf, Metadata)>, CopyError> {
    match root {
        SourceRoot::Context(ctx) => {
            let prefix = if rel.is_empty() { String::new() } else { format!("{rel}/") };
            Ok(ctx
                .walk(rel)?
                .into_iter()
                .filter(|e| e.rel_path != rel)
                .map(|e| {
                    let inner = e.rel_path.strip_prefix(&prefix).unwrap_or(&e.rel_path).to_string();
                    (inner, ctx.root().join(&e.rel_path), e.metadata)
                })
                .collect())
        }
        SourceRoot::Rootfs(..) => {
            let mut out = Vec::new();
            for item in walkdir::WalkDir::new(abs).min_depth(1).sort_by_file_name() {
                let item = item.map_err(|e| CopyError::Read {
                    path: abs.to_path_buf(),
                    source: e.into_io_error().unwrap_or_else(|| std::io::Error::other("walk failed")),
                })?;
                let meta = item.metadata().map_err(|e| CopyError::Read {
                    path: item.path().to_path_buf(),
                    source: e.into_io_error().unwrap_or_else(|| std::io::Error::other("stat failed")),
                })?;
                let inner = item.path().strip_prefix(abs).unwrap_or(item.path());
                out.push((inner.to_string_lossy().into_owned(), item.path().to_path_buf(), meta));
            }
            Ok(out)
        }
    }
}

/// Finds what a source word names: one path, or every path a wildcard matches.
fn match_source(root: &SourceRoot<'_>, source: &str) -> Result<Vec<Matched>, CopyError> {
    let clean = clean_rel(source);
    let base = match root {
        SourceRoot::Context(ctx) => ctx.root().to_path_buf(),
        SourceRoot::Rootfs(path, _) => path.to_path_buf(),
    };
    let mut candidates = vec![String::new()];
    for component in clean.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for dir in &candidates {
            if glob::has_wildcard(component) {
                let abs = base.join(dir);
                let Ok(read) = std::fs::read_dir(&abs) else { continue };
                let mut names: Vec<String> =
                    read.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                names.sort();
                next.extend(names.into_iter().filter(|n| glob::matches(component, n)).map(|n| join_rel(dir, &n)));
            } else {
                next.push(join_rel(dir, &unescape(component)));
            }
        }
        candidates = next;
    }
    let mut out = Vec::new();
    for rel in candidates {
        if let SourceRoot::Context(ctx) = root
            && !rel.is_empty()
            && ctx.is_excluded(&rel)
        {
            continue;
        }
        let abs = base.join(&rel);
        // The named source itself is followed when it is a symlink, as the reference's copy does; what is
        // inside a copied directory is not.
        let Ok(meta) = std::fs::metadata(&abs) else { continue };
        out.push(Matched { rel, abs, meta });
    }
    Ok(out)
}

fn not_found(root: &SourceRoot<'_>, source: &str) -> CopyError {
    let where_ = match root {
        SourceRoot::Context(_) => " in the build context".to_string(),
        SourceRoot::Rootfs(_, label) => format!(" in {label}"),
    };
    CopyError::NotFound { source_path: source.to_string(), where_ }
}

/// The context paths a source word names (every match of a wildcard), `.dockerignore` applied.
pub fn context_matches(ctx: &Context, source: &str) -> Result<Vec<String>, CopyError> {
    source_matches(&SourceRoot::Context(ctx), source)
}

/// The paths a source word names in `root` (every match of a wildcard).
pub fn source_matches(root: &SourceRoot<'_>, source: &str) -> Result<Vec<String>, CopyError> {
    Ok(match_source(root, source)?.into_iter().map(|m| m.rel).collect())
}

/// `path.Clean("/" + p)` without the leading slash: `..` can never climb above the root.
pub fn clean_rel(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn unescape(component: &str) -> String {
    let mut out = String::with_capacity(component.len());
    let mut chars = component.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

fn join_rel(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }
}

/// The destination as an absolute path with `..` resolved (a trailing `/` is dropped here; see `ends_as_dir`).
pub fn absolute_dest(dest: &str, workdir: &str) -> String {
    let joined = if dest.starts_with('/') { dest.to_string() } else { format!("{workdir}/{dest}") };
    format!("/{}", clean_rel(&joined))
}

/// Whether a destination as written names a directory (`/app/`, `.`, `/app/.`).
pub fn ends_as_dir(dest: &str) -> bool {
    dest.ends_with('/') || dest == "." || dest.ends_with("/.")
}

fn exists_in_image(spec: &CopySpec<'_>, rel: &str) -> bool {
    spec.image_root.is_some_and(|r| r.join(rel.trim_start_matches('/')).symlink_metadata().is_ok())
}

fn exists_as_dir(spec: &CopySpec<'_>, dest: &str) -> bool {
    spec.image_root.is_some_and(|r| r.join(dest.trim_start_matches('/')).is_dir())
}

fn join(dir: &str, rel: &str) -> String {
    if rel.is_empty() { dir.to_string() } else { format!("{}/{}", dir.trim_end_matches('/'), rel) }
}

fn base_name(rel: &str) -> &str {
    rel.rsplit_once('/').map(|(_, b)| b).unwrap_or(rel)
}
