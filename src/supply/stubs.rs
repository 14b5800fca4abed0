//! Mount points the image lacks, served from a cached directory that the step's overlay stacks as its
//! topmost lower dir, instead of being created in the step's upper dir and removed afterwards: a RUN step
//! then pays no directory or file creations for them (on a busy disk, ~1 ms each), and nothing of them can
//! reach a layer — a lower dir is never part of the diff.
//!
//! Directories the image has are repeated in the stub tree with the image's mode, owner and time, so the
//! merged view (and a copy-up, should the step write there) looks exactly as without the stubs. Paths are
//! resolved through the image's symlinks first, so a stub never shadows a link.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::ImageView;

/// One missing mount point: its real path inside the image and whether it is a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Stub {
    path: String,
    file: bool,
}

/// The stub tree for `targets` (`path`, is a file) in `cache`, made once per set of missing paths and the
/// image directories above them; `None` when the image has every target already.
pub fn lower_dir(view: &ImageView, targets: &[(String, bool)], cache: &Path) -> std::io::Result<Option<PathBuf>> {
    let mut stubs: Vec<Stub> = targets
        .iter()
        .filter(|(path, _)| !view.exists(path))
        .filter_map(|(path, file)| real_missing(view, path).map(|p| Stub { path: p, file: *file }))
        .collect();
    stubs.sort();
    stubs.dedup();
    if stubs.is_empty() {
        return Ok(None);
    }
    let dirs = ancestors(view, &stubs);
    let mut hasher = Sha256::new();
    for s in &stubs {
        hasher.update(format!("{}:{}\n", s.path, s.file).as_bytes());
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
        if s.file {
            std::fs::File::create(&p)?;
        } else {
            std::fs::create_dir_all(&p)?;
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
        let dir = lower_dir(&view, &targets, &t.path().join("cache")).unwrap().unwrap();
        assert!(dir.join("etc/pki/tls/certs/ca-certificates.crt").is_file(), "created under the link's target");
        assert!(std::fs::symlink_metadata(dir.join("etc/ssl")).is_err(), "a link is never shadowed");
        assert!(dir.join("run/kiln").is_dir());
        let etc = std::fs::metadata(dir.join("etc")).unwrap();
        assert_eq!((etc.mode() & 0o7777, etc.mtime()), (0o750, 1_000_000), "the image's directory as it is");
        assert_eq!(lower_dir(&view, &targets, &t.path().join("cache")).unwrap().unwrap(), dir, "made once");
        let all_there = [("/etc/pki".to_string(), false)];
        assert_eq!(lower_dir(&view, &all_there, &t.path().join("cache")).unwrap(), None);
    }
}
