//! The two digests of a layer, computed on threads of their own: the layer writer's thread only reads
//! sources and cuts chunks, while one thread hashes the uncompressed tar (the diff id) and another hashes
//! and writes the compressed blob. On a large COPY each of the three is a pass over hundreds of megabytes;
//! in one thread they add up, on their own they overlap.
//!
//! The diff id thread takes owned blocks over a bounded channel from whoever holds its sender: gzip's writer
//! hands over its chunks once compressed (they are the tar, cut up: no copy), other compressions go through
//! [`HashBeside`], which copies the tar into 1 MiB blocks. The blob side is a plain `Write` handing blocks to
//! its thread the same way. Memory stays at a few blocks and a slow consumer holds the writer back.
//! Input: bytes. Output: digest and size (and the inner writer). Must not know: tar, gzip, the store.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

use oci_spec::image::Digest;

use super::compress::Hashing;
use super::write::LayerSink;

/// Bytes handed over at a time.
const BLOCK: usize = 1 << 20;

/// Blocks that may wait in a channel.
const DEPTH: usize = 8;

/// What a hashing thread gives back: the digest and byte count, and its writer.
type Hashed<W> = io::Result<(Digest, u64, W)>;

/// The thread hashing the uncompressed tar: whoever holds a [`DiffId::sender`] hands it the tar's bytes, in
/// order, as owned blocks (no copy when the sender owned them already, as the gzip writer's chunks).
pub struct DiffId<'scope> {
    blocks: Option<SyncSender<Vec<u8>>>,
    thread: ScopedJoinHandle<'scope, Hashed<io::Sink>>,
}

impl<'scope> DiffId<'scope> {
    /// Starts the hashing thread in `scope`.
    pub fn start<'env>(scope: &'scope Scope<'scope, 'env>) -> io::Result<Self> {
        let (blocks, received) = sync_channel(DEPTH);
        let thread = std::thread::Builder::new()
            .name("kiln-diff-id".into())
            .spawn_scoped(scope, move || drain(&received, io::sink()))?;
        Ok(DiffId { blocks: Some(blocks), thread })
    }

    /// Where the tar's bytes go.
    pub fn sender(&self) -> SyncSender<Vec<u8>> {
        self.blocks.clone().unwrap_or_else(|| unreachable!("the sender is only taken by finish"))
    }

    /// The digest and size of everything sent, once every sender is gone.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        drop(self.blocks.take());
        let (digest, size, _) = join(self.thread)?;
        Ok((digest, size))
    }
}

/// A writer that passes everything on to `inner` and a copy, in 1 MiB blocks, to the [`DiffId`] thread.
pub struct HashBeside<W> {
    inner: W,
    block: Vec<u8>,
    blocks: SyncSender<Vec<u8>>,
}

impl<W: Write> HashBeside<W> {
    /// Passes on into `inner` and into `blocks`.
    pub fn new(inner: W, blocks: SyncSender<Vec<u8>>) -> Self {
        HashBeside { inner, block: Vec::with_capacity(BLOCK), blocks }
    }

    /// Hands the gathered bytes to `inner`, then to the hashing thread.
    fn pass_on(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.inner.write_all(&self.block)?;
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        hand_over(&self.blocks, block)
    }

    /// Hands over what is left; `inner`.
    pub fn finish(mut self) -> io::Result<W> {
        self.pass_on()?;
        Ok(self.inner)
    }
}

/// Sends `block` to the diff id thread.
pub fn hand_over(blocks: &SyncSender<Vec<u8>>, block: Vec<u8>) -> io::Result<()> {
    blocks.send(block).map_err(|_| io::Error::other("the diff id thread stopped"))
}

impl<W: Write> Write for HashBeside<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (took, full) = gather(&mut self.block, buf);
        if full {
            self.pass_on()?;
        }
        Ok(took)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that can take a block it may keep: a writer handing blocks to another thread takes them as they
/// are instead of copying them (gzip members, read from an earlier blob or just compressed, are owned).
pub trait TakeBlock: Write {
    /// Writes all of `block`.
    fn take_block(&mut self, block: Vec<u8>) -> io::Result<()> {
        self.write_all(&block)
    }
}

impl TakeBlock for Vec<u8> {}

/// How a writing thread failed: kind, OS error code, message.
type Failure = Arc<Mutex<Option<(io::ErrorKind, Option<i32>, String)>>>;

/// A writer whose bytes another thread hashes and writes into `out`. Each write is handed over as it comes
/// (its writers — gzip members, 1 MiB tar blocks, zstd's buffers — write large pieces).
pub struct WriteBeside<'scope, W> {
    blocks: Option<SyncSender<Vec<u8>>>,
    thread: ScopedJoinHandle<'scope, Hashed<W>>,
    /// How the thread's writing failed (a full disk), for the writes that come after.
    failure: Failure,
}

impl<'scope, W: LayerSink + 'scope> WriteBeside<'scope, W> {
    /// Starts the writing thread in `scope`.
    pub fn new<'env>(scope: &'scope Scope<'scope, 'env>, out: W) -> io::Result<Self> {
        let (blocks, received) = sync_channel(DEPTH);
        let failure: Failure = Arc::new(Mutex::new(None));
        let noted = failure.clone();
        let thread = std::thread::Builder::new().name("kiln-blob".into()).spawn_scoped(scope, move || {
            // The failure is noted while the channel is still open: a writer whose send fails (the receiver
            // gone) always finds it there.
            let written = write_out(&received, out).inspect_err(|e| {
                *noted.lock().unwrap_or_else(|p| p.into_inner()) = Some((e.kind(), e.raw_os_error(), e.to_string()));
            });
            drop(received);
            written
        })?;
        Ok(WriteBeside { blocks: Some(blocks), thread, failure })
    }

    fn pass_on(&mut self, block: Vec<u8>) -> io::Result<()> {
        if self.blocks.as_ref().is_some_and(|b| b.send(block).is_ok()) {
            return Ok(());
        }
        // The thread stopped on an error: the writer's caller gets that one.
        Err(match self.failure.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some((_, Some(code), _)) => io::Error::from_raw_os_error(*code),
            Some((kind, None, text)) => io::Error::new(*kind, text.clone()),
            None => io::Error::other("the blob writer thread stopped"),
        })
    }

    /// Waits until everything is written; the digest and size of it, and `out`.
    pub fn finish(mut self) -> io::Result<(Digest, u64, W)> {
        drop(self.blocks.take());
        join(self.thread)
    }
}

impl<'scope, W: LayerSink + 'scope> TakeBlock for WriteBeside<'scope, W> {
    fn take_block(&mut self, block: Vec<u8>) -> io::Result<()> {
        if block.is_empty() { Ok(()) } else { self.pass_on(block) }
    }
}

impl<'scope, W: LayerSink + 'scope> Write for WriteBeside<'scope, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !buf.is_empty() {
            self.pass_on(buf.to_vec())?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes every block received into `out` until the sender is gone, then flushes it; hashes them unless
/// `out` keeps its own digest.
fn write_out<W: LayerSink>(blocks: &Receiver<Vec<u8>>, mut out: W) -> Hashed<W> {
    if out.own_digest().is_none() {
        return drain(blocks, out);
    }
    for block in blocks {
        out.write_all(&block)?;
    }
    out.flush()?;
    let (digest, size) = out.own_digest().ok_or_else(|| io::Error::other("the output stopped keeping its digest"))?;
    Ok((digest, size, out))
}

/// Adds what fits of `buf` to `block`: how much it took, and whether the block is full now.
fn gather(block: &mut Vec<u8>, buf: &[u8]) -> (usize, bool) {
    let take = buf.len().min(BLOCK - block.len());
    block.extend_from_slice(&buf[..take]);
    (take, block.len() == BLOCK)
}

/// Hashes and writes every block received into `out` until the sender is gone, then flushes it.
fn drain<W: Write>(blocks: &Receiver<Vec<u8>>, out: W) -> Hashed<W> {
    let mut out = Hashing::new(out);
    for block in blocks {
        out.write_all(&block)?;
    }
    out.flush()?;
    Ok(out.finish())
}

fn join<T>(thread: ScopedJoinHandle<'_, io::Result<T>>) -> io::Result<T> {
    thread.join().map_err(|_| io::Error::other("a layer hashing thread panicked"))?
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};

    use super::*;

    fn sha(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    #[test]
    fn both_ends_give_the_digest_and_the_bytes() {
        let data: Vec<u8> = (0..3 * BLOCK + 17).map(|i| (i * 7 % 251) as u8).collect();
        std::thread::scope(|s| {
            let out = WriteBeside::new(s, Vec::new()).unwrap();
            let diff_id = DiffId::start(s).unwrap();
            let mut front = HashBeside::new(out, diff_id.sender());
            for piece in data.chunks(100_000) {
                front.write_all(piece).unwrap();
            }
            let out = front.finish().unwrap();
            let (diff, n) = diff_id.finish().unwrap();
            let (digest, m, written) = out.finish().unwrap();
            assert_eq!((diff.to_string(), n), (sha(&data), data.len() as u64));
            assert_eq!((digest.to_string(), m), (sha(&data), data.len() as u64));
            assert_eq!(written, data);
        });
    }

    /// An output that keeps its own digest is not hashed again: its digest is the one reported.
    #[test]
    fn an_output_keeping_its_digest_is_taken_at_its_word() {
        struct Counted(u64);
        impl LayerSink for Counted {
            fn own_digest(&self) -> Option<(Digest, u64)> {
                Some((sha(b"kept").parse().unwrap(), self.0))
            }
        }
        impl Write for Counted {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0 += buf.len() as u64;
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        std::thread::scope(|s| {
            let mut out = WriteBeside::new(s, Counted(0)).unwrap();
            out.write_all(&[5; BLOCK + 9]).unwrap();
            let (digest, size, _) = out.finish().unwrap();
            assert_eq!((digest.to_string(), size), (sha(b"kept"), BLOCK as u64 + 9));
        });
    }

    /// An output that fails: the error comes back from the writer, nothing hangs.
    #[test]
    fn a_failing_output_is_reported() {
        struct Full;
        impl LayerSink for Full {}
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        std::thread::scope(|s| {
            let mut out = WriteBeside::new(s, Full).unwrap();
            let mut failed = None;
            for _ in 0..64 {
                if let Err(e) = out.write_all(&[1; BLOCK]) {
                    failed = Some(e);
                    break;
                }
            }
            let failed = failed.expect("writes fail once the thread has stopped");
            assert_eq!(failed.raw_os_error(), Some(libc::ENOSPC), "the output's own error: {failed}");
            let e = out.finish().err().expect("finish reports the output's error");
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        });
    }
}
