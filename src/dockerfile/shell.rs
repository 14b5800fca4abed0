//! Shell-word expansion with the Dockerfile reference's semantics (BuildKit's `shell` package):
//! `$a`, `${a}`, `${a:-b}`, `${a-b}`, `${a:+b}`, `${a+b}`, `${a:?msg}`, `${a?msg}`, `${a#p}`, `${a##p}`,
//! `${a%p}`, `${a%%p}`, `${a/p/r}`, `${a//p/r}`, single and double quotes, the escape character, and
//! splitting into words for exec-form use. Unset and set-but-empty variables are told apart.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use regex::Regex;

/// Where expansion looks variables up (the ARG/ENV scope of one step).
pub trait Vars {
    /// The value of `name`, or `None` when it is not set (set-but-empty is `Some("")`).
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl Vars for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Vars for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Vars for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl Vars for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExpandError {
    /// What went wrong, e.g. `unexpected end of statement while looking for matching double-quote`.
    pub message: String,
}

fn err<T>(message: impl Into<String>) -> Result<T, ExpandError> {
    Err(ExpandError { message: message.into() })
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
        let mut lexer = Lexer::new(word, self.escape, vars);
        let (result, _) = lexer.process()?;
        Ok((result, lexer.matches))
    }

    /// Like [`Expander::word`], also returning the variables it found and those it looked up in vain (as
    /// BuildKit's `ProcessWordWithMatches`, for the build checks on FROM lines).
    pub fn word_with_lookups(&self, word: &str, vars: &dyn Vars) -> Result<Expansion, ExpandError> {
        let mut lexer = Lexer::new(word, self.escape, vars);
        let (result, _) = lexer.process()?;
        Ok(Expansion { result, matched: lexer.matches, unmatched: lexer.unmatched })
    }

    /// Expands a word and splits the result into fields on unquoted white space (exec-form use).
    pub fn words(&self, word: &str, vars: &dyn Vars) -> Result<Vec<String>, ExpandError> {
        let mut lexer = Lexer::new(word, self.escape, vars);
        lexer.process().map(|(_, words)| words)
    }

    /// Expands a COPY/ADD heredoc body with an unquoted delimiter: variables are expanded and `\`
    /// escapes processed (`\$` is `$`, `\\` is `\`, a `\` before a newline goes), but quotes are file
    /// content, not syntax. As in BuildKit (`ExpandRaw`), the escape character here is always `\`,
    /// whatever `# escape=` says.
    pub fn heredoc(&self, content: &str, vars: &dyn Vars) -> Result<String, ExpandError> {
        self.heredoc_with_lookups(content, vars).map(|e| e.result)
    }

    /// Like [`Expander::heredoc`], also returning the variables it found and missed.
    pub fn heredoc_with_lookups(&self, content: &str, vars: &dyn Vars) -> Result<Expansion, ExpandError> {
        let mut lexer = Lexer::new(content, '\\', vars);
        lexer.skip_quotes = true;
        let (result, _) = lexer.process_until(None, false)?;
        Ok(Expansion { result, matched: lexer.matches, unmatched: lexer.unmatched })
    }
}

/// One expanded word with the variable names it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded word.
    pub result: String,
    /// Names looked up and set.
    pub matched: BTreeSet<String>,
    /// Names looked up and not set.
    pub unmatched: BTreeSet<String>,
}

/// Splits text into fields as it is built: unquoted white space separates, quoted text never does.
#[derive(Default)]
struct Fields {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Fields {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }
    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    vars: &'a dyn Vars,
    raw_escapes: bool,
    skip_quotes: bool,
    matches: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

impl<'a> Lexer<'a> {
    fn new(word: &str, escape: char, vars: &'a dyn Vars) -> Self {
        Lexer {
            chars: word.chars().collect(),
            pos: 0,
            escape,
            vars,
            raw_escapes: false,
            skip_quotes: false,
            matches: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn get(&mut self, name: &str) -> Option<String> {
        let value = self.vars.lookup(name).map(str::to_string);
        match value {
            Some(_) => self.matches.insert(name.to_string()),
            None => self.unmatched.insert(name.to_string()),
        };
        value
    }

    fn process(&mut self) -> Result<(String, Vec<String>), ExpandError> {
        self.process_until(None, false)
    }

    /// Processes up to `stop` (consumed) or the end; `raw_escapes` keeps escape characters in the text.
    fn process_until(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<(String, Vec<String>), ExpandError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let out = self.process_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn process_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut fields = Fields::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.next();
                return Ok((result, fields.finish()));
            }
            match c {
                '$' => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                    fields.add_string(&value);
                }
                '\'' if !self.skip_quotes => {
                    let value = self.single_quote()?;
                    result.push_str(&value);
                    fields.add_raw_string(&value);
                }
                '"' if !self.skip_quotes => {
                    let value = self.double_quote()?;
                    result.push_str(&value);
                    fields.add_raw_string(&value);
                }
                _ => {
                    self.next();
                    if c == self.escape {
                        if self.raw_escapes {
                            fields.add_raw_char(c);
                            result.push(c);
                        }
                        let Some(escaped) = self.next() else { break };
                        fields.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        fields.add_char(c);
                        result.push(c);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return err(format!("unexpected end of statement while looking for matching {stop}"));
        }
        Ok((result, fields.finish()))
    }

    fn single_quote(&mut self) -> Result<String, ExpandError> {
        self.next();
        let mut out = String::new();
        loop {
            match self.next() {
                None => return err("unexpected end of statement while looking for matching single-quote"),
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, ExpandError> {
        self.next();
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return err("unexpected end of statement while looking for matching double-quote"),
                Some('"') => {
                    self.next();
                    return Ok(out);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    out.push_str(&value);
                }
                Some(_) => {
                    let mut c = self.next().unwrap_or_default();
                    if c == self.escape {
                        if self.raw_escapes {
                            out.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                c = n;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return c.to_string();
            }
            if !c.is_alphanumeric() && c != '_' {
                break;
            }
            name.push(c);
            self.next();
        }
        name
    }

    fn dollar(&mut self) -> Result<String, ExpandError> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.get(&name).unwrap_or_default());
        }
        self.next();
        match self.peek() {
            None => return err("syntax error: missing '}'"),
            Some('{' | '}' | ':') => return err("syntax error: bad substitution"),
            _ => {}
        }
        let name = self.name();
        let Some(mut op) = self.next() else { return err("syntax error: missing '}'") };
        let mut null_is_unset = false;
        match op {
            '}' => Ok(self.get(&name).unwrap_or_default()),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                if op == ':' {
                    null_is_unset = true;
                    match self.next() {
                        Some(next) => op = next,
                        None => return err("syntax error: missing '}'"),
                    }
                }
                let raw = op == '#' || op == '%';
                let word = match self.process_until(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(e) if self.peek().is_none() => {
                        let _ = e;
                        return err("syntax error: missing '}'");
                    }
                    Err(e) => return Err(e),
                };
                let value = self.get(&name);
                let empty = |v: &Option<String>| v.as_deref().is_none_or(|v| null_is_unset && v.is_empty());
                match op {
                    '-' => Ok(if empty(&value) { word } else { value.unwrap_or_default() }),
                    '+' => Ok(if empty(&value) { String::new() } else { word }),
                    '?' => match value {
                        None => err(format!("{name}: {}", or(&word, "is not allowed to be unset"))),
                        Some(v) if null_is_unset && v.is_empty() => {
                            err(format!("{name}: {}", or(&word, "is not allowed to be empty")))
                        }
                        Some(v) => Ok(v),
                    },
                    '#' | '%' if !null_is_unset => {
                        let (greedy, pattern) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, word.clone()),
                        };
                        let pattern = Pattern::compile(&pattern)?;
                        let value = value.unwrap_or_default();
                        Ok(if op == '#' {
                            pattern.trim_prefix(&value, greedy)?
                        } else {
                            pattern.trim_suffix(&value, greedy)?
                        })
                    }
                    _ => err(format!("unsupported modifier (:{op}) in substitution")),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pattern = match self.process_until(Some('/'), true) {
                    Ok((p, _)) => p,
                    Err(_) if self.peek().is_none() => return err("syntax error: missing '/' in ${}"),
                    Err(e) => return Err(e),
                };
                let replacement = match self.process_until(Some('}'), true) {
                    Ok((r, _)) => r,
                    Err(_) if self.peek().is_none() => return err("syntax error: missing '}'"),
                    Err(e) => return Err(e),
                };
                let value = self.get(&name).unwrap_or_default();
                Pattern::compile(&pattern)?.replace(&value, &replacement, all)
            }
            other => err(format!("unsupported modifier ({other}) in substitution")),
        }
    }
}

fn or(word: &str, default: &str) -> String {
    if word.is_empty() { default.to_string() } else { word.to_string() }
}

/// A shell pattern of `${a#p}` and friends: `*`, `?`, literal characters (no bracket expressions).
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Star,
    Any,
    Lit(char),
}

/// A parsed pattern. Matching goes through the `regex` crate, as BuildKit's goes through Go's `regexp`:
/// both guarantee time linear in the input (a backtracking matcher is exponential in the stars of a
/// hostile pattern), and both give `*` and `?` the same reach (a single line: neither matches `\n`).
#[derive(Debug)]
struct Pattern(Vec<Token>);

impl Pattern {
    fn compile(pattern: &str) -> Result<Pattern, ExpandError> {
        let mut out = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => out.push(Token::Star),
                '?' => out.push(Token::Any),
                '\\' => match chars.peek() {
                    // `}` and `/` are escaped only to get past the ${} parser; the escape is not in the pattern.
                    Some('}' | '/') => {}
                    Some(&n @ ('*' | '?' | '\\')) => {
                        chars.next();
                        out.push(Token::Lit(n));
                    }
                    Some(n) => {
                        return err(format!("invalid pattern ({pattern}) in substitution: invalid escape '\\{n}'"));
                    }
                    None => return err(format!("invalid pattern ({pattern}) in substitution: trailing escape")),
                },
                c => out.push(Token::Lit(c)),
            }
        }
        Ok(Pattern(out))
    }

    /// The regular expression of `tokens`: stars greedy or lazy, anchored at the start or not.
    fn regex<'a>(tokens: impl Iterator<Item = &'a Token>, greedy: bool, anchored: bool) -> Result<Regex, ExpandError> {
        let mut re = String::from(if anchored { "^" } else { "" });
        for token in tokens {
            match token {
                Token::Star => re.push_str(if greedy { ".*" } else { ".*?" }),
                Token::Any => re.push('.'),
                Token::Lit(c) => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
            }
        }
        Regex::new(&re).or_else(|e| err(format!("invalid pattern in substitution: {e}")))
    }

    /// `${v#p}` / `${v##p}`: the value without its shortest (longest when `greedy`) matching prefix.
    fn trim_prefix(&self, value: &str, greedy: bool) -> Result<String, ExpandError> {
        let re = Pattern::regex(self.0.iter(), greedy, true)?;
        Ok(re.find(value).map_or(value, |m| &value[m.end()..]).to_string())
    }

    /// `${v%p}` / `${v%%p}`: a prefix trim of the reversed value by the reversed pattern, as BuildKit does
    /// (a leftmost search cannot find the shortest rightmost match directly).
    fn trim_suffix(&self, value: &str, greedy: bool) -> Result<String, ExpandError> {
        let re = Pattern::regex(self.0.iter().rev(), greedy, true)?;
        let reversed: String = value.chars().rev().collect();
        let kept = re.find(&reversed).map_or(reversed.as_str(), |m| &reversed[m.end()..]);
        Ok(kept.chars().rev().collect())
    }

    /// `${v/p/r}` replaces the leftmost match; `${v//p/r}` every one, with `$`-references in `r` expanded
    /// as Go's `ReplaceAllString` expands them (BuildKit passes `r` to it unchanged).
    fn replace(&self, value: &str, replacement: &str, all: bool) -> Result<String, ExpandError> {
        let re = Pattern::regex(self.0.iter(), true, false)?;
        if all {
            return Ok(re.replace_all(value, replacement).into_owned());
        }
        Ok(match re.find(value) {
            Some(m) => format!("{}{replacement}{}", &value[..m.start()], &value[m.end()..]),
            None => value.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn pattern_forms() {
        let vars = env(&[("p", "/usr/local/bin/tool.tar.gz")]);
        let x = Expander::new('\\');
        let cases = [
            ("${p#*/}", "usr/local/bin/tool.tar.gz"),
            ("${p##*/}", "tool.tar.gz"),
            ("${p%.*}", "/usr/local/bin/tool.tar"),
            ("${p%%.*}", "/usr/local/bin/tool"),
            ("${p/local/opt}", "/usr/opt/bin/tool.tar.gz"),
            ("${p//\\//_}", "_usr_local_bin_tool.tar.gz"),
            ("${p/#\\/usr/X}", "/usr/local/bin/tool.tar.gz"),
        ];
        for (word, want) in cases {
            assert_eq!(x.word(word, &vars).unwrap(), want, "{word}");
        }
    }

    /// What Go's `regexp` does in BuildKit: `*` and `?` stay within a line, an empty match right after a
    /// match is not replaced, and `$` in a replace-all replacement is a group reference (`$$` a dollar).
    #[test]
    fn patterns_match_as_the_reference_regexp_does() {
        let vars = env(&[("v", "a\nxb"), ("w", "abc"), ("d", "a-b-c"), ("dollars", "$$"), ("group", "$0")]);
        let x = Expander::new('\\');
        let cases = [
            ("${v#*x}", "a\nxb"),
            ("${v%?xb}", "a\nxb"),
            ("${v#a?}", "a\nxb"),
            ("${w//*/x}", "x"),
            ("${w//?/x}", "xxx"),
            ("${d//-/$dollars}", "a$b$c"),
            ("${d//-/$group$group}", "a--b--c"),
            ("${d/-/$group}", "a$0b-c"),
        ];
        for (word, want) in cases {
            assert_eq!(x.word(word, &vars).unwrap(), want, "{word}");
        }
    }

    /// BuildKit's TestProcessWithMatches pattern cases (shell/lex_test.go): `None` is an error.
    #[test]
    fn reference_pattern_cases() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: [Case; 26] = [
            (r"${FOO#()[]{\}^$.\*\?|\\}", &[("FOO", r"()[]{}^$.*?|\x")], Some("x")),
            (r"${FOO%%\**}", &[("FOO", "xx**")], Some("xx")),
            ("${FOO#*x*y}", &[("FOO", "xxyy")], Some("y")),
            ("${FOO#*}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], Some("xyy")),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "")], Some("xxyy")),
            ("${FOO#}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO##*x}", &[("FOO", "xxyy")], Some("yy")),
            ("${FOO##}", &[("FOO", "xxyy")], Some("xxyy")),
            (r"${FOO#?\?}", &[("FOO", "???y")], Some("?y")),
            ("${ABC:-.}${FOO%x}${ABC:-.}", &[("FOO", "xxyy")], Some(".xxyy.")),
            (r"${FOO%%\**\*}", &[("FOO", "a***yy*")], Some("a")),
            ("${FOO%}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO%%$BAR}", &[("FOO", "xxyy"), ("BAR", "")], Some("xxyy")),
            ("${FOO:#}", &[], None),
            ("${FOO:%%}", &[], None),
            (
                "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
                &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", r"\*/")],
                Some("/foo.*/*.txt - /foo..*.txt"),
            ),
            (
                "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
                &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
                Some("/tmp/bar.txt - /bar.txt"),
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
                &[("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("REPLACEMENT", "/")],
                Some("/foo/b/c.txt - /foo/c.txt"),
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT}",
                &[("FOO", "http://google.de"), ("NEEDLE", "http://"), ("REPLACEMENT", "https://")],
                Some("https://google.de"),
            ),
            (r"${FOO//\//\/}", &[("FOO", "/tmp/foo.txt")], Some(r"\/tmp\/foo.txt")),
            ("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")], Some("wwxxyy")),
            ("${FOO//ww}", &[("FOO", "xxyy")], None),
            ("${FOO//}", &[("FOO", "xxyy")], None),
            ("${FOO///}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO///}", &[], Some("")),
        ];
        let x = Expander::new('\\');
        for (word, vars, want) in cases {
            assert_eq!(x.word(word, &env(vars)).ok().as_deref(), want, "{word} with {vars:?}");
        }
    }

    /// A backtracking matcher takes 40^20 steps here; the expansion must finish (the fuzzer's timeout).
    #[test]
    fn many_stars_against_a_long_value_finish() {
        let vars = env(&[("v", &"a".repeat(40))]);
        let pattern = "*a".repeat(20) + "b";
        let x = Expander::new('\\');
        for op in ["#", "##", "%", "%%", "/", "//"] {
            let word =
                if op.starts_with('/') { format!("${{v{op}{pattern}/x}}") } else { format!("${{v{op}{pattern}}}") };
            assert_eq!(x.word(&word, &vars).unwrap(), "a".repeat(40), "{op}");
        }
    }

    #[test]
    fn heredoc_bodies_keep_quotes_and_process_escapes() {
        let vars = env(&[("NAME", "kiln")]);
        let body = "echo \"hi $NAME\" 'x' \\n\n";
        assert_eq!(Expander::new('\\').heredoc(body, &vars).unwrap(), "echo \"hi kiln\" 'x' n\n");
        // BuildKit's testCopyHeredocSpecialSymbols.
        for (body, expected) in [("\\\n", "\n"), ("\\\\\n", "\\\n"), ("\\$NAME\n", "$NAME\n")] {
            assert_eq!(Expander::new('`').heredoc(body, &vars).unwrap(), expected, "{body:?}");
        }
    }

    #[test]
    fn matches_report_only_set_variables() {
        let vars = env(&[("A", "1")]);
        let (s, m) = Expander::new('\\').word_with_matches("$A-$B", &vars).unwrap();
        assert_eq!(s, "1-");
        assert_eq!(m.into_iter().collect::<Vec<_>>(), ["A"]);
    }

    #[test]
    fn errors_name_the_problem() {
        let x = Expander::new('\\');
        assert!(x.word("${A:?must be set}", &env(&[])).unwrap_err().message.contains("A: must be set"));
        assert!(x.word("\"open", &env(&[])).is_err());
        assert!(x.word("${A", &env(&[])).unwrap_err().message.contains("missing '}'"));
    }

    /// Reads `ENV`-prefixed variable lines and `SOURCE | EXPECTED` cases of the reference's wordsTest.
    #[test]
    fn reference_words_test() {
        let Some(root) = super::super::conformance::data_dir() else { return };
        let text = std::fs::read_to_string(root.join("shell/wordsTest")).expect("wordsTest readable");
        let mut vars: Vec<(String, String)> = Vec::new();
        let mut failures = Vec::new();
        let mut count = 0;
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if let Some(def) = line.strip_prefix("ENV ") {
                let (k, v) = def.split_once('=').unwrap_or((def, ""));
                vars.push((k.to_string(), v.to_string()));
                continue;
            }
            let Some((source, expected)) = line.split_once('|') else { continue };
            // Only the left of EXPECTED is trimmed: trailing spaces are part of some expected words.
            let (source, expected) = (source.trim(), expected.trim_start_matches(' '));
            count += 1;
            let got = match Expander::new('\\').words(source, &vars) {
                Ok(words) => words.join(","),
                Err(_) => "error".to_string(),
            };
            if got != expected {
                failures.push(format!("{source:?}: want {expected:?}, got {got:?}"));
            }
        }
        assert!(count > 20, "only {count} cases read");
        assert!(failures.is_empty(), "{} of {count} cases differ:\n{}", failures.len(), failures.join("\n"));
    }

    #[test]
    fn reference_env_var_test() {
        let Some(root) = super::super::conformance::data_dir() else { return };
        let text = std::fs::read_to_string(root.join("shell/envVarTest")).expect("envVarTest readable");
        let vars = env(&[("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어"), ("NULL", "")]);
        let mut failures = Vec::new();
        let mut count = 0;
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let parts: Vec<&str> = line.splitn(3, '|').collect();
            let [platform, source, expected] = parts[..] else { continue };
            if !matches!(platform.trim(), "A" | "U") {
                continue;
            }
            let (source, expected) = (source.trim(), expected.trim());
            count += 1;
            let got = match Expander::new('\\').word(source, &vars) {
                Ok(s) => s,
                Err(_) => "error".to_string(),
            };
            if got != expected {
                failures.push(format!("{source:?}: want {expected:?}, got {got:?}"));
            }
        }
        assert!(count > 150, "only {count} cases read");
        assert!(failures.is_empty(), "{} of {count} cases differ:\n{}", failures.len(), failures.join("\n"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(word in ".{0,64}") {
            let vars = env(&[("A", "x y"), ("E", "")]);
            let x = Expander::new('\\');
            let _ = x.word(&word, &vars);
            let _ = x.words(&word, &vars);
        }
    }
}
