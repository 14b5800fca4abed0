//! Resolving a path inside a root the way a chroot would: component by component, symlinks followed
//! relative to the root, `..` clamped at the root. Nothing a layer holds can make a path leave the root.

use std::path::{Component, Path, PathBuf};

use super::error::LayerError;

/// How many symlinks one resolution may follow (Linux's own limit).
const MAX_LINKS: usize = 40;

/// Splits an entry name into clean components: leading `/` and `./` dropped, `.` skipped, `..` clamped.
pub fn clean_components(name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p.to_string()),
        }
    }
    out
}

/// Resolves the directory `components` inside `root`, following symlinks within the root; creates missing
/// directories when `create` is set. Returns the real path on disk.
pub fn resolve_dir(root: &Path, components: &[String], create: bool, entry: &str) -> Result<PathBuf, LayerError> {
    let mut stack: Vec<String> = components.iter().rev().cloned().collect();
    let mut current: Vec<String> = Vec::new();
    let mut followed = 0;
    while let Some(part) = stack.pop() {
        if part == ".." {
            current.pop();
            continue;
        }
        if part == "." || part.is_empty() {
            continue;
        }
        let candidate = join(root, &current).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                followed += 1;
                if followed > MAX_LINKS {
                    return Err(LayerError::Escape {
                        path: entry.to_string(),
                        reason: "too many levels of symlinks".into(),
                    });
                }
                let target = std::fs::read_link(&candidate).map_err(|e| LayerError::Io {
                    op: "read link",
                    path: candidate.clone(),
                    source: e,
                })?;
                if target.is_absolute() {
                    current.clear();
                }
                let parts: Vec<String> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                        Component::ParentDir => Some("..".to_string()),
                        _ => None,
                    })
                    .collect();
                stack.extend(parts.into_iter().rev());
            }
            Ok(meta) if meta.is_dir() => current.push(part),
            Ok(_) => {
                return Err(LayerError::Escape {
                    path: entry.to_string(),
                    reason: format!("{} is not a directory", candidate.display()),
                });
            }
            Err(_) if create => {
                std::fs::create_dir(&candidate).map_err(|e| LayerError::Io {
                    op: "create",
                    path: candidate.clone(),
                    source: e,
                })?;
                current.push(part);
            }
            Err(e) => return Err(LayerError::Io { op: "stat", path: candidate, source: e }),
        }
    }
    Ok(join(root, &current))
}

fn join(root: &Path, parts: &[String]) -> PathBuf {
    let mut p = root.to_path_buf();
    for part in parts {
        p.push(part);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_and_clamped() {
        assert_eq!(clean_components("/a/./b/../c/"), ["a", "c"]);
        assert_eq!(clean_components("../../etc/passwd"), ["etc", "passwd"]);
        assert!(clean_components("/").is_empty());
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("real/etc")).unwrap();
        std::os::unix::fs::symlink("/", root.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../real", root.path().join("up")).unwrap();
        let comps = |s: &str| clean_components(s);
        assert_eq!(resolve_dir(root.path(), &comps("abs/real/etc"), false, "x").unwrap(), root.path().join("real/etc"));
        assert_eq!(resolve_dir(root.path(), &comps("up/etc"), false, "x").unwrap(), root.path().join("real/etc"));
        std::os::unix::fs::symlink("loop", root.path().join("loop")).unwrap();
        assert!(resolve_dir(root.path(), &comps("loop/x"), true, "x").is_err());
    }
}
