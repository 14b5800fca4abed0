//! A private copy of something inside a root (a `RUN --mount=type=bind,rw` source): `cp -a` started on the
//! descriptor the source was resolved to, so the copy begins exactly at that inode, and `cp -a` never
//! follows a symlink below its starting point — links are copied as links. Nothing outside the tree is read.
//!
//! Why `cp` and not a walk of our own: it keeps every kind of inode, owners, modes, times, xattrs and hard
//! links, and reflinks where the filesystem can, which matters for large contexts.

use std::io;
use std::path::Path;
use std::process::Command;

use super::Handle;

/// Copies what `source` names (a directory or a file) to `dest`, which must not exist yet.
pub fn private_copy(source: &Handle, dest: &Path) -> io::Result<()> {
    // -H: only the starting point (our descriptor's magic link) is followed; -a keeps the rest as is.
    let status = Command::new("cp")
        .args(["-a", "-H", "--reflink=auto", "--no-target-directory"])
        .arg(source.path_for_child())
        .arg(dest)
        .status()?;
    if status.success() { Ok(()) } else { Err(io::Error::other(format!("cp exited with {status}"))) }
}
