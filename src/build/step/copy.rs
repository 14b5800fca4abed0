//! COPY (and the local-file half of ADD): turning sources and a destination into layer entries, straight
//! from the context or another rootfs — no container involved.
//!
//! The rules are the Dockerfile reference's: sources are relative to the context root (or the `--from`
//! rootfs) and may not climb out of it; a directory source copies its contents; several sources or a
//! wildcard need a directory destination ending in `/`; a relative destination is relative to WORKDIR;
//! missing parent directories are created; files keep their mode and mtime, get uid/gid 0 unless `--chown`,
//! and `--chmod` overrides the mode of everything copied.
//!
//! Sources and the destination check go through [`crate::confine`]: a path is resolved inside its root,
//! symlinks included, so a context's `link -> /etc/shadow` names the context's own `etc/shadow` (usually
//! "not found"), never the host's; file contents are reopened through the root when the layer is written.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use crate::build::context::{Context, ContextError};
use crate::build::step::glob;
use crate::confine::{Handle, Kind, Meta, Root, RootedPath, Verdict};
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
        /// The path being read (on the host, for the message).
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The context walk failed.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// A bad `--exclude` pattern.
    #[error("bad --exclude pattern: {0}")]
    Exclude(String),
}

/// Where COPY reads from; either way a tree kiln does not own, read only through its [`Root`].
pub enum SourceRoot<'a> {
    /// The build context, filtered by `.dockerignore`.
    Context(&'a Context),
    /// An unpacked rootfs (another stage or an image), with a label for messages.
    Rootfs(&'a Arc<Root>, &'a str),
}

impl SourceRoot<'_> {
    fn root(&self) -> &Arc<Root> {
        match self {
            SourceRoot::Context(ctx) => ctx.root(),
            SourceRoot::Rootfs(root, _) => root,
        }
    }

    /// Files from another stage or an image keep their owner; the context's become root's.
    fn keeps_owner(&self) -> bool {
        matches!(self, SourceRoot::Rootfs(..))
    }

    fn display(&self, rel: &str) -> PathBuf {
        self.root().path().join(rel)
    }
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
    pub image_root: Option<&'a Root>,
    /// Timestamp for directories this step creates.
    pub created_at: i64,
}

impl<'a> CopySpec<'a> {
    /// `sources` to `dest` with nothing else asked: root's, modes kept, no image to look into (what a
    /// content digest of a selection needs).
    pub fn plain(sources: &'a [String], dest: &'a str) -> CopySpec<'a> {
        CopySpec {
            sources,
            dest,
            workdir: "/",
            owner: None,
            chmod: None,
            exclude: &[],
            parents: false,
            image_root: None,
            created_at: 0,
        }
    }
}

/// A matched source: its path as named, the real place inside the root of what it names (a named symlink
/// is followed, inside the root), and a handle to that.
struct Matched {
    rel: String,
    real: String,
    meta: Meta,
    handle: Handle,
}

/// One inode to turn into an entry: where it really is inside the root, what it is, its link target.
struct Item<'a> {
    real: &'a str,
    meta: &'a Meta,
    link: Option<PathBuf>,
    xattrs: Vec<(String, Vec<u8>)>,
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
    let mut out = Entries::new(spec, root);
    for m in matched {
        if m.meta.is_dir() {
            out.dir_contents(m, &dest, exclude.as_ref())?;
        } else {
            let target = if dest_is_dir { join(&dest, base_name(&m.rel)) } else { dest.clone() };
            out.parents(&target);
            let item = Item { real: &m.real, meta: &m.meta, link: None, xattrs: m.handle.xattrs() };
            out.add(item, target.trim_start_matches('/'));
        }
    }
    Ok(out.finish())
}

/// Accumulates entries by destination path (a later source wins, as a later copy would overwrite).
struct Entries<'a> {
    spec: &'a CopySpec<'a>,
    root: &'a SourceRoot<'a>,
    by_path: BTreeMap<String, Entry>,
    inodes: HashMap<(u64, u64), String>,
}

impl<'a> Entries<'a> {
    fn new(spec: &'a CopySpec<'a>, root: &'a SourceRoot<'a>) -> Self {
        Entries { spec, root, by_path: BTreeMap::new(), inodes: HashMap::new() }
    }

    fn owner(&self, meta: &Meta) -> (u32, u32) {
        match self.spec.owner {
            Some(ids) => ids,
            None if self.root.keeps_owner() => (meta.uid(), meta.gid()),
            None => (0, 0),
        }
    }

    /// The mode an entry gets: `--chmod` (octal, or symbolic applied to the source's mode), else its own.
    fn mode(&self, meta: &Meta) -> u32 {
        match self.spec.chmod {
            Some(chmod) => chmod.apply(meta.permissions(), meta.is_dir()),
            None => meta.permissions(),
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

    /// The contents of a matched directory (the directory itself too, unless the image has it), walked
    /// through descriptors from the directory the source resolved to.
    fn dir_contents(&mut self, m: Matched, target: &str, exclude: Option<&Ignore>) -> Result<(), CopyError> {
        // A destination the image lacks is created as a parent is, not copied from the source directory
        // (BuildKit's copy makes it before it copies the contents into it).
        self.parents(&format!("{target}/x"));
        let top = target.trim_start_matches('/').to_string();
        let root = self.root;
        let dir = m.handle.into_dir().map_err(|source| CopyError::Read { path: root.display(&m.real), source })?;
        let prefix = if m.real.is_empty() { String::new() } else { format!("{}/", m.real) };
        let found = match root {
            SourceRoot::Context(ctx) => ctx.walk(&dir, &m.real)?,
            SourceRoot::Rootfs(..) => dir.walk(&m.real, &|_, _| Verdict::ALL, &|rel, source| CopyError::Read {
                path: root.display(rel),
                source,
            })?,
        };
        for f in found {
            let inner = f.rel.strip_prefix(&prefix).unwrap_or(&f.rel);
            if exclude.is_some_and(|ex| ex.is_excluded(inner)) {
                continue;
            }
            let dest_of = |inner: &str| if top.is_empty() { inner.to_string() } else { format!("{top}/{inner}") };
            // What a `!` pattern re-includes below an excluded directory brings the directories above it
            // along, with their own metadata, as BuildKit's copy creates a match's parents.
            let mut missing = Vec::new();
            let mut below = inner;
            while let Some((parent, _)) = below.rsplit_once('/') {
                if self.by_path.contains_key(&dest_of(parent)) {
                    break;
                }
                missing.push(parent);
                below = parent;
            }
            for parent in missing.into_iter().rev() {
                let real = format!("{prefix}{parent}");
                let meta =
                    root.root().lstat(&real).map_err(|source| CopyError::Read { path: root.display(&real), source })?;
                self.add(Item { real: &real, meta: &meta, link: None, xattrs: Vec::new() }, &dest_of(parent));
            }
            let item = Item { real: &f.rel, meta: &f.meta, link: f.link, xattrs: f.xattrs };
            self.add(item, &dest_of(inner));
        }
        Ok(())
    }

    fn add(&mut self, item: Item<'_>, dest: &str) {
        let meta = item.meta;
        let (uid, gid) = self.owner(meta);
        let kind = match (meta.kind(), item.link) {
            (Kind::Dir, _) => EntryKind::Dir,
            (Kind::Symlink, Some(target)) => EntryKind::Symlink(target.to_string_lossy().into_owned()),
            (Kind::File, _) => {
                let key = (meta.dev(), meta.ino());
                match self.inodes.get(&key) {
                    Some(first) if meta.nlink() > 1 && first != dest => EntryKind::Hardlink(first.clone()),
                    _ => {
                        if meta.nlink() > 1 {
                            self.inodes.insert(key, dest.to_string());
                        }
                        let file = RootedPath::listed(self.root.root().clone(), item.real.to_string(), *meta);
                        EntryKind::File(FileSource::Rooted(file))
                    }
                }
            }
            // Device nodes and fifos are copied as what they are, as BuildKit's copy does (a layer needs
            // no privilege to describe them).
            (Kind::CharDevice, _) => EntryKind::CharDevice(meta.device().0, meta.device().1),
            (Kind::BlockDevice, _) => EntryKind::BlockDevice(meta.device().0, meta.device().1),
            (Kind::Fifo, _) => EntryKind::Fifo,
            // BuildKit's context transfer sends a socket as an empty regular file (testCopySocket); a layer
            // cannot hold one from a rootfs, and BuildKit's copy skips those.
            (Kind::Socket, _) if !self.root.keeps_owner() => EntryKind::File(FileSource::Bytes(Vec::new())),
            (Kind::Socket, _) | (Kind::Symlink, None) => return,
        };
        let mode = if matches!(kind, EntryKind::Symlink(_)) { 0o777 } else { self.mode(meta) };
        let entry = Entry { path: dest.to_string(), kind, mode, uid, gid, mtime: meta.mtime(), xattrs: item.xattrs };
        self.by_path.insert(dest.to_string(), entry);
    }

    fn finish(self) -> Vec<Entry> {
        self.by_path.into_values().collect()
    }
}

/// Finds what a source word names: one path, or every path a wildcard matches. Everything is resolved
/// inside the source's root: a wildcard lists the directory its prefix resolves to, and a named symlink
/// is followed — inside the root — as BuildKit's copy does (`FollowSymlinks`, `fs.RootPath`); links inside
/// a copied directory are copied as links.
fn match_source(root: &SourceRoot<'_>, source: &str) -> Result<Vec<Matched>, CopyError> {
    let clean = clean_rel(source);
    let tree = root.root();
    let mut candidates = vec![String::new()];
    for component in clean.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for dir in &candidates {
            if glob::has_wildcard(component) {
                let Ok(names) = tree.dir(dir).and_then(|d| d.names()) else { continue };
                next.extend(
                    names
                        .iter()
                        .map(|n| n.to_string_lossy().into_owned())
                        .filter(|n| glob::matches(component, n))
                        .map(|n| join_rel(dir, &n)),
                );
            } else {
                next.push(join_rel(dir, &unescape(component)));
            }
        }
        candidates = next;
    }
    let listed = clean.rsplit('/').next().is_some_and(glob::has_wildcard);
    let mut out = Vec::new();
    for rel in candidates {
        let excluded = |p: &str| matches!(root, SourceRoot::Context(ctx) if !p.is_empty() && ctx.is_excluded(p));
        if excluded(&rel) {
            continue;
        }
        let read = |source| CopyError::Read { path: root.display(&rel), source };
        let handle = match tree.resolve(&rel) {
            Ok(handle) => handle,
            // A name a wildcard listed that leads nowhere inside the root (a link out of it, or dangling)
            // is an error, as BuildKit's copy fails following it; a path that is not there is no match.
            Err(e) if is_missing(&e) && listed => return Err(not_found(root, source)),
            Err(e) if is_missing(&e) => continue,
            Err(e) => return Err(read(e)),
        };
        let meta = handle.meta().map_err(read)?;
        let real = tree.relative(&handle).map_err(read)?;
        // `.dockerignore` speaks of the context's real paths: what a link leads to must be included too.
        if real != rel && excluded(&real) {
            continue;
        }
        out.push(Matched { rel, real, meta, handle });
    }
    Ok(out)
}

/// Not there: missing, or a path through something that is not a directory.
fn is_missing(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// The error for a source that names nothing in `root`.
pub(crate) fn not_found(root: &SourceRoot<'_>, source: &str) -> CopyError {
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

/// Whether the image has `rel` (parents followed inside the image's rootfs, a final symlink not).
fn exists_in_image(spec: &CopySpec<'_>, rel: &str) -> bool {
    spec.image_root.is_some_and(|r| r.lstat(rel).is_ok())
}

/// Whether `dest` is a directory in the image (symlinks followed inside the image's rootfs).
fn exists_as_dir(spec: &CopySpec<'_>, dest: &str) -> bool {
    spec.image_root.is_some_and(|r| r.stat(dest).is_ok_and(|m| m.is_dir()))
}

fn join(dir: &str, rel: &str) -> String {
    if rel.is_empty() { dir.to_string() } else { format!("{}/{}", dir.trim_end_matches('/'), rel) }
}

fn base_name(rel: &str) -> &str {
    rel.rsplit_once('/').map(|(_, b)| b).unwrap_or(rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A context directory, and beside it a host directory holding a file that exists nowhere else.
    struct Fixture {
        _outer: tempfile::TempDir,
        ctx: PathBuf,
        host: PathBuf,
    }

    fn fixture() -> Fixture {
        let outer = tempfile::tempdir().unwrap();
        let (ctx, host) = (outer.path().join("ctx"), outer.path().join("host"));
        std::fs::create_dir_all(ctx.join("sub")).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("shadow"), "host only").unwrap();
        std::fs::write(ctx.join("bar"), "bar-contents").unwrap();
        std::fs::write(ctx.join("sub/baz"), "baz-contents").unwrap();
        Fixture { _outer: outer, ctx, host }
    }

    fn copy(f: &Fixture, sources: &[&str], dest: &str) -> Result<Vec<Entry>, CopyError> {
        let ctx = Context::open(&f.ctx, &f.ctx.join("Dockerfile")).unwrap();
        let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        entries(&CopySpec::plain(&sources, dest), &SourceRoot::Context(&ctx))
    }

    fn content(e: &Entry) -> String {
        let EntryKind::File(source) = &e.kind else { panic!("{} is not a file: {:?}", e.path, e.kind) };
        let mut text = String::new();
        std::io::Read::read_to_string(&mut source.open().unwrap(), &mut text).unwrap();
        text
    }

    fn find<'e>(entries: &'e [Entry], path: &str) -> &'e Entry {
        entries.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("no {path} in {entries:?}"))
    }

    #[test]
    fn a_named_symlink_is_followed_inside_the_context() {
        // BuildKit's testCopySymlinks: `COPY foo /` with foo -> bar gives a file with bar's contents.
        let f = fixture();
        symlink("bar", f.ctx.join("foo")).unwrap();
        symlink("/sub/baz", f.ctx.join("sub/l0")).unwrap();
        let out = copy(&f, &["foo"], "/").unwrap();
        assert_eq!(content(find(&out, "foo")), "bar-contents");
        let out = copy(&f, &["sub/l*"], "/all/").unwrap();
        assert_eq!(content(find(&out, "all/l0")), "baz-contents", "wildcard matches are followed too");
    }

    #[test]
    fn links_to_host_files_and_directories_are_not_found() {
        let f = fixture();
        symlink(f.host.join("shadow"), f.ctx.join("link")).unwrap();
        symlink(&f.host, f.ctx.join("linkdir")).unwrap();
        symlink("../../../../../../..", f.ctx.join("up")).unwrap();
        for source in ["link", "linkdir/shadow", "linkdir", "up/host/shadow", "*/shadow"] {
            match copy(&f, &[source], "/x") {
                Err(CopyError::NotFound { .. }) => {}
                Ok(out) => {
                    assert!(out.iter().all(|e| !matches!(&e.kind, EntryKind::File(_)) || content(e) != "host only"))
                }
                Err(e) => panic!("{source}: {e}"),
            }
        }
        // What the links name inside the context is what is copied.
        let inside = f.ctx.join(f.host.strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::write(inside.join("shadow"), "the context's own").unwrap();
        assert_eq!(content(find(&copy(&f, &["link"], "/x").unwrap(), "x")), "the context's own");
        assert_eq!(content(find(&copy(&f, &["linkdir/shadow"], "/x").unwrap(), "x")), "the context's own");
    }

    #[test]
    fn links_inside_a_copied_directory_stay_links() {
        let f = fixture();
        symlink(&f.host, f.ctx.join("sub/hostdir")).unwrap();
        symlink("/sub", f.ctx.join("via")).unwrap();
        let out = copy(&f, &["via"], "/app/").unwrap();
        assert_eq!(find(&out, "app/hostdir").kind, EntryKind::Symlink(f.host.to_string_lossy().into_owned()));
        assert_eq!(content(find(&out, "app/baz")), "baz-contents", "a linked directory's contents are copied");
        assert!(!out.iter().any(|e| e.path.starts_with("app/hostdir/")));
    }

    #[test]
    fn dockerignore_applies_to_where_a_link_leads() {
        let f = fixture();
        std::fs::write(f.ctx.join(".dockerignore"), "sub\n").unwrap();
        symlink("sub", f.ctx.join("linkdir")).unwrap();
        assert!(matches!(copy(&f, &["linkdir/baz"], "/x"), Err(CopyError::NotFound { .. })));
    }

    #[test]
    fn a_reincluded_path_brings_its_excluded_parents_with_their_modes() {
        use std::os::unix::fs::PermissionsExt;
        let f = fixture();
        std::fs::create_dir_all(f.ctx.join("lib/keep")).unwrap();
        std::fs::write(f.ctx.join("lib/keep/x.txt"), "x").unwrap();
        std::fs::write(f.ctx.join("lib/keep/y.txt"), "y").unwrap();
        std::fs::write(f.ctx.join("lib/drop"), "d").unwrap();
        std::fs::set_permissions(f.ctx.join("lib"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::set_permissions(f.ctx.join("lib/keep"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(f.ctx.join(".dockerignore"), "lib\n!lib/keep/x.txt\n").unwrap();
        let out = copy(&f, &["."], "/ctx/").unwrap();
        assert_eq!(find(&out, "ctx/lib").mode, 0o750);
        assert_eq!(find(&out, "ctx/lib/keep").mode, 0o700);
        assert_eq!(content(find(&out, "ctx/lib/keep/x.txt")), "x");
        assert!(!out.iter().any(|e| e.path == "ctx/lib/keep/y.txt" || e.path == "ctx/lib/drop"));
    }
}
