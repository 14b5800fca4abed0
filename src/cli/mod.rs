//! Command-line interface: clap definitions, flags → library calls, output, exit codes.

use std::process::ExitCode;

/// Parses arguments, runs the command, prints errors once, and maps them to exit codes.
pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
