//! Parse errors and warnings, each naming the file and line: `Dockerfile:12: unknown instruction: FORM`.

use std::fmt;

/// A Dockerfile that cannot be parsed, with the place of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    /// The Dockerfile's name as the user gave it.
    pub file: String,
    /// 1-based line of the offending instruction (0 when the file as a whole is at fault).
    pub line: usize,
    /// What is wrong, in words a person can act on.
    pub message: String,
}

/// Something accepted but worth telling (empty continuation lines, deprecated forms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The Dockerfile's name.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The warning text.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// An error before the file name and line are known; the parser attaches them once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem(pub String);

impl Problem {
    /// Attaches the place.
    pub(crate) fn at(self, file: &str, line: usize) -> ParseError {
        ParseError { file: file.to_string(), line, message: self.0 }
    }
}

impl<T: Into<String>> From<T> for Problem {
    fn from(message: T) -> Self {
        Problem(message.into())
    }
}
