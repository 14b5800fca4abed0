//! Running one command in a rootfs inside Linux namespaces.

use std::process::ExitCode;

/// If this process was re-executed as a sandbox child, run that role and return its exit code.
pub fn run_child_if_requested() -> Option<ExitCode> {
    None
}
