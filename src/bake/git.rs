//! A BuildConfig's `source.git.uri` → a local checkout: `--git-source URI=DIR` first, else the repository
//! the BuildConfig file lives in, when its `origin` remote is that URI (the usual layout: BuildConfigs kept
//! beside the Dockerfiles they build). URIs are compared after normalisation, so `https://host/a/b.git`,
//! `git@host:a/b` and `ssh://git@host/a/b` are the same repository.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `host/path` without scheme, user, `.git` suffix or trailing slash; the host in lower case.
pub fn normalize(uri: &str) -> String {
    let mut rest = uri.trim();
    if let Some((_, after)) = rest.split_once("://") {
        rest = after;
    }
    if let Some((_, after)) = rest.split_once('@') {
        rest = after;
    }
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix(".git").unwrap_or(rest);
    // scp-like `host:path` (no scheme): the colon separates host and path unless it precedes a port.
    let (host, path) = match (rest.split_once('/'), rest.split_once(':')) {
        (Some((h, _)), Some((ch, cp))) if ch.len() < h.len() && !cp.starts_with(|c: char| c.is_ascii_digit()) => {
            (ch, cp)
        }
        (Some((h, p)), _) => (h, p),
        (None, Some((h, p))) => (h, p),
        (None, None) => (rest, ""),
    };
    format!("{}/{}", host.to_lowercase(), path.trim_start_matches('/'))
}

/// The local checkout of `uri`: a `--git-source` mapping, else the repository holding `near` if its origin
/// is `uri`.
pub fn checkout(uri: &str, near: &Path, mappings: &[(String, PathBuf)]) -> Option<PathBuf> {
    let wanted = normalize(uri);
    if let Some((_, dir)) = mappings.iter().find(|(u, _)| normalize(u) == wanted) {
        return Some(dir.clone());
    }
    let (root, origin) = repository_of(near)?;
    (normalize(&origin) == wanted).then_some(root)
}

/// The top directory of the git work tree holding `dir`, and its `origin` URL (asks git itself, which
/// knows worktrees, `GIT_DIR` and includes).
fn repository_of(dir: &Path) -> Option<(PathBuf, String)> {
    let git = |args: &[&str]| {
        let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let root = git(&["rev-parse", "--show-toplevel"])?;
    let origin = git(&["config", "--get", "remote.origin.url"])?;
    Some((PathBuf::from(root), origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_of_one_repository_normalise_alike() {
        let n = normalize("https://Git.Example.com/platform/images.git");
        assert_eq!(n, "git.example.com/platform/images");
        assert_eq!(normalize("git@git.example.com:platform/images.git"), n);
        assert_eq!(normalize("ssh://git@git.example.com/platform/images/"), n);
        assert_eq!(normalize("https://git.example.com:8443/platform/images"), "git.example.com:8443/platform/images");
        assert_ne!(normalize("https://git.example.com/platform/other"), n);
    }

    #[test]
    fn explicit_mappings_win() {
        let maps = vec![("git@h:a/b".to_string(), PathBuf::from("/src/b"))];
        assert_eq!(checkout("https://h/a/b.git", Path::new("/nonexistent"), &maps), Some(PathBuf::from("/src/b")));
        assert_eq!(checkout("https://h/a/c.git", Path::new("/nonexistent"), &maps), None);
    }
}
