//! The bytes of a layer's regular files, handed from the layer writer to a snapshot being filled at the same
//! time: each file is read from its source once, and the snapshot gets exactly what the layer got.
//!
//! A pipe bounded by bytes, not messages: a COPY of many small files may run far ahead of file creation
//! (which is what costs), a COPY of one huge file may not hold it all in memory. The writer blocks while
//! [`BUDGET`] bytes wait; when the reading side is gone, writes are dropped (the layer does not need them).
//! Both ends work in batches (the writer hands over about [`BATCH`] bytes at a time, the reader takes as
//! much) and wake the other side only when it sleeps: a message per 8 KiB read with a wake-up each was
//! a `futex` call per message, ten per file of a 20,000-file COPY.
//!
//! The reader may say which files it will not need ([`TeeReader::not_needed`]: those of a directory it moved
//! whole from an earlier snapshot); the writer then sends only their lengths. Files sent before it said so
//! arrive as usual and are dropped.
//!
//! Hand-written (a mutex, a condition variable and a queue) because std's channels bound messages, not
//! bytes, and the crates that bound bytes bring a runtime with them.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex};

/// Bytes that may wait in the pipe.
const BUDGET: usize = 64 << 20;

/// Bytes the writer gathers before handing them over: small enough that the reader, when it says which
/// files it will not need, says so before the writer has gone far past them.
const BATCH: usize = 256 << 10;

/// What passes through the pipe, per regular file in layer order.
#[derive(Debug)]
enum Message {
    /// A file of this many bytes starts.
    Start(u64),
    /// A file of this many bytes the reader said it does not need: no bytes follow.
    Skipped(u64),
    /// Some of its bytes.
    Data(Vec<u8>),
}

#[derive(Default)]
struct State {
    queue: VecDeque<Message>,
    bytes: usize,
    writer_gone: bool,
    reader_gone: bool,
    writer_waits: bool,
    reader_waits: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// Files (by number, from 0 in layer order) the reader does not need.
    not_needed: Mutex<std::ops::Range<u64>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, guard: std::sync::MutexGuard<'a, State>) -> std::sync::MutexGuard<'a, State> {
        self.changed.wait(guard).unwrap_or_else(|e| e.into_inner())
    }
}

/// Messages gathered by the writer, not handed over yet.
#[derive(Default)]
struct Batch {
    messages: Vec<Message>,
    bytes: usize,
}

/// The layer writer's end (used from one thread).
pub struct TeeWriter {
    shared: Arc<Shared>,
    batch: RefCell<Batch>,
    /// Files started so far, and whether the current one's bytes are dropped.
    files: std::cell::Cell<(u64, bool)>,
}

/// The snapshot's end.
pub struct TeeReader {
    shared: Arc<Shared>,
    local: VecDeque<Message>,
    /// Files received so far.
    files: u64,
}

/// A new pipe.
pub fn tee() -> (TeeWriter, TeeReader) {
    let shared = Arc::new(Shared::default());
    let writer = TeeWriter { shared: shared.clone(), batch: RefCell::default(), files: Default::default() };
    (writer, TeeReader { shared, local: VecDeque::new(), files: 0 })
}

impl TeeWriter {
    /// A regular file of `len` bytes starts.
    pub fn start(&self, len: u64) {
        let (number, _) = self.files.get();
        let skip = self.shared.not_needed.lock().unwrap_or_else(|e| e.into_inner()).contains(&number);
        self.files.set((number + 1, skip));
        self.batch.borrow_mut().messages.push(if skip { Message::Skipped(len) } else { Message::Start(len) });
    }

    /// Bytes of the current file.
    pub fn data(&self, bytes: &[u8]) {
        if bytes.is_empty() || self.files.get().1 {
            return;
        }
        let full = {
            let mut batch = self.batch.borrow_mut();
            match batch.messages.last_mut() {
                Some(Message::Data(last)) => last.extend_from_slice(bytes),
                _ => batch.messages.push(Message::Data(bytes.to_vec())),
            }
            batch.bytes += bytes.len();
            batch.bytes >= BATCH
        };
        if full {
            self.flush();
        }
    }

    /// Hands the gathered messages over, waiting while the pipe holds too much.
    fn flush(&self) {
        let Batch { messages, bytes } = std::mem::take(&mut *self.batch.borrow_mut());
        if messages.is_empty() {
            return;
        }
        let mut state = self.shared.lock();
        while !state.reader_gone && state.bytes > 0 && state.bytes + bytes > BUDGET {
            state.writer_waits = true;
            state = self.shared.wait(state);
            state.writer_waits = false;
        }
        if state.reader_gone {
            return;
        }
        state.bytes += bytes;
        state.queue.extend(messages);
        if state.reader_waits {
            self.shared.changed.notify_all();
        }
    }
}

impl Drop for TeeWriter {
    fn drop(&mut self) {
        self.flush();
        self.shared.lock().writer_gone = true;
        self.shared.changed.notify_all();
    }
}

impl TeeReader {
    /// The length of the next file, when the writer sends one, and whether its bytes follow (they do not
    /// when the reader said it does not need them, and the writer had not passed it yet).
    pub fn next_file(&mut self) -> io::Result<(u64, bool)> {
        let next = match self.receive()? {
            Message::Start(len) => (len, true),
            Message::Skipped(len) => (len, false),
            Message::Data(_) => return Err(io::Error::other("the layer writer sent bytes before a file started")),
        };
        self.files += 1;
        Ok(next)
    }

    /// Says that the next `count` files (after those received so far) are not needed: the writer sends only
    /// their lengths from now on. Replaces what was said before, which must be passed by then.
    pub fn not_needed(&mut self, count: u64) {
        *self.shared.not_needed.lock().unwrap_or_else(|e| e.into_inner()) = self.files..self.files + count;
    }

    fn receive(&mut self) -> io::Result<Message> {
        if let Some(message) = self.local.pop_front() {
            return Ok(message);
        }
        let mut state = self.shared.lock();
        loop {
            if !state.queue.is_empty() {
                // About a batch at a time: what the reader holds stays out of the budget only briefly.
                let mut taken = 0;
                while taken < BATCH
                    && let Some(message) = state.queue.pop_front()
                {
                    if let Message::Data(bytes) = &message {
                        taken += bytes.len();
                    }
                    self.local.push_back(message);
                }
                state.bytes -= taken;
                if state.writer_waits {
                    self.shared.changed.notify_all();
                }
                drop(state);
                return self.local.pop_front().ok_or_else(|| io::Error::other("an empty batch"));
            }
            if state.writer_gone {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the layer writer stopped"));
            }
            state.reader_waits = true;
            state = self.shared.wait(state);
            state.reader_waits = false;
        }
    }

    /// A reader of the current file's `len` bytes (`sent`: whether they follow, as [`TeeReader::next_file`]
    /// said; reading a file whose bytes were not sent is an error).
    pub fn file(&mut self, (len, sent): (u64, bool)) -> FileBytes<'_> {
        FileBytes { tee: self, left: len, sent, pending: Vec::new(), at: 0 }
    }
}

impl Drop for TeeReader {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.reader_gone = true;
        state.queue.clear();
        state.bytes = 0;
        self.shared.changed.notify_all();
    }
}

/// The bytes of one file, as the layer writer read them.
pub struct FileBytes<'a> {
    tee: &'a mut TeeReader,
    left: u64,
    sent: bool,
    pending: Vec<u8>,
    at: usize,
}

impl FileBytes<'_> {
    /// Takes the file's next block from the pipe when the current one is used up.
    fn refill(&mut self) -> io::Result<()> {
        if self.at == self.pending.len() {
            match self.tee.receive()? {
                Message::Data(bytes) => (self.pending, self.at) = (bytes, 0),
                Message::Start(_) | Message::Skipped(_) => {
                    return Err(io::Error::other("a file ended before its length"));
                }
            }
        }
        Ok(())
    }

    /// Drops what is left of the file. Whole blocks are dropped as received, never copied: most files of
    /// a rebuild are linked or moved from the previous snapshot, and their bytes are not needed.
    pub fn skip_rest(&mut self) -> io::Result<()> {
        while self.sent && self.left > 0 {
            self.refill()?;
            let n = (self.pending.len() - self.at).min(usize::try_from(self.left).unwrap_or(usize::MAX));
            self.at += n;
            self.left -= n as u64;
        }
        Ok(())
    }
}

impl io::Read for FileBytes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        if !self.sent {
            return Err(io::Error::other("the bytes of a file the snapshot said it did not need were read"));
        }
        self.refill()?;
        let n = buf.len().min(self.pending.len() - self.at).min(self.left as usize);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Sends `count` files, the `n`th `body(n)`, cut into pieces of `piece` bytes, from a thread of its own.
    fn send(writer: TeeWriter, count: u8, body: fn(u8) -> Vec<u8>, piece: usize) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            for n in 0..count {
                let bytes = body(n);
                writer.start(bytes.len() as u64);
                for part in bytes.chunks(piece) {
                    writer.data(part);
                }
            }
        })
    }

    #[test]
    fn files_arrive_whole_and_in_order_however_they_were_cut() {
        let (writer, mut reader) = tee();
        let sender = send(writer, 50, |n| vec![n; 1000 + n as usize * 997], 333);
        for n in 0..50u8 {
            let len = reader.next_file().unwrap();
            let mut body = Vec::new();
            reader.file(len).read_to_end(&mut body).unwrap();
            assert_eq!(body, vec![n; 1000 + n as usize * 997]);
        }
        sender.join().unwrap();
        assert_eq!(reader.next_file().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn skipped_files_leave_the_next_ones_whole() {
        let (writer, mut reader) = tee();
        let body = |n: u8| vec![n; 700 + n as usize * 1531];
        let sender = send(writer, 40, body, 997);
        for n in 0..40u8 {
            let len = reader.next_file().unwrap();
            let mut file = reader.file(len);
            if n % 3 == 0 {
                file.skip_rest().unwrap();
                continue;
            }
            // Part read, the rest skipped: the next file still starts where it should.
            let mut head = vec![0; 100];
            file.read_exact(&mut head).unwrap();
            assert_eq!(head, vec![n; 100]);
            if n % 3 == 1 {
                file.skip_rest().unwrap();
            } else {
                let mut rest = Vec::new();
                file.read_to_end(&mut rest).unwrap();
                assert_eq!(rest.len() + 100, body(n).len());
            }
        }
        sender.join().unwrap();
        assert_eq!(reader.next_file().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn files_the_reader_does_not_need_come_without_bytes_and_the_rest_whole() {
        let (writer, mut reader) = tee();
        let body = |n: u8| vec![n; 5_000 + n as usize * 3];
        // Said before the writer starts: files 0..10 are never sent.
        reader.not_needed(10);
        let sender = send(writer, 60, body, 5_000);
        for n in 0..60u8 {
            let next = reader.next_file().unwrap();
            assert_eq!(next.0, body(n).len() as u64, "file {n}");
            if !(21..51).contains(&n) {
                assert_eq!(next.1, n >= 10, "file {n}");
            }
            if n == 20 {
                // Said while the writer runs: each of the next 30 comes either whole or without bytes.
                reader.not_needed(30);
            }
            let mut file = reader.file(next);
            if next.1 {
                let mut got = Vec::new();
                file.read_to_end(&mut got).unwrap();
                assert_eq!(got, body(n));
            } else {
                assert!(file.read(&mut [0; 8]).is_err(), "no bytes to read for file {n}");
                file.skip_rest().unwrap();
            }
        }
        sender.join().unwrap();
        assert_eq!(reader.next_file().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_writer_is_never_blocked_by_a_reader_that_went_away() {
        let (writer, reader) = tee();
        drop(reader);
        writer.start(BUDGET as u64 * 3);
        for _ in 0..3 {
            writer.data(&vec![0u8; BUDGET]);
        }
    }
}
