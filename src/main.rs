//! The `kiln` binary: checks for the sandbox child role first, then hands over to the CLI.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Must run before anything starts a thread: entering namespaces needs a single-threaded process.
    if let Some(code) = kiln::sandbox::run_child_if_requested() {
        return code;
    }
    kiln::cli::main()
}
