//! Printing at the edge: errors once (`error:` with the top message, then `caused by:` for each source),
//! notices about the store, and stdout writes that end quietly when the reader went away
//! (`kiln images | head`): Rust ignores SIGPIPE, so a closed pipe is an `EPIPE` error, which `main` turns
//! into a quiet exit instead of the panic `println!` would raise.

use std::io::Write;
use std::path::Path;

use crate::store::Opened;

/// Prints an error and its cause chain to stderr, each message once.
pub fn print_error(error: &anyhow::Error) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {error}");
    let mut last = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        // thiserror messages often embed their source with `: {source}`; don't say the same thing twice.
        if !last.contains(&text) {
            let _ = writeln!(err, "  caused by: {text}");
        }
        last = text;
    }
}

/// Standard output, for `write!`/`writeln!`: errors (a closed pipe) propagate instead of panicking.
pub fn stdout() -> std::io::StdoutLock<'static> {
    std::io::stdout().lock()
}

/// True when the error is a write to a closed pipe.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().filter_map(|e| e.downcast_ref::<std::io::Error>()).any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// One line on stderr for each thing opening the store changed.
pub fn print_opened(root: &Path, opened: &Opened) {
    let mut err = std::io::stderr().lock();
    if let Some(mode) = opened.tightened_from {
        let _ = writeln!(
            err,
            "warning: the store {} was mode {mode:04o}, open to other users; it is now 0700",
            root.display()
        );
    }
    if let Some(version) = opened.migrated_from {
        let _ = writeln!(
            err,
            "note: the store {} was upgraded from format {version}; its snapshots were dropped and are \
             re-created from layers when needed",
            root.display()
        );
    }
    if opened.recovered.entries > 0 {
        let _ = writeln!(
            err,
            "note: removed {} leftovers of killed kiln runs ({} bytes)",
            opened.recovered.entries, opened.recovered.bytes
        );
    }
}
