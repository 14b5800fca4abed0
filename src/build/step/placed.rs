//! The supply's placed files (the merged CA bundles) around a RUN step. A placed file the command left
//! alone never reaches a layer. One it changed does, as the command made it — except that where it only
//! added to the end of kiln's file (`cat my-ca.pem >> /etc/ssl/certs/ca-certificates.crt`), the image's
//! own file takes the place of kiln's beginning, so the company CAs stay out of the image (`--ca-persist`
//! is the way to put them in). A bundle the command made anew (`update-ca-certificates`) is its own.
//!
//! Over an overlay the files sit in the supply's lower dir, and only a change lands in the upper dir. In a
//! private rootfs (chroot mode, or no overlay) they are written into the tree before the step — over the
//! image's file in place, so its inode, mode and owner stay — and put back afterwards.

use std::io::Write as _;
use std::os::unix::fs::MetadataExt;

use filetime::FileTime;

use super::StepError;
use crate::confine::{Leaf, Root};
use crate::layer::TreeStamps;
use crate::supply::{ImageView, Placed};

/// Above this size a changed placed file is left as the command made it (bundles are well under 1 MiB).
const MAX_REWRITE: u64 = 64 << 20;

/// (inode, size, mode, uid, gid, mtime s, mtime ns): what tells kiln's own write from the command's.
type Stamp = (u64, u64, u32, u32, u32, i64, i64);

/// The placed files of one step, and the image (as the step starts) they stand in for.
pub struct Placement {
    view: ImageView,
    items: Vec<Item>,
}

struct Item {
    /// In-root path (no leading `/`).
    rel: String,
    /// The same, `/`-rooted, for the image view.
    target: String,
    /// What kiln puts there (read only when needed: over an overlay, only for a file the command changed).
    source: std::path::PathBuf,
    /// Private rootfs only: the file as kiln left it, to tell whether the command touched it.
    written: Option<Written>,
}

/// What kiln puts at a path, and what the image has there.
struct Contents {
    placed: Vec<u8>,
    original: Option<Vec<u8>>,
}

/// A placed file in a private rootfs, as kiln left it before the step.
struct Written {
    contents: Contents,
    /// Its stamp right after kiln wrote it.
    stamp: Stamp,
    /// The image file's access and modification times, to put back with its content.
    times: Option<(FileTime, FileTime)>,
    /// In-root paths created for it (parents first, then the file), when the image lacked it.
    created: Vec<String>,
}

fn failed(action: &'static str, rel: &str) -> impl FnOnce(std::io::Error) -> StepError {
    let path = format!("/{rel}");
    move |source| StepError::Placed { action, path, source }
}

impl Placement {
    /// The files of `placed` over `view`, the image as the step starts (nothing is read yet).
    pub fn new(view: ImageView, placed: &[Placed]) -> Placement {
        let items = placed
            .iter()
            .map(|p| Item {
                rel: p.target.trim_start_matches('/').to_string(),
                target: p.target.clone(),
                source: p.source.clone(),
                written: None,
            })
            .collect();
        Placement { view, items }
    }

    /// Whether the step has no placed files (no `--ca-cert`): nothing to write or settle.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Writes the files into the private rootfs `tree`, over the image's or new, before the step.
    pub fn write_into(&mut self, tree: &Root) -> Result<(), StepError> {
        for item in &mut self.items {
            let contents = item.contents(&self.view)?;
            let existing = tree.resolve_nofollow(&item.rel).ok().filter(|h| h.meta().is_ok_and(|m| m.is_file()));
            // Parents 0755; the file itself gets 0644 (ensure masks a file's mode with 0666).
            let (handle, created) = match existing {
                // A file kiln could not read as the image's (too large for a bundle) is left as it is.
                Some(_) if contents.original.is_none() => continue,
                Some(handle) => (handle, Vec::new()),
                None => tree.ensure(&item.rel, Leaf::File, 0o755).map_err(failed("create", &item.rel))?,
            };
            let path = handle.proc_path();
            let before = std::fs::metadata(&path).map_err(failed("write", &item.rel))?;
            let times = created
                .is_empty()
                .then(|| (FileTime::from_last_access_time(&before), FileTime::from_last_modification_time(&before)));
            rewrite(&path, &contents.placed, None).map_err(failed("write", &item.rel))?;
            let after = std::fs::metadata(&path).map_err(failed("write", &item.rel))?;
            item.written = Some(Written { contents, stamp: stamp(&after), times, created });
        }
        Ok(())
    }

    /// After the step, over an overlay: a placed file in the upper dir is the command's change.
    pub fn settle_upper(&self, upper: &Root) -> Result<(), StepError> {
        for item in &self.items {
            if let Some(handle) = file_handle(upper, &item.rel) {
                keep_change(&item.contents(&self.view)?, &handle.proc_path(), &item.rel)?;
            }
        }
        Ok(())
    }

    /// After the step, in the private rootfs `tree`: a placed file the command left alone gets the image's
    /// file back (content and times, restamped in `stamps` so the diff sees no change), or goes with the
    /// directories made for it. Returns the paths removed, for the diff's mount-point filter.
    pub fn settle_tree(&self, tree: &Root, mut stamps: Option<&mut TreeStamps>) -> Result<Vec<String>, StepError> {
        // Items share the directories made for them: all are removed together, deepest last made first.
        let mut unused: Vec<&String> = Vec::new();
        for item in &self.items {
            let Some(written) = &item.written else { continue };
            let Some(handle) = file_handle(tree, &item.rel) else {
                // The command removed it: what was made for it may go still.
                unused.extend(&written.created);
                continue;
            };
            let path = handle.proc_path();
            let now = std::fs::metadata(&path).map_err(failed("read", &item.rel))?;
            let placed = &written.contents.placed;
            let same =
                stamp(&now) == written.stamp && std::fs::read(&path).map_err(failed("read", &item.rel))? == *placed;
            if !same {
                keep_change(&written.contents, &path, &item.rel)?;
                continue;
            }
            match (&written.contents.original, written.times) {
                (Some(original), Some(times)) => {
                    rewrite(&path, original, Some(times)).map_err(failed("put back", &item.rel))?;
                    if let Some(stamps) = stamps.as_deref_mut() {
                        let meta = std::fs::metadata(&path).map_err(failed("put back", &item.rel))?;
                        stamps.restamp(&item.rel, &meta);
                    }
                }
                _ => unused.extend(&written.created),
            }
        }
        // A directory the command filled stays (and keeps what it holds).
        Ok(unused.into_iter().rev().filter(|rel| tree.remove(rel).is_ok()).cloned().collect())
    }
}

impl Item {
    /// What kiln puts at the item's path, and what `view` has there.
    fn contents(&self, view: &ImageView) -> Result<Contents, StepError> {
        let placed = std::fs::read(&self.source).map_err(failed("read", &self.rel))?;
        Ok(Contents { placed, original: view.read(&self.target) })
    }
}

/// Keeps the command's change at `path` (`rel` in the image), with the image's file in place of kiln's
/// where the command only added to the end of it.
fn keep_change(contents: &Contents, path: &std::path::Path, rel: &str) -> Result<(), StepError> {
    let meta = std::fs::metadata(path).map_err(failed("read", rel))?;
    // Past a size no bundle has, the file is the command's whatever it begins with (and is not read).
    if meta.len() < contents.placed.len() as u64 || meta.len() > MAX_REWRITE {
        return Ok(());
    }
    let content = std::fs::read(path).map_err(failed("read", rel))?;
    let Some(added) = content.strip_prefix(contents.placed.as_slice()) else { return Ok(()) };
    let times = (FileTime::from_last_access_time(&meta), FileTime::from_last_modification_time(&meta));
    let mut own = contents.original.clone().unwrap_or_default();
    own.extend_from_slice(added);
    rewrite(path, &own, Some(times)).map_err(failed("rewrite", rel))
}

/// A handle to the regular file at `rel` in `root`, if that is what is there.
fn file_handle(root: &Root, rel: &str) -> Option<crate::confine::Handle> {
    root.resolve_nofollow(rel).ok().filter(|h| h.meta().is_ok_and(|m| m.is_file()))
}

/// Replaces the content of the file at `path` (a `/proc/self/fd` path: the same inode), then sets `times`.
fn rewrite(path: &std::path::Path, bytes: &[u8], times: Option<(FileTime, FileTime)>) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).truncate(true).open(path)?;
    file.write_all(bytes)?;
    if let Some((atime, mtime)) = times {
        filetime::set_file_handle_times(&file, Some(atime), Some(mtime))?;
    }
    Ok(())
}

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    (meta.ino(), meta.size(), meta.mode(), meta.uid(), meta.gid(), meta.mtime(), meta.mtime_nsec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree holding `bundle` as the image's file at etc/ssl/certs/ca-certificates.crt, with an old time.
    fn tree_with(bundle: &str) -> (tempfile::TempDir, Root) {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("rootfs/etc/ssl/certs/ca-certificates.crt");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, bundle).unwrap();
        filetime::set_file_mtime(&file, FileTime::from_unix_time(1_000_000, 5)).unwrap();
        let root = Root::open(&t.path().join("rootfs")).unwrap();
        (t, root)
    }

    fn placement(t: &tempfile::TempDir, root: &Root, targets: &[&str]) -> Placement {
        let source = t.path().join("merged.pem");
        std::fs::write(&source, "image\ncompany\n").unwrap();
        let placed: Vec<Placed> =
            targets.iter().map(|p| Placed { source: source.clone(), target: p.to_string() }).collect();
        Placement::new(ImageView::new(vec![root.path().to_path_buf()]), &placed)
    }

    #[test]
    fn an_untouched_file_is_put_back_so_an_in_place_diff_sees_nothing() {
        let (t, root) = tree_with("image\n");
        let mut stamps = crate::layer::stamp_tree(root.path()).unwrap();
        let mut placement = placement(&t, &root, &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/cert.pem"]);
        placement.write_into(&root).unwrap();
        assert_eq!(root.read("etc/ssl/certs/ca-certificates.crt").unwrap(), b"image\ncompany\n");
        assert_eq!(root.read("etc/pki/tls/cert.pem").unwrap(), b"image\ncompany\n");
        let removed = placement.settle_tree(&root, Some(&mut stamps)).unwrap();
        assert_eq!(removed, ["etc/pki/tls/cert.pem", "etc/pki/tls", "etc/pki"], "what was made for it goes");
        assert_eq!(root.read("etc/ssl/certs/ca-certificates.crt").unwrap(), b"image\n");
        let meta = root.lstat("etc/ssl/certs/ca-certificates.crt").unwrap();
        assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_000_000, 5), "its time too");
        let changed: Vec<String> =
            crate::layer::diff_since(&stamps, root.path()).unwrap().into_iter().map(|e| e.path).collect();
        assert!(changed.iter().all(|p| p == "etc"), "only the parent of the removed stub: {changed:?}");
    }

    #[test]
    fn a_change_is_kept_and_an_addition_lands_on_the_images_own_file() {
        let (t, root) = tree_with("image\n");
        let mut placement = placement(&t, &root, &["/etc/ssl/certs/ca-certificates.crt"]);
        placement.write_into(&root).unwrap();
        let host = root.path().join("etc/ssl/certs/ca-certificates.crt");
        std::fs::OpenOptions::new().append(true).open(&host).unwrap().write_all(b"mine\n").unwrap();
        placement.settle_tree(&root, None).unwrap();
        assert_eq!(std::fs::read(&host).unwrap(), b"image\nmine\n");
        // A bundle made anew is the command's own, whatever it holds.
        placement.write_into(&root).unwrap();
        std::fs::write(root.path().join("new"), "regenerated\ncompany\n").unwrap();
        std::fs::rename(root.path().join("new"), &host).unwrap();
        placement.settle_tree(&root, None).unwrap();
        assert_eq!(std::fs::read(&host).unwrap(), b"regenerated\ncompany\n");
    }
}
