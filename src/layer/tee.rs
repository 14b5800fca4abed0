//! The bytes of a layer's regular files, handed from the layer writer to a snapshot being filled at the same
//! time: each file is read from its source once, and the snapshot gets exactly what the layer got.
//!
//! A pipe bounded by bytes, not messages: a COPY of many small files may run far ahead of file creation
//! (which is what costs), a COPY of one huge file may not hold it all in memory. The writer blocks while
//! [`BUDGET`] bytes wait; when the reading side is gone, writes are dropped (the layer does not need them).
//!
//! Hand-written (a mutex, a condition variable and a queue) because std's channels bound messages, not
//! bytes, and the crates that bound bytes bring a runtime with them.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex};

/// Bytes that may wait in the pipe.
const BUDGET: usize = 64 << 20;

/// What passes through the pipe, per regular file in layer order.
#[derive(Debug)]
enum Message {
    /// A file of this many bytes starts.
    Start(u64),
    /// Some of its bytes.
    Data(Vec<u8>),
}

#[derive(Default)]
struct State {
    queue: VecDeque<Message>,
    bytes: usize,
    writer_gone: bool,
    reader_gone: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The layer writer's end.
pub struct TeeWriter(Arc<Shared>);

/// The snapshot's end.
pub struct TeeReader(Arc<Shared>);

/// A new pipe.
pub fn tee() -> (TeeWriter, TeeReader) {
    let shared = Arc::new(Shared::default());
    (TeeWriter(shared.clone()), TeeReader(shared))
}

impl TeeWriter {
    /// A regular file of `len` bytes starts.
    pub fn start(&self, len: u64) {
        self.send(Message::Start(len), 0);
    }

    /// Bytes of the current file.
    pub fn data(&self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.send(Message::Data(bytes.to_vec()), bytes.len());
        }
    }

    fn send(&self, message: Message, size: usize) {
        let mut state = self.0.lock();
        while !state.reader_gone && state.bytes > 0 && state.bytes + size > BUDGET {
            state = self.0.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.reader_gone {
            return;
        }
        state.bytes += size;
        state.queue.push_back(message);
        self.0.changed.notify_all();
    }
}

impl Drop for TeeWriter {
    fn drop(&mut self) {
        self.0.lock().writer_gone = true;
        self.0.changed.notify_all();
    }
}

impl TeeReader {
    /// The length of the next file, when the writer sends one.
    pub fn next_file(&mut self) -> io::Result<u64> {
        match self.receive()? {
            Message::Start(len) => Ok(len),
            Message::Data(_) => Err(io::Error::other("the layer writer sent bytes before a file started")),
        }
    }

    fn receive(&self) -> io::Result<Message> {
        let mut state = self.0.lock();
        loop {
            if let Some(message) = state.queue.pop_front() {
                if let Message::Data(bytes) = &message {
                    state.bytes -= bytes.len();
                }
                self.0.changed.notify_all();
                return Ok(message);
            }
            if state.writer_gone {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the layer writer stopped"));
            }
            state = self.0.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A reader of the current file's `len` bytes.
    pub fn file(&mut self, len: u64) -> FileBytes<'_> {
        FileBytes { tee: self, left: len, pending: Vec::new(), at: 0 }
    }
}

impl Drop for TeeReader {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.reader_gone = true;
        state.queue.clear();
        state.bytes = 0;
        self.0.changed.notify_all();
    }
}

/// The bytes of one file, as the layer writer read them.
pub struct FileBytes<'a> {
    tee: &'a mut TeeReader,
    left: u64,
    pending: Vec<u8>,
    at: usize,
}

impl FileBytes<'_> {
    /// Reads and drops what is left of the file.
    pub fn skip_rest(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }
}

impl io::Read for FileBytes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        if self.at == self.pending.len() {
            match self.tee.receive()? {
                Message::Data(bytes) => (self.pending, self.at) = (bytes, 0),
                Message::Start(_) => return Err(io::Error::other("a file ended before its length")),
            }
        }
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

    #[test]
    fn files_arrive_whole_and_in_order_however_they_were_cut() {
        let (writer, mut reader) = tee();
        let sender = std::thread::spawn(move || {
            for n in 0..50u8 {
                let body = vec![n; 1000 + n as usize * 997];
                writer.start(body.len() as u64);
                for piece in body.chunks(333) {
                    writer.data(piece);
                }
            }
        });
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
    fn a_writer_is_never_blocked_by_a_reader_that_went_away() {
        let (writer, reader) = tee();
        drop(reader);
        writer.start(BUDGET as u64 * 3);
        for _ in 0..3 {
            writer.data(&vec![0u8; BUDGET]);
        }
    }
}
