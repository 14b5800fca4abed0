//! Mount points the image lacks, served from a cached directory that the step's overlay stacks as its
//! topmost lower dir, instead of being created in the step's upper dir and removed afterwards: a RUN step
//! then pays no directory or file creations for them (on a busy disk, ~1 ms each), and nothing of them can
//! reach a layer — a lower dir is never part of the diff.
//!
//! The placed files (the merged CA bundles) live in the same directory, with the mode, owner and time of
//! the image's file they stand in for: the command sees an ordinary file it may rewrite, append to or
//! replace, and only what it did to one lands in the upper dir.
//!
//! Directories the image has are repeated in the stub tree with the image's mode, owner and time, so the
//! merged view (and a copy-up, should the step write there) looks exactly as without the stubs. Paths are
//! resolved through the image's symlinks first, so a stub never shadows a link.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::ImageView;

/// One entry of the lower dir: its real path inside the image and what it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Stub {
    path: String,
    kind: StubKind,
}

/// What a [`Stub`] is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum StubKind {
    /// A directory mount point.
    Dir,
    /// An empty file, a file mount point.
    File,
    /// A placed file: a copy of `source`, with the metadata of the image's file where it has one.
    Placed { source: PathBuf, meta: Option<FileMeta> },
}

/// (mode, uid, gid, mtime seconds, mtime nanoseconds) of a file.
type FileMeta = (u32, u32, u32, i64, i64);

/// `placed` with each target made a real path in the image, those the image has as something other than
/// a regular file (a directory, a device) left out: the image's own thing stays.
pub fn resolve_placed(view: &ImageView, placed: Vec<super::Placed>) -> Vec<super::Placed> {
    let mut out: Vec<super::Placed> = Vec::new();
    for p in placed {
        let target = match view.real_path(&p.target) {
            Some(real) if view.metadata(&real).is_some_and(|m| m.is_file()) => real,
            Some(_) => continue,
            None => match real_missing(view, &p.target) {
                Some(real) => real,
                None => continue,
            },
        };
        if !out.iter().any(|o| o.target == target) {
            out.push(super::Placed { source: p.source, target });
        }
    }
    out
}

/// The stub tree for `targets` (`path`, is a file) and the `placed` files (resolved) in `cache`, made once
/// per set of entries and the image directories above them; `None` when it would be empty.
pub fn lower_dir(
    view: &ImageView,
    targets: &[(String, bool)],
    placed: &[super::Placed],
    cache: &Path,
) -> std::io::Result<Option<PathBuf>> {
    let kind = |file: bool| if file { StubKind::File } else { StubKind::Dir };
    let mut stubs: Vec<Stub> = targets
        .iter()
        .filter(|(path, _)| !view.exists(path))
        .filter_map(|(path, file)| real_missing(view, path).map(|p| Stub { path: p, kind: kind(*file) }))
        .collect();
    for p in placed {
        let meta = view.metadata(&p.target).map(|m| (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime(), m.mtime_nsec()));
        stubs.push(Stub { path: p.target.clone(), kind: StubKind::Placed { source: p.source.clone(), meta } });
    }
    stubs.sort();
    stubs.dedup_by(|a, b| a.path == b.path);
    if stubs.is_empty() {
        return Ok(None);
    }
    let dirs = ancestors(view, &stubs);
    let mut hasher = Sha256::new();
    for s in &stubs {
        // Placed sources are named by their content, so the name stands for it.
        hasher.update(format!("{}:{:?}\n", s.path, s.kind).as_bytes());
    }
    for (dir, meta) in &dirs {
        hasher.update(format!("{dir}:{meta:?}\n").as_bytes());
    }
    let dir = cache.join(hex::encode(hasher.finalize()));
    if dir.is_dir() {
        return Ok(Some(dir));
    }
    std::fs::create_dir_all(cache)?;
    let tmp = tempfile::Builder::new().prefix(".stubs-").tempdir_in(cache)?;
    for (rel, _) in &dirs {
        std::fs::create_dir_all(tmp.path().join(rel.trim_start_matches('/')))?;
    }
    for s in &stubs {
        let p = tmp.path().join(s.path.trim_start_matches('/'));
        match &s.kind {
            StubKind::Dir => std::fs::create_dir_all(&p)?,
            StubKind::File => drop(std::fs::File::create(&p)?),
            StubKind::Placed { source, meta } => place_copy(source, &p, *meta)?,
        }
    }
    // Deepest first: creating a child changes its parent's time.
    for (rel, meta) in dirs.iter().rev() {
        let p = tmp.path().join(rel.trim_start_matches('/'));
        if let Some((mode, uid, gid, mtime)) = meta {
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(*mode))?;
            let _ = std::os::unix::fs::lchown(&p, Some(*uid), Some(*gid));
            filetime::set_file_mtime(&p, filetime::FileTime::from_unix_time(*mtime, 0))?;
        }
    }
    let staged = tmp.keep();
    if std::fs::rename(&staged, &dir).is_err() {
        // Another build made it first.
        let _ = std::fs::remove_dir_all(&staged);
    }
    Ok(Some(dir))
}

/// Copies a placed file's `source` to `dest`, as the image's file (`meta`) is, else root's 0644.
fn place_copy(source: &Path, dest: &Path, meta: Option<FileMeta>) -> std::io::Result<()> {
    std::fs::copy(source, dest)?;
    let (mode, uid, gid, secs, nanos) = meta.unwrap_or((0o644, 0, 0, 0, 0));
    std::fs::set_permissions(dest, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    // Rootless, the owner cannot be set: the builder's own uid is root inside the step.
    let _ = std::os::unix::fs::lchown(dest, Some(uid), Some(gid));
    if meta.is_some() {
        filetime::set_file_mtime(dest, filetime::FileTime::from_unix_time(secs, nanos as u32))?;
    }
    Ok(())
}

/// The path with its existing part resolved through the image's symlinks; `None` when an existing part is
/// not a directory.
fn real_missing(view: &ImageView, path: &str) -> Option<String> {
    let parts: Vec<String> = crate::confine::components(path);
    for keep in (0..parts.len()).rev() {
        let prefix = format!("/{}", parts[..keep].join("/"));
        if keep == 0 || view.exists(&prefix) {
            if keep > 0 && !view.is_dir(&prefix) {
                return None;
            }
            let base =
                if keep == 0 { String::new() } else { view.real_path(&prefix)?.trim_end_matches('/').to_string() };
            return Some(format!("{base}/{}", parts[keep..].join("/")));
        }
    }
    None
}

type DirMeta = Option<(u32, u32, u32, i64)>;

/// Every directory above the stubs, shallowest first, with the image's (mode, uid, gid, mtime) where it has it.
fn ancestors(view: &ImageView, stubs: &[Stub]) -> Vec<(String, DirMeta)> {
    let mut out: Vec<(String, DirMeta)> = Vec::new();
    for s in stubs {
        let parts = crate::confine::components(&s.path);
        for depth in 1..parts.len() {
            let dir = format!("/{}", parts[..depth].join("/"));
            if out.iter().any(|(d, _)| *d == dir) {
                continue;
            }
            let meta =
                view.metadata(&dir).filter(|m| m.is_dir()).map(|m| (m.mode() & 0o7777, m.uid(), m.gid(), m.mtime()));
            out.push((dir, meta));
        }
    }
    out.sort_by_key(|(d, _)| d.matches('/').count());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_follow_the_images_links_and_keep_its_directories_as_they_are() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc/pki/tls/certs")).unwrap();
        std::fs::create_dir_all(root.join("etc/ssl")).unwrap();
        std::os::unix::fs::symlink("/etc/pki/tls/certs", root.join("etc/ssl/certs")).unwrap();
        std::fs::set_permissions(root.join("etc"), std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
        filetime::set_file_mtime(root.join("etc"), filetime::FileTime::from_unix_time(1_000_000, 0)).unwrap();
        let view = ImageView::new(vec![root]);
        let targets = [
            ("/etc/ssl/certs/ca-certificates.crt".to_string(), true),
            ("/run/kiln".to_string(), false),
            ("/etc/pki/tls/certs".to_string(), false),
        ];
        let dir = lower_dir(&view, &targets, &[], &t.path().join("cache")).unwrap().unwrap();
        assert!(dir.join("etc/pki/tls/certs/ca-certificates.crt").is_file(), "created under the link's target");
        assert!(std::fs::symlink_metadata(dir.join("etc/ssl")).is_err(), "a link is never shadowed");
        assert!(dir.join("run/kiln").is_dir());
        let etc = std::fs::metadata(dir.join("etc")).unwrap();
        assert_eq!((etc.mode() & 0o7777, etc.mtime()), (0o750, 1_000_000), "the image's directory as it is");
        assert_eq!(lower_dir(&view, &targets, &[], &t.path().join("cache")).unwrap().unwrap(), dir, "made once");
        let all_there = [("/etc/pki".to_string(), false)];
        assert_eq!(lower_dir(&view, &all_there, &[], &t.path().join("cache")).unwrap(), None);
    }

    #[test]
    fn placed_files_stand_in_for_the_images_own_with_its_metadata() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc/pki/tls/certs")).unwrap();
        std::fs::write(root.join("etc/pki/tls/certs/ca-bundle.crt"), "image").unwrap();
        std::os::unix::fs::symlink("certs/ca-bundle.crt", root.join("etc/pki/tls/cert.pem")).unwrap();
        std::fs::create_dir_all(root.join("etc/ssl/ca-bundle.pem")).unwrap();
        let bundle = root.join("etc/pki/tls/certs/ca-bundle.crt");
        std::fs::set_permissions(&bundle, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
        filetime::set_file_mtime(&bundle, filetime::FileTime::from_unix_time(1_000_000, 7)).unwrap();
        let view = ImageView::new(vec![root]);
        let source = t.path().join("merged.pem");
        std::fs::write(&source, "merged").unwrap();
        let placed = |target: &str| super::super::Placed { source: source.clone(), target: target.to_string() };
        let asked =
            ["/etc/pki/tls/cert.pem", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/ca-bundle.pem", "/etc/x.pem"];
        let resolved = resolve_placed(&view, asked.iter().map(|p| placed(p)).collect());
        let targets: Vec<&str> = resolved.iter().map(|p| p.target.as_str()).collect();
        assert_eq!(targets, ["/etc/pki/tls/certs/ca-bundle.crt", "/etc/x.pem"], "links resolved, a directory left");
        let dir = lower_dir(&view, &[], &resolved, &t.path().join("cache")).unwrap().unwrap();
        let copy = std::fs::metadata(dir.join("etc/pki/tls/certs/ca-bundle.crt")).unwrap();
        assert_eq!((copy.mode() & 0o7777, copy.mtime(), copy.mtime_nsec()), (0o444, 1_000_000, 7));
        assert_eq!(std::fs::read_to_string(dir.join("etc/x.pem")).unwrap(), "merged");
        let new = std::fs::metadata(dir.join("etc/x.pem")).unwrap();
        assert_eq!(new.mode() & 0o7777, 0o644, "a file the image lacks is root's 0644");
    }
}
