//! Printing errors once, at the edge: `error:` with the top message, then `caused by:` for each source.

/// Prints an error and its cause chain to stderr, each message once.
pub fn print_error(error: &anyhow::Error) {
    eprintln!("error: {error}");
    let mut last = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        // thiserror messages often embed their source with `: {source}`; don't say the same thing twice.
        if !last.contains(&text) {
            eprintln!("  caused by: {text}");
        }
        last = text;
    }
}
