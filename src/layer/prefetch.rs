//! Read-ahead for the files a layer is written from, when they are not in the page cache. The tar builder
//! reads its sources one after the other; on a cold cache (a context nobody read for a while — these VMs'
//! DAMON reclaim drops file pages idle for 60 s — or a fresh checkout on a busy machine) each small file is
//! one wait for the disk: 1.73 s to read c1's 20,000 files. Asked for ahead (`POSIX_FADV_WILLNEED`) by a
//! thread of its own, the disk serves many at once: 0.35 s (0.22 s from a warm cache).
//!
//! Nothing starts on a warm cache: the builder's first read of each file does not wait
//! (`preadv2(RWF_NOWAIT)`), and only a read that would have is the signal ([`Probe`]). The reader
//! then starts the prefetcher at its own position; it stays at most [`AHEAD`] bytes in front, so a large
//! layer never pushes its own next files out of the cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::entry::{Entry, EntryKind, FileSource};

/// How far in front of the reader the prefetcher may be, in bytes.
const AHEAD: u64 = 64 << 20;

/// What the reader and the prefetcher share.
#[derive(Default)]
pub struct Progress {
    /// Bytes of file data the reader has taken.
    read: AtomicU64,
    /// Set when the reader is done (or gave up): the prefetcher stops.
    done: AtomicBool,
}

impl Progress {
    /// The reader took `bytes` more.
    pub fn read(&self, bytes: u64) {
        self.read.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The reader needs nothing more.
    pub fn finish(&self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// Ends the prefetcher when dropped, however the reader's loop ends (an error returns early, and the
/// scope joining the prefetcher must not wait for it to reach the end).
pub struct StopOnDrop(pub Arc<Progress>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Asks the kernel to read the files of `entries` into the cache, in order, never more than [`AHEAD`]
/// bytes beyond what `progress` says the reader took. Failures are ignored: the reader reports its own.
pub fn run(entries: &[Entry], progress: &Progress) {
    let mut asked: u64 = 0;
    for entry in entries {
        let EntryKind::File(source @ (FileSource::Path(_) | FileSource::Rooted(_))) = &entry.kind else { continue };
        while asked.saturating_sub(progress.read.load(Ordering::Relaxed)) > AHEAD {
            if progress.done.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if progress.done.load(Ordering::Relaxed) {
            return;
        }
        let Ok(file) = source.open() else { continue };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::WillNeed);
        asked += len;
    }
}

/// Whether the reader's files come from the cache, told by its first read of each.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// So far every first read found its data cached.
    #[default]
    Warm,
    /// A read had to wait for the disk: time for the prefetcher.
    Cold,
    /// Not checked any more (the prefetcher runs, or the kernel cannot tell).
    Off,
}

impl Probe {
    /// Reads into `buf` from `offset` of `file`; a file's first read (at 0) first tries without waiting for
    /// the disk, and turns the probe cold when it would have had to.
    pub fn read_at(&mut self, file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        if offset == 0 && *self == Probe::Warm {
            let mut slices = [std::io::IoSliceMut::new(&mut *buf)];
            match rustix::io::preadv2(file, &mut slices, 0, rustix::io::ReadWriteFlags::NOWAIT) {
                Ok(n) => return Ok(n),
                Err(rustix::io::Errno::AGAIN) => *self = Probe::Cold,
                Err(rustix::io::Errno::INTR) => {}
                // RWF_NOWAIT unsupported here (EOPNOTSUPP, EINVAL): read as before.
                Err(_) => *self = Probe::Off,
            }
        }
        std::os::unix::fs::FileExt::read_at(file, buf, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{WriteOptions, write_layer};

    /// Files under /var/tmp (a disk here, where the page cache can be emptied), and whether that is so.
    fn files(n: usize) -> (tempfile::TempDir, Vec<Entry>, bool) {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let entries = (0..n)
            .map(|i| {
                let path = dir.path().join(format!("f{i}"));
                std::fs::write(&path, format!("file {i} ").repeat(500)).unwrap();
                Entry {
                    path: format!("f{i:04}"),
                    kind: EntryKind::File(FileSource::Path(path)),
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    mtime: 0,
                    xattrs: Vec::new(),
                }
            })
            .collect();
        let on_disk = rustix::fs::statfs(dir.path()).is_ok_and(|s| s.f_type != libc::TMPFS_MAGIC);
        (dir, entries, on_disk)
    }

    /// Drops the files' pages from the cache (written back first: only clean pages can go).
    fn evict(entries: &[Entry]) {
        for e in entries {
            let EntryKind::File(source) = &e.kind else { continue };
            let file = source.open().unwrap();
            file.sync_all().unwrap();
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        }
    }

    #[test]
    fn a_read_that_would_wait_for_the_disk_turns_the_probe_cold() {
        let (_dir, entries, on_disk) = files(1);
        evict(&entries);
        let EntryKind::File(source) = &entries[0].kind else { unreachable!() };
        let file = source.open().unwrap();
        let mut probe = Probe::Warm;
        let mut buf = vec![0; 10];
        let n = probe.read_at(&file, &mut buf, 0).unwrap();
        assert_eq!(&buf[..n], &b"file 0 file 0 "[..n], "the data, whatever the cache held");
        if on_disk {
            assert_ne!(probe, Probe::Warm, "an evicted file cannot be read without the disk");
        }
        let mut warm = Probe::Warm;
        assert_eq!(warm.read_at(&file, &mut buf, 0).unwrap(), 10);
        assert_eq!(warm, Probe::Warm, "now it is cached");
    }

    #[test]
    fn a_layer_from_a_cold_cache_is_the_layer_from_a_warm_one() {
        let (_dir, entries, _) = files(300);
        let warm = write_layer(entries.clone(), Vec::new(), &WriteOptions::default()).unwrap();
        evict(&entries);
        let cold = write_layer(entries.clone(), Vec::new(), &WriteOptions::default()).unwrap();
        assert_eq!(cold, warm);
    }
}
