//! Gathering the entries of a COPY or ADD: where the sources live (`--from` stage or image, else the
//! context), heredoc sources, and ADD's extras — URLs are downloaded, local tar archives are unpacked.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use crate::attest::fetched::FetchRecord;
use crate::build::stage::StageEnv;
use crate::build::state::ImageState;
use crate::build::step::copy::{self, CopySpec, SourceRoot};
use crate::build::step::through_links::{self, Node};
use crate::build::step::{StepError, fetch, open_leased, open_root};
use crate::build::users::Accounts;
use crate::build::{base, rootfs};
use crate::confine::{self, Root};
use crate::layer::{self, Entry, EntryKind, FileSource};
use crate::plan::{CopyFrom, ResolvedCopy};

/// All layer entries of one COPY/ADD, sorted by path.
pub async fn entries(
    env: &StageEnv<'_>,
    state: &ImageState,
    c: &ResolvedCopy,
    is_add: bool,
    label: &str,
) -> Result<Vec<Entry>, StepError> {
    let store = env.ctx.store;
    let image_root = match rootfs::lease(store, &state.layers, env.ctx.reporter)? {
        Some(lease) => Some(open_leased(lease)?),
        None => None,
    };
    let accounts = Accounts::read(image_root.as_deref());
    let owner = match &c.chown {
        Some(spec) => {
            let ids = accounts.resolve(spec, None)?;
            Some((ids.uid, ids.gid))
        }
        None => None,
    };
    let workdir = state.config.config.working_dir.clone().unwrap_or_else(|| "/".to_string());
    let common = Common { workdir, owner, c, image_root: image_root.as_deref(), created_at: env.ctx.created_at };
    let heredoc_names: Vec<&str> = c.heredocs.iter().map(|h| h.name.as_str()).collect();
    let (heredoc_sources, sources): (Vec<String>, Vec<String>) =
        c.sources.iter().cloned().partition(|s| heredoc_names.contains(&s.as_str()));
    // Sources are gathered one at a time below, so the several-sources rule is checked here, once.
    if c.sources.len() > 1 && !copy::ends_as_dir(&c.dest) {
        return Err(copy::CopyError::DestNotDir.into());
    }
    let dest = c.dest.clone();
    let mut merged: Vec<Entry> = Vec::new();
    // In the store's session dir, not /tmp: a killed build's partial downloads are cleaned with its session.
    let scratch = env.ctx.store.temp_dir()?;

    // Heredoc sources are files whose content is the heredoc body.
    for (i, name) in heredoc_sources.iter().enumerate() {
        let Some(doc) = c.heredocs.iter().find(|h| &h.name == name) else { continue };
        let root = write_heredoc(&scratch.path().join(format!("heredoc{i}")), name, doc.content.as_bytes())?;
        let found =
            copy::entries(&common.spec(std::slice::from_ref(name), &dest), &SourceRoot::Rootfs(&root, "heredoc"))?;
        merge(&mut merged, found, |e| {
            if c.chmod.is_none() && matches!(e.kind, EntryKind::File(_)) {
                e.mode = 0o644;
            }
            e.mtime = env.ctx.created_at;
        });
    }

    let from_root = from_root(env, c.from.as_ref()).await?;
    for (i, source) in sources.iter().enumerate() {
        if is_add && fetch::is_git(source) {
            return Err(StepError::Unsupported(format!("ADD of a git repository ({source}) is not supported yet")));
        }
        if is_add && fetch::is_url(source) {
            let dir = scratch.path().join(format!("url{i}"));
            fs_err::create_dir_all(&dir).map_err(StepError::Temp)?;
            let tmp = dir.join(".download");
            let got = download(env, label, source, c.checksum.as_deref(), &tmp).await?;
            let record = FetchRecord::from_add(source, &env.ctx.file_label, got.status, got.bytes, &got.sha256);
            env.ctx.evidence.fetched(record);
            let named = dir.join(&got.file_name);
            fs_err::rename(&tmp, &named).map_err(StepError::Temp)?;
            let root = open_root(&dir)?;
            // A download is unpacked only when asked (`--unpack=true`), as BuildKit does.
            if c.unpack == Some(true) && is_tar_archive(&root, &got.file_name) {
                let into = scratch.path().join(format!("url{i}-unpacked"));
                let found = unpack(&common, &root, &got.file_name, &into, &dest, source)?;
                merge(&mut merged, found, |_| {});
                continue;
            }
            let found = copy::entries(
                &common.spec(std::slice::from_ref(&got.file_name), &dest),
                &SourceRoot::Rootfs(&root, source),
            )?;
            merge(&mut merged, found, |e| {
                if c.chmod.is_none() && matches!(e.kind, EntryKind::File(_)) {
                    e.mode = 0o600;
                }
                if matches!(e.kind, EntryKind::File(_)) {
                    e.mtime = got.mtime.unwrap_or(0);
                }
                if owner.is_none() {
                    (e.uid, e.gid) = (0, 0);
                }
            });
            continue;
        }
        let root = match &from_root {
            Some((path, label)) => SourceRoot::Rootfs(path, label),
            None => SourceRoot::Context(env.context),
        };
        if is_add && c.unpack != Some(false) && from_root.is_none() {
            // Every archive a source names (a wildcard may match several) is unpacked into the destination
            // directory; other files it matches are copied there. Archives are context sources like any
            // other: found inside the context, links followed there.
            let rels = copy::context_matches(env.context, source)?;
            let context = env.context.root();
            let is_archive = |rel: &str| context.stat(rel).is_ok_and(|m| m.is_file()) && is_tar_archive(context, rel);
            if rels.iter().any(|r| is_archive(r)) {
                let into = format!("{}/", dest.trim_end_matches('/'));
                let plain_dest = if rels.len() > 1 { &into } else { &dest };
                for (j, rel) in rels.iter().enumerate() {
                    let found = if is_archive(rel) {
                        let dir = scratch.path().join(format!("archive{i}-{j}"));
                        unpack(&common, context, rel, &dir, &dest, source)?
                    } else {
                        copy::entries(&common.spec(std::slice::from_ref(rel), plain_dest), &root)?
                    };
                    merge(&mut merged, found, |_| {});
                }
                continue;
            }
        }
        let found = copy::entries(&common.spec(std::slice::from_ref(source), &dest), &root)?;
        merge(&mut merged, found, |_| {});
    }
    let mut out = last_per_path(merged);
    if let Some(root) = image_root.as_deref() {
        out = through_links::resolve(out, &|rel: &str| image_node(root, rel));
    }
    // Heredoc and download files live in the scratch dir, which goes away with this function: read them now.
    for entry in &mut out {
        if let EntryKind::File(FileSource::Rooted(file)) = &entry.kind
            && file.root().path().starts_with(scratch.path())
        {
            let mut bytes = Vec::new();
            file.open().and_then(|mut f| f.read_to_end(&mut bytes)).map_err(StepError::Temp)?;
            entry.kind = EntryKind::File(FileSource::Bytes(bytes));
        }
    }
    Ok(out)
}

/// What every source of one COPY/ADD shares.
struct Common<'a> {
    workdir: String,
    owner: Option<(u32, u32)>,
    c: &'a ResolvedCopy,
    image_root: Option<&'a Root>,
    created_at: i64,
}

impl Common<'_> {
    fn spec<'s>(&'s self, sources: &'s [String], dest: &'s str) -> CopySpec<'s> {
        CopySpec {
            sources,
            dest,
            workdir: &self.workdir,
            owner: self.owner,
            chmod: self.c.chmod.as_ref(),
            exclude: &self.c.exclude,
            parents: self.c.parents,
            image_root: self.image_root,
            created_at: self.created_at,
        }
    }
}

/// The rootfs `--from` names: an earlier stage's, or an image's (pulled if needed).
pub(crate) async fn from_root(
    env: &StageEnv<'_>,
    from: Option<&CopyFrom>,
) -> Result<Option<(Arc<Root>, String)>, StepError> {
    let store = env.ctx.store;
    let (layers, label) = match from {
        None => return Ok(None),
        Some(CopyFrom::Stage(index)) => {
            let Some(done) = env.done.get(index) else {
                return Err(StepError::Unsupported(format!("stage {index} has not been built")));
            };
            super::ensure_local(env.ctx, &done.layers).await?;
            (done.layers.clone(), format!("stage {}", env.stage_label(*index)))
        }
        Some(CopyFrom::Image(name)) => {
            let (state, reference) = base::image(env.ctx, name).await.map_err(|e| StepError::Image(Box::new(e)))?;
            (state.layers, format!("image {reference}"))
        }
    };
    let root = match rootfs::lease(store, &layers, env.ctx.reporter)? {
        Some(lease) => open_leased(lease)?,
        None => open_root(&rootfs::empty(store)?)?,
    };
    Ok(Some((root, label)))
}

/// The entries of the archive `rel` in `tree` (the context, or a download's directory), unpacked in `dir`
/// (a scratch directory), into `dest` as a directory.
fn unpack(
    common: &Common<'_>,
    tree: &Root,
    rel: &str,
    dir: &Path,
    dest: &str,
    label: &str,
) -> Result<Vec<Entry>, StepError> {
    fs_err::create_dir_all(dir).map_err(StepError::Temp)?;
    let archive = tree
        .open_file(rel)
        .map_err(|e| copy::CopyError::Read { path: tree.path().join(confine::clean(rel)), source: e })?;
    layer::extract_archive(std::io::BufReader::new(archive), dir)?;
    let into = format!("{}/", dest.trim_end_matches('/'));
    let root = open_root(dir)?;
    Ok(copy::entries(&common.spec(&[".".to_string()], &into), &SourceRoot::Rootfs(&root, label))?)
}

/// What the image's rootfs has at `rel` (parents followed inside it; [`through_links`] asks for real
/// directories' children).
pub(crate) fn image_node(root: &Root, rel: &str) -> Node {
    match root.lstat(rel) {
        Err(_) => Node::Missing,
        Ok(m) if m.is_dir() => Node::Dir,
        Ok(m) if m.is_symlink() => match root.read_link(rel) {
            Ok(target) => Node::Link(target.to_string_lossy().into_owned()),
            Err(_) => Node::Other,
        },
        Ok(_) => Node::Other,
    }
}

fn merge(into: &mut Vec<Entry>, found: Vec<Entry>, mut adjust: impl FnMut(&mut Entry)) {
    into.extend(found.into_iter().map(|mut e| {
        adjust(&mut e);
        e
    }));
}

/// The merged entries sorted by path, one per path: a later source's replaces an earlier one's. One sort
/// at the end, not a map insert (and a copy of the path) per entry.
fn last_per_path(mut merged: Vec<Entry>) -> Vec<Entry> {
    // Stable: entries with one path stay in source order, the last one wins.
    merged.sort_by(|a, b| a.path.cmp(&b.path));
    let mut out: Vec<Entry> = Vec::with_capacity(merged.len());
    for e in merged {
        if out.last().is_some_and(|last| last.path == e.path) {
            out.pop();
        }
        out.push(e);
    }
    out
}

/// Writes a heredoc's body as `name` inside `dir` and opens `dir` as the root to copy it from. The name
/// comes from the Dockerfile (`COPY <<../../x /dst`), so it is placed inside `dir` like any path in a tree,
/// as BuildKit writes it into a scratch filesystem.
fn write_heredoc(dir: &Path, name: &str, bytes: &[u8]) -> Result<Arc<Root>, StepError> {
    fs_err::create_dir_all(dir).map_err(StepError::Temp)?;
    let root = open_root(dir)?;
    let mut parts = confine::components(name);
    let last = parts.pop().ok_or_else(|| StepError::Unsupported(format!("heredoc name {name:?} names no file")))?;
    let parent = root.mkdir_all(&parts.join("/"), 0o755).map_err(StepError::Temp)?;
    let mut file = parent.create_file(last.as_ref(), 0o644).map_err(StepError::Temp)?;
    std::io::Write::write_all(&mut file, bytes).map_err(StepError::Temp)?;
    Ok(root)
}

/// Whether the context file `rel` is a tar archive, possibly compressed (gzip, bzip2, xz, zstd): ADD
/// unpacks those.
fn is_tar_archive(context: &Root, rel: &str) -> bool {
    let Ok(file) = context.open_file(rel) else { return false };
    let Ok(mut reader) = layer::decompress(std::io::BufReader::new(file)) else { return false };
    let mut header = [0u8; 512];
    let mut filled = 0;
    while filled < header.len() {
        match reader.read(&mut header[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled == 512 && (&header[257..262] == b"ustar")
}

/// Downloads an ADD URL; on the proxy-only network the URL, and the one a redirect ended at, must be in the
/// allow-list, and the download goes into the fetch log as the step's own requests do.
async fn download(
    env: &StageEnv<'_>,
    label: &str,
    source: &str,
    checksum: Option<&str>,
    into: &std::path::Path,
) -> Result<fetch::Downloaded, StepError> {
    let supply = &env.ctx.supply;
    let url = url::Url::parse(source).ok();
    if let Some(url) = &url {
        supply.admit_download(label, url).map_err(StepError::Refused)?;
    }
    let started = std::time::Instant::now();
    let got = fetch::download(&env.ctx.http, source, checksum, into).await?;
    if let Some(last) = url::Url::parse(&got.final_url).ok().filter(|last| Some(last) != url.as_ref()) {
        supply.admit_download(label, &last).map_err(StepError::Refused)?;
    }
    if let Some(url) = &url {
        supply.record_download(label, url, got.status, got.bytes, started.elapsed().as_millis() as u64);
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, body: &str) -> Entry {
        let kind = EntryKind::File(FileSource::Bytes(body.as_bytes().to_vec()));
        Entry { path: path.into(), kind, mode: 0o644, uid: 0, gid: 0, mtime: 0, xattrs: Vec::new() }
    }

    #[test]
    fn a_later_source_replaces_an_earlier_ones_entry_and_the_result_is_sorted() {
        let mut merged = Vec::new();
        merge(&mut merged, vec![file("b", "1"), file("a", "1"), file("c", "1")], |_| {});
        merge(&mut merged, vec![file("c", "2"), file("a", "2")], |_| {});
        merge(&mut merged, vec![file("a", "3")], |e| e.mode = 0o600);
        let out = last_per_path(merged);
        let seen: Vec<_> = out
            .iter()
            .map(|e| match &e.kind {
                EntryKind::File(FileSource::Bytes(b)) => {
                    (e.path.as_str(), String::from_utf8_lossy(b).into_owned(), e.mode)
                }
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(seen, [("a", "3".to_string(), 0o600), ("b", "1".to_string(), 0o644), ("c", "2".to_string(), 0o644)]);
    }
}
