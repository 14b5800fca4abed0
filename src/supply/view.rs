//! A read-only look at an image's files as a RUN step will see them: a stack of directories (overlay
//! lower dirs, topmost first, or one full rootfs), merged the way overlayfs merges them — whiteouts hide,
//! opaque directories stop the layers below, symlinks are followed *inside* the root.
//!
//! Input: the directories of a snapshot chain. Output: file contents and directory listings. Every
//! lookup is done component by component with `lstat`, so a symlink anywhere in an image (absolute or
//! full of `..`) never makes a read leave the root, and nothing here ever writes.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Symlinks one lookup may follow (Linux's own limit).
const MAX_LINKS: usize = 40;

/// Files above this size are not read (CA bundles and repository files are small).
const MAX_READ: u64 = 16 << 20;

/// The merged view of a stack of layer directories.
#[derive(Debug, Clone)]
pub struct ImageView {
    layers: Vec<PathBuf>,
}

/// Where a path ends in the view.
enum Found {
    /// A file (or anything not a directory): the host path in the topmost layer holding it.
    File(PathBuf),
    /// A directory: the host paths of each layer contributing to it, topmost first.
    Dir(Vec<PathBuf>),
}

impl ImageView {
    /// A view of `layers`, topmost first.
    pub fn new(layers: Vec<PathBuf>) -> ImageView {
        ImageView { layers }
    }

    /// The contents of the regular file at `path` (symlinks followed inside the root), if there is one.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        match self.find(path)? {
            Found::File(host) => {
                let meta = std::fs::symlink_metadata(&host).ok()?;
                (meta.is_file() && meta.len() <= MAX_READ).then(|| std::fs::read(&host).ok()).flatten()
            }
            Found::Dir(_) => None,
        }
    }

    /// Whether `path` names a directory.
    pub fn is_dir(&self, path: &str) -> bool {
        matches!(self.find(path), Some(Found::Dir(_)))
    }

    /// Whether anything is at `path`.
    pub fn exists(&self, path: &str) -> bool {
        self.find(path).is_some()
    }

    /// The real path of `path` inside the root (symlinks resolved), `/`-rooted, if it exists.
    pub fn real_path(&self, path: &str) -> Option<String> {
        self.resolve(path).map(|(parts, _)| format!("/{}", parts.join("/")))
    }

    /// The metadata (lstat) of what is at `path` after resolving it, in the topmost layer holding it.
    pub fn metadata(&self, path: &str) -> Option<std::fs::Metadata> {
        match self.find(path)? {
            Found::File(host) => std::fs::symlink_metadata(host).ok(),
            Found::Dir(dirs) => std::fs::symlink_metadata(dirs.first()?).ok(),
        }
    }

    /// The names in the directory at `path`, sorted, whiteouts and overlay markers left out.
    pub fn list(&self, path: &str) -> Vec<String> {
        let Some(Found::Dir(dirs)) = self.find(path) else { return Vec::new() };
        let mut seen = std::collections::BTreeMap::<String, bool>::new();
        for dir in &dirs {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(".wh.") || seen.contains_key(&name) {
                    continue;
                }
                let hidden = entry.metadata().is_ok_and(|m| is_whiteout(&m));
                seen.insert(name, !hidden);
            }
        }
        seen.into_iter().filter(|(_, visible)| *visible).map(|(name, _)| name).collect()
    }

    fn find(&self, path: &str) -> Option<Found> {
        self.resolve(path).map(|(_, found)| found)
    }

    /// Resolves `path` to its real components and what is there.
    fn resolve(&self, path: &str) -> Option<(Vec<String>, Found)> {
        let mut pending: Vec<String> = crate::confine::components(path).into_iter().rev().collect();
        let mut current: Vec<String> = Vec::new();
        let mut dirs: Vec<PathBuf> = self.layers.clone();
        let mut links = 0;
        while let Some(part) = pending.pop() {
            let (found, meta) = lookup(&dirs, &part)?;
            match found {
                Found::File(host) if meta.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return None;
                    }
                    let target = std::fs::read_link(&host).ok()?;
                    let target = target.to_string_lossy();
                    if target.starts_with('/') {
                        current.clear();
                    }
                    pending.extend(target.split('/').rev().filter(|s| !s.is_empty()).map(str::to_string));
                    // Re-walk the directory the link sits in: `..` and the link's own components resolve from there.
                    let prefix = std::mem::take(&mut current);
                    pending.extend(prefix.into_iter().rev());
                    current.clear();
                    dirs = self.layers.clone();
                    normalise(&mut pending);
                }
                Found::File(host) => {
                    current.push(part);
                    if !pending.is_empty() {
                        return None;
                    }
                    return Some((current, Found::File(host)));
                }
                Found::Dir(next) => {
                    current.push(part);
                    dirs = next;
                }
            }
        }
        Some((current, Found::Dir(dirs)))
    }
}

/// Drops `.` and applies `..` in a reversed pending stack (the next component is last).
fn normalise(pending: &mut Vec<String>) {
    let mut forward: Vec<String> = Vec::new();
    for part in pending.drain(..).rev() {
        match part.as_str() {
            "" | "." => {}
            ".." => {
                forward.pop();
            }
            _ => forward.push(part),
        }
    }
    pending.extend(forward.into_iter().rev());
}

/// `name` in the merged directory made of `dirs` (topmost first): what the topmost layer has there, and
/// for a directory the layers below that still show through.
fn lookup(dirs: &[PathBuf], name: &str) -> Option<(Found, std::fs::Metadata)> {
    let mut iter = dirs.iter();
    for dir in iter.by_ref() {
        let path = dir.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            if is_opaque(dir) {
                return None;
            }
            continue;
        };
        if is_whiteout(&meta) {
            return None;
        }
        if !meta.is_dir() {
            return Some((Found::File(path), meta));
        }
        let mut merged = vec![path.clone()];
        if !is_opaque(&path) {
            for lower in iter {
                let lower_path = lower.join(name);
                match std::fs::symlink_metadata(&lower_path) {
                    Ok(m) if m.is_dir() => {
                        let opaque = is_opaque(&lower_path);
                        merged.push(lower_path);
                        if opaque {
                            break;
                        }
                    }
                    Ok(_) => break,
                    Err(_) if is_opaque(lower) => break,
                    Err(_) => {}
                }
            }
        }
        return Some((Found::Dir(merged), meta));
    }
    None
}

/// An overlay whiteout: a character device 0/0.
fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether a layer directory hides the layers below it (overlay's opaque xattrs, or an OCI `.wh..wh..opq`).
fn is_opaque(dir: &Path) -> bool {
    const NAMES: [&str; 3] = ["trusted.overlay.opaque", "user.overlay.opaque", "user.fuseoverlayfs.opaque"];
    NAMES.iter().any(|n| xattr::get(dir, n).ok().flatten().is_some_and(|v| v == b"y"))
        || std::fs::symlink_metadata(dir.join(".wh..wh..opq")).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn layer(root: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = root.join(name);
        for (path, content) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_topmost_layer_wins_and_directories_merge() {
        let t = tempfile::tempdir().unwrap();
        let low = layer(t.path(), "low", &[("etc/a", "low"), ("etc/b", "low")]);
        let top = layer(t.path(), "top", &[("etc/a", "top")]);
        let view = ImageView::new(vec![top, low]);
        assert_eq!(view.read("/etc/a").unwrap(), b"top");
        assert_eq!(view.read("etc/b").unwrap(), b"low");
        assert_eq!(view.list("/etc"), ["a", "b"]);
        assert!(view.read("/etc/c").is_none());
    }

    #[test]
    fn opaque_markers_hide_lower_layers() {
        let t = tempfile::tempdir().unwrap();
        let low = layer(t.path(), "low", &[("etc/a", "low")]);
        let top = layer(t.path(), "top", &[("etc/b", "top"), ("etc/.wh..wh..opq", "")]);
        let view = ImageView::new(vec![top, low]);
        assert!(view.read("/etc/a").is_none(), "an opaque directory hides the layers below");
        assert_eq!(view.list("/etc"), ["b"]);
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = layer(t.path(), "root", &[("etc/pki/tls/certs/real.pem", "bundle"), ("etc/secret", "in-root")]);
        symlink("real.pem", root.join("etc/pki/tls/certs/ca-bundle.crt")).unwrap();
        std::fs::create_dir_all(root.join("etc/ssl")).unwrap();
        symlink("../pki/tls/certs/ca-bundle.crt", root.join("etc/ssl/cert.pem")).unwrap();
        // An absolute link and a `..` walk must stay in the root, never reach the host's /etc.
        symlink("/etc/secret", root.join("abs")).unwrap();
        symlink("../../../../../../etc/secret", root.join("etc/dotdot")).unwrap();
        let view = ImageView::new(vec![root]);
        assert_eq!(view.read("/etc/pki/tls/certs/ca-bundle.crt").unwrap(), b"bundle");
        assert_eq!(view.read("/etc/ssl/cert.pem").unwrap(), b"bundle");
        assert_eq!(view.real_path("/etc/ssl/cert.pem").unwrap(), "/etc/pki/tls/certs/real.pem");
        assert_eq!(view.read("/abs").unwrap(), b"in-root");
        assert_eq!(view.read("/etc/dotdot").unwrap(), b"in-root");
    }

    #[test]
    fn a_symlinked_directory_in_a_lower_layer_is_not_followed_to_the_host() {
        let t = tempfile::tempdir().unwrap();
        let host = layer(t.path(), "host", &[("apt/sources.list", "host file")]);
        let low = layer(t.path(), "low", &[]);
        symlink(&host, low.join("etc")).unwrap();
        let top = layer(t.path(), "top", &[]);
        let view = ImageView::new(vec![top, low]);
        assert!(view.read("/etc/apt/sources.list").is_none(), "the link points outside the root");
    }
}
