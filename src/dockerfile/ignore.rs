//! `.dockerignore` matching with Docker's semantics (moby/patternmatcher): patterns are cleaned like paths
//! with a leading `/` dropped, `*` and `?` never cross a `/`, `**` crosses any number of directories,
//! `[...]` classes, `\` escapes, `!` re-includes (the last matching pattern wins), a pattern matching a
//! directory excludes everything under it, `#` lines are comments.

use std::path::{Path, PathBuf};

/// A `.dockerignore` pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(".dockerignore line {line}: {message}")]
pub struct IgnoreError {
    /// 1-based line of the pattern.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Lit(char),
    /// `*`: any run of characters but `/`.
    Star,
    /// `?`: one character but `/`.
    One,
    /// `**` followed by more pattern: `(.*/)?`.
    Dirs,
    /// `**` at the end: anything.
    All,
    /// `[...]`: ranges, possibly negated.
    Class {
        ranges: Vec<(char, char)>,
        negated: bool,
    },
}

#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    toks: Vec<Tok>,
    exclusion: bool,
}

/// Compiled `.dockerignore` patterns.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Compiles the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Ignore, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            if raw.starts_with('#') {
                continue;
            }
            let mut p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
                if p.is_empty() {
                    return Err(IgnoreError { line: i + 1, message: "illegal exclusion pattern: \"!\"".into() });
                }
            }
            let mut cleaned = clean(p);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let toks = compile(&cleaned).map_err(|message| IgnoreError { line: i + 1, message })?;
            patterns.push(Pattern { text: cleaned, toks, exclusion });
        }
        Ok(Ignore { patterns })
    }

    /// No patterns: nothing is excluded.
    pub fn empty() -> Ignore {
        Ignore::default()
    }

    /// Whether `rel_path` ('/'-separated, relative to the context) is excluded, directly or through a parent.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let path = clean(rel_path);
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => path[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut hit = full_match(&p.toks, &path.chars().collect::<Vec<_>>());
            if !hit {
                for i in 0..parents.len() {
                    let prefix: Vec<char> = parents[..=i].join("/").chars().collect();
                    if full_match(&p.toks, &prefix) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether a walk must still enter the excluded directory `rel_dir`: some `!` pattern may match inside.
    pub fn may_include_under(&self, rel_dir: &str) -> bool {
        let dir = clean(rel_dir);
        let dir_parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
        self.patterns.iter().filter(|p| p.exclusion).any(|p| {
            let parts: Vec<&str> = p.text.split('/').collect();
            for (i, d) in dir_parts.iter().enumerate() {
                let Some(part) = parts.get(i) else { return true };
                if part.starts_with("**") {
                    return true;
                }
                match compile(part) {
                    Ok(toks) if full_match(&toks, &d.chars().collect::<Vec<_>>()) => {}
                    _ => return false,
                }
            }
            true
        })
    }
}

/// `.dockerignore` files that apply to a build, in order of precedence: `<Dockerfile>.dockerignore` beside
/// the Dockerfile (as BuildKit reads it), then `<context>/.dockerignore`. No I/O.
pub fn ignore_file_candidates(dockerfile: &Path, context: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(name) = dockerfile.file_name() {
        let mut specific = name.to_os_string();
        specific.push(".dockerignore");
        out.push(dockerfile.with_file_name(specific));
    }
    out.push(context.join(".dockerignore"));
    out
}

/// Go's `filepath.Clean` for '/'-separated paths.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

fn compile(pattern: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                toks.push(if i >= chars.len() { Tok::All } else { Tok::Dirs });
            }
            '*' => toks.push(Tok::Star),
            '?' => toks.push(Tok::One),
            '\\' => match chars.get(i) {
                Some(n) => {
                    toks.push(Tok::Lit(*n));
                    i += 1;
                }
                None => toks.push(Tok::Lit('\\')),
            },
            '[' => {
                let (tok, used) = class(&chars[i..]).ok_or_else(|| format!("syntax error in pattern {pattern:?}"))?;
                toks.push(tok);
                i += used;
            }
            c => toks.push(Tok::Lit(c)),
        }
    }
    Ok(toks)
}

/// Parses a class after its `[`; returns the token and how many characters it used (through `]`).
fn class(chars: &[char]) -> Option<(Tok, usize)> {
    let mut i = 0;
    let negated = matches!(chars.first(), Some('^') | Some('!'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    while i < chars.len() {
        if chars[i] == ']' && !first {
            return Some((Tok::Class { ranges, negated }, i + 1));
        }
        first = false;
        let mut lo = chars[i];
        if lo == '\\' {
            i += 1;
            lo = *chars.get(i)?;
        }
        let mut hi = lo;
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|c| *c != ']') {
            i += 2;
            hi = chars[i];
            if hi == '\\' {
                i += 1;
                hi = *chars.get(i)?;
            }
        }
        ranges.push((lo, hi));
        i += 1;
    }
    None
}

fn full_match(toks: &[Tok], text: &[char]) -> bool {
    match toks.first() {
        None => text.is_empty(),
        Some(Tok::Lit(c)) => text.first() == Some(c) && full_match(&toks[1..], &text[1..]),
        Some(Tok::One) => text.first().is_some_and(|c| *c != '/') && full_match(&toks[1..], &text[1..]),
        Some(Tok::Class { ranges, negated }) => {
            text.first().is_some_and(|c| *c != '/' && ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negated)
                && full_match(&toks[1..], &text[1..])
        }
        Some(Tok::Star) => {
            let limit = text.iter().position(|c| *c == '/').unwrap_or(text.len());
            (0..=limit).any(|n| full_match(&toks[1..], &text[n..]))
        }
        Some(Tok::All) => true,
        Some(Tok::Dirs) => {
            // `(.*/)?`: nothing, or anything ending with a '/'.
            full_match(&toks[1..], text)
                || (0..text.len()).any(|i| text[i] == '/' && full_match(&toks[1..], &text[i + 1..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> Ignore {
        Ignore::parse(text).unwrap()
    }

    #[test]
    fn docker_pattern_table() {
        // (patterns, path, excluded) — cases from Docker's patternmatcher behaviour.
        let cases: &[(&str, &str, bool)] = &[
            ("*.go", "main.go", true),
            ("*.go", "cmd/main.go", false),
            ("**/*.go", "cmd/main.go", true),
            ("**/*.go", "main.go", true),
            ("docs", "docs/a/b.md", true),
            ("/docs", "docs/x", true),
            ("./docs/", "docs/x", true),
            ("a/**/z", "a/z", true),
            ("a/**/z", "a/b/c/z", true),
            ("a/**", "a/b/c", true),
            ("**", "anything/at/all", true),
            ("file?.txt", "file1.txt", true),
            ("file?.txt", "file/.txt", false),
            ("[a-c]*", "beta", true),
            ("[^a-c]*", "beta", false),
            ("\\*star", "*star", true),
            ("*\n!keep.go", "keep.go", false),
            ("*.go\n!keep.go", "drop.go", true),
            ("dir\n!dir/keep", "dir/keep", false),
            ("dir\n!dir/keep", "dir/other", true),
            ("!keep\n*", "keep", true),
            ("# comment\n\n  build  ", "build/out", true),
            ("../up", "up", false),
        ];
        for (patterns, path, want) in cases {
            assert_eq!(ignore(patterns).is_excluded(path), *want, "patterns {patterns:?} path {path:?}");
        }
    }

    #[test]
    fn excluded_dirs_are_walked_when_an_exception_may_match_inside() {
        let ig = ignore("vendor\n!vendor/keep/*.go");
        assert!(ig.is_excluded("vendor"));
        assert!(ig.may_include_under("vendor"));
        assert!(ig.may_include_under("vendor/keep"));
        assert!(!ig.may_include_under("vendor/other"));
        assert!(!ignore("vendor").may_include_under("vendor"));
        assert!(ignore("vendor\n!**/*.md").may_include_under("vendor/x"));
    }

    #[test]
    fn bad_patterns_name_their_line() {
        let e = Ignore::parse("ok\n!\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(Ignore::parse("a\n[z").unwrap_err().line, 2);
    }

    #[test]
    fn dockerfile_specific_ignore_file_comes_first() {
        let c = ignore_file_candidates(Path::new("/ctx/sub/app.Dockerfile"), Path::new("/ctx"));
        assert_eq!(c, [PathBuf::from("/ctx/sub/app.Dockerfile.dockerignore"), PathBuf::from("/ctx/.dockerignore")]);
    }
}
