//! Shell-word expansion with the Dockerfile reference's semantics (BuildKit's `shell` package):
//! `$a`, `${a}`, `${a:-b}`, `${a-b}`, `${a:+b}`, `${a+b}`, `${a:?msg}`, `${a?msg}`, `${a#p}`, `${a##p}`,
//! `${a%p}`, `${a%%p}`, `${a/p/r}`, quotes and escapes, and splitting into words for exec-form use.

use std::collections::BTreeSet;

/// Where expansion looks variables up (the ARG/ENV scope of one step).
pub trait Vars {
    /// The value of `name`, or `None` when it is not set (set-but-empty is `Some("")`).
    fn lookup(&self, name: &str) -> Option<&str>;
}

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExpandError {
    /// What went wrong, e.g. `unexpected end of statement while looking for matching double-quote`.
    pub message: String,
}

/// The expander for one Dockerfile (its escape character decides what `\` or `` ` `` means).
#[derive(Debug, Clone, Copy)]
pub struct Expander {
    escape: char,
}

impl Expander {
    /// An expander using `escape` (`\` by default, or the `# escape=` directive's character).
    pub fn new(escape: char) -> Self {
        Expander { escape }
    }

    /// Expands one word into one string (quotes removed, no splitting).
    pub fn word(&self, word: &str, vars: &dyn Vars) -> Result<String, ExpandError> {
        self.word_with_matches(word, vars).map(|(s, _)| s)
    }

    /// Like [`Expander::word`], also returning the names of the variables that were looked up and set.
    pub fn word_with_matches(&self, word: &str, vars: &dyn Vars) -> Result<(String, BTreeSet<String>), ExpandError> {
        let _ = (word, vars, self.escape);
        todo!("implemented by the shell-expansion work")
    }

    /// Expands a word and splits the result into fields on unquoted white space (exec-form use).
    pub fn words(&self, word: &str, vars: &dyn Vars) -> Result<Vec<String>, ExpandError> {
        let _ = (word, vars, self.escape);
        todo!("implemented by the shell-expansion work")
    }
}
