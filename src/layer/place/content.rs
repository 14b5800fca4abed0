//! Comparing a file's incoming bytes with a donor's copy, and copying a donor's bytes, for `place.rs`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::{Content, WHOLE};

/// Reads `content` and compares it with `donor`: how many leading bytes are equal (all of them: the same
/// file), and the piece read after those (to be written before the rest).
pub(super) fn compare(donor: &File, content: &mut Content<'_>, buf: &mut Vec<u8>) -> io::Result<(u64, Vec<u8>)> {
    let mut theirs = vec![0u8; 0];
    let mut offset = 0u64;
    while offset < content.len {
        let want = (content.len - offset).min(WHOLE as u64) as usize;
        buf.resize(want, 0);
        content.reader.read_exact(&mut buf[..want])?;
        theirs.resize(want, 0);
        donor.read_exact_at(&mut theirs, offset)?;
        if buf[..want] != theirs[..] {
            return Ok((offset, buf[..want].to_vec()));
        }
        offset += want as u64;
    }
    Ok((content.len, Vec::new()))
}

/// Copies the first `len` bytes of `from` into `to` (in the kernel where it can).
pub(super) fn copy_range(from: &File, to: &File, len: u64) -> io::Result<()> {
    let mut done = 0u64;
    while done < len {
        let (mut off_in, mut off_out) = (done, done);
        let want = (len - done) as usize;
        match rustix::fs::copy_file_range(from, Some(&mut off_in), to, Some(&mut off_out), want) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n as u64,
            Err(rustix::io::Errno::XDEV | rustix::io::Errno::NOSYS | rustix::io::Errno::INVAL) => {
                let mut buf = vec![0u8; want.min(WHOLE)];
                from.read_exact_at(&mut buf, done)?;
                to.write_all_at(&buf, done)?;
                done += buf.len() as u64;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
