//! Planning errors, each with its place in the Dockerfile.

/// Why the instructions and options do not make a build plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct PlanError {
    /// The Dockerfile's name.
    pub file: String,
    /// 1-based line (0 when no single line is at fault, e.g. an unknown `--target`).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl PlanError {
    /// An error at `line` of `file`.
    pub fn at(file: &str, line: usize, message: impl Into<String>) -> PlanError {
        PlanError { file: file.to_string(), line, message: message.into() }
    }
}
