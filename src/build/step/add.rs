//! Gathering the entries of a COPY or ADD: where the sources live (`--from` stage or image, else the
//! context), heredoc sources, and ADD's extras — URLs are downloaded, local tar archives are unpacked.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::attest::fetched::FetchRecord;
use crate::build::stage::StageEnv;
use crate::build::state::ImageState;
use crate::build::step::copy::{self, CopySpec, SourceRoot};
use crate::build::step::through_links::{self, Node};
use crate::build::step::{StepError, fetch};
use crate::build::users::Accounts;
use crate::build::{base, rootfs};
use crate::layer::{self, Entry, EntryKind, FileSource};
use crate::plan::{CopyFrom, ResolvedCopy};

/// All layer entries of one COPY/ADD, sorted by path.
pub async fn entries(
    env: &StageEnv<'_>,
    state: &ImageState,
    c: &ResolvedCopy,
    is_add: bool,
) -> Result<Vec<Entry>, StepError> {
    let store = env.ctx.store;
    let image_root = rootfs::materialize(store, &state.layers)?;
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
    let mut merged: BTreeMap<String, Entry> = BTreeMap::new();
    let scratch = tempfile::Builder::new().prefix("kiln-add-").tempdir().map_err(StepError::Temp)?;

    // Heredoc sources are files whose content is the heredoc body.
    for (i, name) in heredoc_sources.iter().enumerate() {
        let Some(doc) = c.heredocs.iter().find(|h| &h.name == name) else { continue };
        let dir = scratch.path().join(format!("heredoc{i}"));
        write_file(&dir.join(name), doc.content.as_bytes())?;
        let found =
            copy::entries(&common.spec(std::slice::from_ref(name), &dest), &SourceRoot::Rootfs(&dir, "heredoc"))?;
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
            let got = fetch::download(&env.ctx.http, source, c.checksum.as_deref(), &tmp).await?;
            let record = FetchRecord::from_add(source, &env.ctx.file_label, got.status, got.bytes, &got.sha256);
            env.ctx.evidence.fetched(record);
            let named = dir.join(&got.file_name);
            fs_err::rename(&tmp, &named).map_err(StepError::Temp)?;
            // A download is unpacked only when asked (`--unpack=true`), as BuildKit does.
            if c.unpack == Some(true) && is_tar_archive(&named) {
                let found = unpack(&common, &named, &scratch.path().join(format!("url{i}-unpacked")), &dest, source)?;
                merge(&mut merged, found, |_| {});
                continue;
            }
            let found = copy::entries(
                &common.spec(std::slice::from_ref(&got.file_name), &dest),
                &SourceRoot::Rootfs(&dir, source),
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
            // directory; other files it matches are copied there.
            let rels = copy::context_matches(env.context, source)?;
            let is_archive = |rel: &str| {
                let path = env.context.root().join(rel);
                path.is_file() && is_tar_archive(&path)
            };
            if rels.iter().any(|r| is_archive(r)) {
                let into = format!("{}/", dest.trim_end_matches('/'));
                let plain_dest = if rels.len() > 1 { &into } else { &dest };
                for (j, rel) in rels.iter().enumerate() {
                    let found = if is_archive(rel) {
                        let dir = scratch.path().join(format!("archive{i}-{j}"));
                        unpack(&common, &env.context.root().join(rel), &dir, &dest, source)?
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
    let mut out: Vec<Entry> = merged.into_values().collect();
    if let Some(root) = image_root.as_deref() {
        out = through_links::resolve(out, &|rel: &str| image_node(root, rel));
    }
    // Heredoc and download files live in the scratch dir, which goes away with this function: read them now.
    for entry in &mut out {
        if let EntryKind::File(FileSource::Path(p)) = &entry.kind
            && p.starts_with(scratch.path())
        {
            let bytes = fs_err::read(p).map_err(StepError::Temp)?;
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
    image_root: Option<&'a Path>,
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
) -> Result<Option<(PathBuf, String)>, StepError> {
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
    match rootfs::materialize(store, &layers)? {
        Some(path) => Ok(Some((path, label))),
        None => Ok(Some((rootfs::empty(store)?, label))),
    }
}

/// The entries of the archive at `archive`, unpacked in `dir` (a scratch directory), into `dest` as a
/// directory.
fn unpack(common: &Common<'_>, archive: &Path, dir: &Path, dest: &str, label: &str) -> Result<Vec<Entry>, StepError> {
    fs_err::create_dir_all(dir).map_err(StepError::Temp)?;
    layer::extract_archive(open(archive)?, dir)?;
    let into = format!("{}/", dest.trim_end_matches('/'));
    Ok(copy::entries(&common.spec(&[".".to_string()], &into), &SourceRoot::Rootfs(dir, label))?)
}

/// What the image's rootfs has at `rel`, whose parents [`through_links`] found to be real directories.
pub(crate) fn image_node(root: &Path, rel: &str) -> Node {
    let path = root.join(rel);
    match std::fs::symlink_metadata(&path) {
        Err(_) => Node::Missing,
        Ok(m) if m.is_dir() => Node::Dir,
        Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(&path) {
            Ok(target) => Node::Link(target.to_string_lossy().into_owned()),
            Err(_) => Node::Other,
        },
        Ok(_) => Node::Other,
    }
}

fn merge(into: &mut BTreeMap<String, Entry>, found: Vec<Entry>, mut adjust: impl FnMut(&mut Entry)) {
    for mut e in found {
        adjust(&mut e);
        into.insert(e.path.clone(), e);
    }
}

fn open(path: &Path) -> Result<std::io::BufReader<std::fs::File>, StepError> {
    Ok(std::io::BufReader::new(fs_err::File::open(path).map_err(StepError::Temp)?.into_parts().0))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), StepError> {
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent).map_err(StepError::Temp)?;
    }
    fs_err::write(path, bytes).map_err(StepError::Temp)
}

/// Whether a local file is a tar archive, possibly compressed (gzip, bzip2, xz, zstd): ADD unpacks those.
fn is_tar_archive(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else { return false };
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
