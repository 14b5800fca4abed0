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
            patterns.push(Pattern { toks, exclusion });
        }
        Ok(Ignore { patterns })
    }

    /// No patterns: nothing is excluded.
    pub fn empty() -> Ignore {
        Ignore::default()
    }

    /// Whether `rel_path` ('/'-separated, relative to the context) is excluded, directly or through a parent.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let path: Vec<char> = clean(rel_path).chars().collect();
        let mut matched = false;
        for p in &self.patterns {
            // Last match wins, so a pattern that cannot change the answer need not be run.
            if p.exclusion == matched && matches_self_or_parent(&p.toks, &path) {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether a walk must still enter the excluded directory `rel_dir`: some `!` pattern may match inside.
    pub fn may_include_under(&self, rel_dir: &str) -> bool {
        let mut dir: Vec<char> = clean(rel_dir).chars().collect();
        dir.push('/');
        self.patterns.iter().filter(|p| p.exclusion).any(|p| may_match_after(&p.toks, &dir))
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

/// Where a pattern can be after reading some text: a Thompson simulation, one set of token positions per
/// character, so a match costs pattern length × text length whatever the pattern. Backtracking (as this
/// matcher once did) is exponential in the `*`s and `**`s of a hostile `.dockerignore`.
struct Positions<'a> {
    toks: &'a [Tok],
    /// `at[i]`: before token `i` (`i == toks.len()`: the whole pattern matched).
    at: Vec<bool>,
    /// `inside[i]`: inside the `.*` of the `Tok::Dirs` at `i`, which must still end with a '/'.
    inside: Vec<bool>,
    /// The sets after the next character, kept so that reading one allocates nothing.
    next_at: Vec<bool>,
    next_inside: Vec<bool>,
}

impl<'a> Positions<'a> {
    fn start(toks: &'a [Tok]) -> Positions<'a> {
        let mut at = vec![false; toks.len() + 1];
        at[0] = true;
        let n = toks.len();
        let mut p =
            Positions { toks, at, inside: vec![false; n], next_at: vec![false; n + 1], next_inside: vec![false; n] };
        p.close();
        p
    }

    /// Takes the moves that read nothing: `*`, `**/` and a trailing `**` may match the empty string.
    fn close(&mut self) {
        for i in 0..self.toks.len() {
            if self.at[i] && matches!(self.toks[i], Tok::Star | Tok::Dirs | Tok::All) {
                self.at[i + 1] = true;
            }
        }
    }

    fn read(&mut self, c: char) {
        let (at, inside) = (&mut self.next_at, &mut self.next_inside);
        at.fill(false);
        inside.fill(false);
        for (i, tok) in self.toks.iter().enumerate() {
            if let Tok::Dirs = tok {
                if self.at[i] || self.inside[i] {
                    inside[i] = true;
                    at[i + 1] |= c == '/';
                }
                continue;
            }
            if !self.at[i] {
                continue;
            }
            match tok {
                Tok::Lit(l) => at[i + 1] |= *l == c,
                Tok::One => at[i + 1] |= c != '/',
                Tok::Class { ranges, negated } => {
                    at[i + 1] |= c != '/' && ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated
                }
                Tok::Star => at[i] |= c != '/',
                Tok::All => at[i] = true,
                Tok::Dirs => unreachable!("handled above"),
            }
        }
        std::mem::swap(&mut self.at, &mut self.next_at);
        std::mem::swap(&mut self.inside, &mut self.next_inside);
        self.close();
    }

    fn matched(&self) -> bool {
        self.at[self.toks.len()]
    }

    fn alive(&self) -> bool {
        self.at.iter().chain(&self.inside).any(|b| *b)
    }
}

/// Whether the pattern matches `path` or one of its parent directories.
fn matches_self_or_parent(toks: &[Tok], path: &[char]) -> bool {
    let mut pos = Positions::start(toks);
    for c in path {
        if *c == '/' && pos.matched() {
            return true;
        }
        pos.read(*c);
        if !pos.alive() {
            return false;
        }
    }
    pos.matched()
}

/// Whether the pattern may match some path that starts with `prefix` (sound: never false when it can).
fn may_match_after(toks: &[Tok], prefix: &[char]) -> bool {
    let mut pos = Positions::start(toks);
    for c in prefix {
        pos.read(*c);
        if !pos.alive() {
            return false;
        }
    }
    true
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
    fn exceptions_that_cross_directories_keep_the_walk_going() {
        // `**` inside a component and an escaped '/' both match across directory levels.
        for (patterns, dir, path) in [("*\n!x**/*l", "x/y", "x/y/l"), ("*\n!a\\/b/c", "a/b", "a/b/c")] {
            let ig = ignore(patterns);
            assert!(!ig.is_excluded(path), "{patterns:?} re-includes {path:?}");
            assert!(ig.is_excluded(dir) && ig.may_include_under(dir), "{patterns:?} must walk {dir:?}");
        }
    }

    #[test]
    fn hostile_patterns_cost_what_they_are_long() {
        // A backtracking matcher takes exponential time on these; the position sets take linear time.
        let stars = format!("{}b", "*a".repeat(40));
        let dirs = format!("{}z", "**/".repeat(40));
        let deep = vec!["a"; 400].join("/");
        let ig = ignore(&format!("{stars}\n{dirs}\n!{dirs}y"));
        assert!(!ig.is_excluded(&"a".repeat(400)));
        assert!(!ig.is_excluded(&deep));
        assert!(ig.may_include_under(&deep));
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
