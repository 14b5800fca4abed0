//! Disk space of snapshots, which share inodes (a snapshot hard-links the unchanged files of an older one):
//! each inode is counted once, and removing snapshots frees only the inodes whose every link is in them.
//! Space is what `du` counts: allocated blocks, directories included.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Running total of the space of several trees, each inode counted once however many trees link it.
#[derive(Debug, Default)]
pub struct InodeTally {
    seen: HashSet<(u64, u64)>,
}

impl InodeTally {
    /// An empty tally.
    pub fn new() -> InodeTally {
        InodeTally::default()
    }

    /// Adds the tree at `path` (not following symlinks); returns the bytes it added to the total, i.e.
    /// those of inodes no tree added before links.
    pub fn add(&mut self, path: &Path) -> u64 {
        let (bytes, inodes) = self.cost(path);
        self.seen.extend(inodes);
        bytes
    }

    /// What adding the trees at `paths` would add, without adding them: the bytes, and the inodes to pass
    /// to [`InodeTally::take`] when they are added after all.
    pub fn cost(&self, path: &Path) -> (u64, HashSet<(u64, u64)>) {
        let mut new = HashSet::new();
        let mut bytes = 0;
        for meta in metadata_under(path) {
            let id = (meta.dev(), meta.ino());
            if !self.seen.contains(&id) && new.insert(id) {
                bytes += meta.blocks() * 512;
            }
        }
        (bytes, new)
    }

    /// Counts `inodes` (from [`InodeTally::cost`]) as added.
    pub fn take(&mut self, inodes: HashSet<(u64, u64)>) {
        self.seen.extend(inodes);
    }
}

/// The bytes removing `trees` frees: the inodes all of whose links lie inside them.
pub fn freed_by(trees: &[&Path]) -> u64 {
    let mut links: HashMap<(u64, u64), (u64, u64, u64)> = HashMap::new();
    for tree in trees {
        for meta in metadata_under(tree) {
            // A directory's link count counts its subdirectories' `..`: it is never shared, so count it once.
            let nlink = if meta.is_dir() { 1 } else { meta.nlink() };
            let entry = links.entry((meta.dev(), meta.ino())).or_insert((0, nlink, meta.blocks() * 512));
            entry.0 += 1;
        }
    }
    links.values().filter(|(inside, nlink, _)| inside >= nlink).map(|(_, _, bytes)| bytes).sum()
}

fn metadata_under(path: &Path) -> impl Iterator<Item = std::fs::Metadata> {
    walkdir::WalkDir::new(path)
        .same_file_system(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_inodes_count_once_and_free_only_with_their_last_link() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("shared"), vec![1u8; 64 << 10]).unwrap();
        std::fs::hard_link(a.join("shared"), b.join("shared")).unwrap();
        std::fs::write(b.join("own"), vec![2u8; 32 << 10]).unwrap();
        let block = |p: &Path| std::fs::symlink_metadata(p).unwrap().blocks() * 512;
        let (shared, own, dirs) = (block(&a.join("shared")), block(&b.join("own")), block(&a) + block(&b));

        let mut tally = InodeTally::new();
        let first = tally.add(&a);
        let second = tally.add(&b);
        assert_eq!(first, shared + block(&a));
        assert_eq!(second, own + block(&b), "b's link to the shared file is not counted again");
        assert_eq!(first + second, shared + own + dirs);

        assert_eq!(freed_by(&[&b]), own + block(&b), "the shared file lives on in a");
        assert_eq!(freed_by(&[&a, &b]), shared + own + dirs);
    }
}
