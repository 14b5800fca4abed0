//! `COPY --parents` as BuildKit builds it (dockerfile2llb convert_copy.go, fsutil's include patterns): a
//! source `PIVOT/./PATTERN` (or just `PATTERN`, pivot `/`) copies what PATTERN matches below PIVOT, keeping
//! its path from PIVOT down — `/test/a/./b/c` gives `DEST/b/c/...`, `/test/a/b` gives `DEST/test/a/b/...`.
//! PATTERN may hold wildcards and `**`; PIVOT wildcards (`/a/b*/./c`) match several pivots. The
//! directories above a match are copied with their own metadata; a pattern with a wildcard may match
//! nothing (the destination is still created), a plain path must exist.
//!
//! Input: a COPY's spec and source root; output: its entries. The walking and the entries themselves come
//! from [`copy::entries`]; this module only picks pivots and filters by the pattern.

use std::collections::BTreeSet;

use crate::build::step::copy::{self, CopyError, CopySpec, SourceRoot};
use crate::build::step::glob;
use crate::dockerfile::ignore::Ignore;
use crate::layer::{Entry, EntryKind};

/// The entries of a `COPY --parents`.
pub fn entries(spec: &CopySpec<'_>, root: &SourceRoot<'_>) -> Result<Vec<Entry>, CopyError> {
    let dest = copy::absolute_dest(spec.dest, spec.workdir);
    let under = dest.trim_start_matches('/').to_string();
    let into = format!("{}/", dest.trim_end_matches('/'));
    let mut out: Vec<Entry> = Vec::new();
    for source in spec.sources {
        let (pivot, pattern) = split(source);
        let wildcard = glob::has_wildcard(pivot) || glob::has_wildcard(&pattern);
        let pivots =
            if glob::has_wildcard(pivot) { copy::source_matches(root, pivot)? } else { vec![pivot.to_string()] };
        let matcher = Ignore::parse(&pattern).map_err(|e| CopyError::Exclude(e.to_string()))?;
        let mut matched_any = false;
        for pivot in pivots {
            let sources = [if copy::clean_rel(&pivot).is_empty() { ".".to_string() } else { pivot }];
            let whole = CopySpec { sources: &sources, dest: &into, parents: false, ..*spec };
            let walked = match copy::entries(&whole, root) {
                Err(CopyError::NotFound { .. }) if wildcard => continue,
                Err(CopyError::NotFound { .. }) => return Err(copy::not_found(root, source)),
                other => other?,
            };
            let (kept, any) = filter(walked, &under, &matcher);
            matched_any |= any;
            out.extend(kept);
        }
        if !matched_any && !wildcard {
            return Err(copy::not_found(root, source));
        }
    }
    // A later source wins, as a later copy would overwrite.
    let mut by_path = std::collections::BTreeMap::new();
    for e in out {
        by_path.insert(e.path.clone(), e);
    }
    Ok(by_path.into_values().collect())
}

/// `PIVOT/./PATTERN` at the first `/./`, else pivot `/`; the pattern cleaned (relative, no `.`).
fn split(source: &str) -> (&str, String) {
    match source.split_once("/./") {
        Some((pivot, pattern)) => (if pivot.is_empty() { "/" } else { pivot }, copy::clean_rel(pattern)),
        None => ("/", copy::clean_rel(source)),
    }
}

/// Keeps, of the pivot's whole tree copied under `under`, what the pattern matches (a matched directory
/// with everything in it), the directories above a match, and what lies outside `under` (the destination
/// and the parents COPY creates for it). Also says whether anything matched.
fn filter(walked: Vec<Entry>, under: &str, matcher: &Ignore) -> (Vec<Entry>, bool) {
    let rel_of = |path: &str| -> Option<String> {
        if under.is_empty() {
            return Some(path.to_string());
        }
        path.strip_prefix(under).and_then(|r| r.strip_prefix('/')).map(String::from)
    };
    let mut ancestors = BTreeSet::new();
    let mut any = false;
    for e in &walked {
        if let Some(rel) = rel_of(&e.path)
            && matcher.is_excluded(&rel)
        {
            any = true;
            let mut dir = rel.as_str();
            while let Some((parent, _)) = dir.rsplit_once('/') {
                ancestors.insert(parent.to_string());
                dir = parent;
            }
        }
    }
    let kept = walked
        .into_iter()
        .filter(|e| match rel_of(&e.path) {
            None => true,
            Some(rel) => matcher.is_excluded(&rel) || (e.kind == EntryKind::Dir && ancestors.contains(&rel)),
        })
        .collect();
    (kept, any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pivot_is_the_first_dot_component() {
        assert_eq!(split("/test/a/./b/./c"), ("/test/a", "b/c".to_string()));
        assert_eq!(split("/test/a/b/c/d/."), ("/", "test/a/b/c/d".to_string()));
        assert_eq!(split("./test/a"), ("/", "test/a".to_string()));
        assert_eq!(split("/a/b*/./c/**/e"), ("/a/b*", "c/**/e".to_string()));
    }

    fn dir(path: &str) -> Entry {
        Entry { path: path.into(), kind: EntryKind::Dir, mode: 0o750, uid: 0, gid: 0, mtime: 0, xattrs: Vec::new() }
    }

    #[test]
    fn matches_keep_their_parents_and_nothing_beside_them() {
        let walked = ["out", "out/a", "out/a/b", "out/a/b/c", "out/a/b/c/d", "out/a/b2", "out/a/b2/c", "out/z"]
            .map(dir)
            .to_vec();
        let (kept, any) = filter(walked, "out", &Ignore::parse("a/*/c").unwrap());
        let paths: Vec<&str> = kept.iter().map(|e| e.path.as_str()).collect();
        assert!(any);
        assert_eq!(paths, ["out", "out/a", "out/a/b", "out/a/b/c", "out/a/b/c/d", "out/a/b2", "out/a/b2/c"]);
        let (kept, any) = filter(["out", "out/a"].map(dir).to_vec(), "out", &Ignore::parse("a/x*/c").unwrap());
        assert!(!any);
        assert_eq!(kept.len(), 1, "only the destination");
    }
}
