//! From text to the node tree: parser directives at the top, physical lines joined into logical lines
//! (escape-character continuations, comment and blank lines inside them), heredoc bodies, and one node per
//! instruction with its line span — BuildKit's `parser.Parse`, line for line in behaviour.

use super::args::{node_from_line, parse_words};
use super::error::{ParseError, Problem, Warning};
use super::node::{Node, RawHeredoc};

/// The node tree of a Dockerfile plus what the directives set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTree {
    /// One node per instruction, in order.
    pub nodes: Vec<Node>,
    /// The escape character (`\` or `` ` `` from `# escape=`).
    pub escape: char,
    /// The `# syntax=` directive's value, recorded and otherwise ignored.
    pub syntax: Option<String>,
    /// The `# check=` directive's value (build-check options), for the lint module.
    pub check: Option<String>,
    /// Accepted oddities worth telling.
    pub warnings: Vec<Warning>,
}

/// Parser directives seen so far; only lines before the first non-directive line can be directives.
struct Directives {
    escape: char,
    syntax: Option<String>,
    check: Option<String>,
    done: bool,
    seen: Vec<String>,
}

impl Directives {
    /// Checks whether `line` is a directive and applies it; true when it was one.
    fn check(&mut self, line: &str) -> Result<bool, Problem> {
        if self.done {
            return Ok(false);
        }
        let Some((key, value)) = directive(line) else {
            self.done = true;
            return Ok(false);
        };
        let key = key.to_lowercase();
        if !matches!(key.as_str(), "escape" | "syntax" | "check") {
            self.done = true;
            return Ok(false);
        }
        if self.seen.contains(&key) {
            return Err(format!("only one {key} parser directive can be used").into());
        }
        self.seen.push(key.clone());
        match key.as_str() {
            "escape" => match value {
                "`" => self.escape = '`',
                "\\" => self.escape = '\\',
                other => return Err(format!("invalid escape token '{other}' does not match ` or \\").into()),
            },
            "syntax" => self.syntax = Some(value.to_string()),
            _ => self.check = Some(value.to_string()),
        }
        Ok(true)
    }
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` without a regex engine.
fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let key_len = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
    let key = &rest[..key_len];
    if !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[key_len..].trim_start().strip_prefix('=')?.trim();
    (!value.is_empty()).then_some((key, value))
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    trim_newline(line).trim_start().starts_with('#')
}

/// Removes a trailing continuation character (the escape, maybe followed by blanks) unless it is itself
/// escaped; returns the line and whether the logical line ends here.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else { return (line.to_string(), true) };
    if before.is_empty() {
        return (String::new(), false);
    }
    if before.ends_with(escape) {
        return (line.to_string(), true);
    }
    (before.to_string(), false)
}

/// Parses text into the node tree; errors and warnings name `file` and the line.
pub fn parse_nodes(source: &str, file: &str) -> Result<NodeTree, ParseError> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let mut lines = source.split_inclusive('\n').peekable();
    let mut d = Directives { escape: '\\', syntax: None, check: None, done: false, seen: Vec::new() };
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut current = 0usize;
    // Comment lines since the last instruction (BuildKit's `PrevComment`): a bare `#` starts afresh.
    let mut comments: Vec<String> = Vec::new();
    while let Some(raw) = lines.next() {
        current += 1;
        let token = trim_newline(raw).trim_start();
        let was_directive = d.check(token).map_err(|p| p.at(file, current))?;
        if let Some(comment) = token.strip_prefix('#').filter(|_| !was_directive) {
            match comment.trim() {
                "" => comments.clear(),
                text => comments.push(text.to_string()),
            }
        }
        let token = if token.starts_with('#') { "" } else { token };
        let start = current;
        let (mut line, mut end_of_line) = trim_continuation(token, d.escape);
        if end_of_line && line.is_empty() {
            continue;
        }
        let mut empty_continuation = false;
        while !end_of_line {
            let Some(raw) = lines.next() else { break };
            current += 1;
            let token = trim_newline(raw);
            d.check(token).map_err(|p| p.at(file, current))?;
            if is_comment(raw) {
                continue;
            }
            if token.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (more, eol) = trim_continuation(token, d.escape);
            line.push_str(&more);
            end_of_line = eol;
        }
        // BuildKit places the build check at the line where the logical line ends.
        let empty_continuation_at = empty_continuation.then_some(current);
        if empty_continuation {
            warnings.push(Warning {
                file: file.to_string(),
                line: start,
                message: "empty continuation line found (it will become an error in a future release)".into(),
            });
        }
        let mut node = node_from_line(&line, d.escape).map_err(|p| p.at(file, start))?;
        if can_contain_heredoc(&node) {
            for mut doc in heredocs_in(&line) {
                let mut terminated = false;
                for raw in lines.by_ref() {
                    current += 1;
                    let candidate = trim_newline(raw);
                    let candidate = if doc.chomp { candidate.trim_start_matches('\t') } else { candidate };
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(raw);
                }
                if !terminated {
                    return Err(Problem::from(format!("unterminated heredoc {:?}", doc.name)).at(file, start));
                }
                node.heredocs.push(doc);
            }
        }
        node.start_line = start;
        node.end_line = current;
        node.empty_continuation_at = empty_continuation_at;
        node.comments = std::mem::take(&mut comments);
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(Problem::from("file with no instructions").at(file, current));
    }
    Ok(NodeTree { nodes, escape: d.escape, syntax: d.syntax, check: d.check, warnings })
}

/// RUN, COPY and ADD in shell form (also as an ONBUILD trigger) may carry heredocs.
fn can_contain_heredoc(node: &Node) -> bool {
    let inner = match (&node.keyword[..], &node.sub) {
        ("onbuild", Some(sub)) => sub,
        _ => node,
    };
    matches!(inner.keyword.as_str(), "run" | "copy" | "add") && !inner.json
}

/// The heredoc words of a line (`<<EOF`, `<<-"EOF"`, `3<<EOF`), in order.
fn heredocs_in(line: &str) -> Vec<RawHeredoc> {
    parse_words(line, '\\').iter().filter_map(|w| heredoc_word(w)).collect()
}

/// Parses one word as `^(\d*)<<(-?)([^<]*)$`.
fn heredoc_word(word: &str) -> Option<RawHeredoc> {
    let digits = word.find(|c: char| !c.is_ascii_digit()).unwrap_or(word.len());
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let name = unquote(rest);
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let expand = name == rest;
    Some(RawHeredoc { name, content: String::new(), expand, chomp })
}

/// Removes shell quoting (quotes, and backslash escapes outside single quotes) from a word.
fn unquote(word: &str) -> String {
    let mut out = String::new();
    let mut chars = word.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => out.push(c),
            (_, '\\') => out.extend(chars.next()),
            (_, c) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(src: &str) -> Vec<Node> {
        parse_nodes(src, "Dockerfile").unwrap().nodes
    }

    #[test]
    fn continuations_skip_comments_and_blank_lines() {
        let n = nodes("FROM x\nRUN a \\\n# note\n\n  b\n");
        assert_eq!(n[1].args, ["a   b"]);
        assert_eq!((n[1].start_line, n[1].end_line), (2, 5));
    }

    #[test]
    fn directives_only_at_the_top() {
        let t = parse_nodes("# escape=`\nFROM x\nRUN a `\n b\n", "D").unwrap();
        assert_eq!(t.escape, '`');
        assert_eq!(t.nodes[1].args, ["a  b"]);
        let t = parse_nodes("# hello\n# escape=`\nFROM x\n", "D").unwrap();
        assert_eq!(t.escape, '\\');
        assert!(parse_nodes("# escape=x\nFROM x\n", "D").unwrap_err().message.contains("invalid escape"));
    }

    #[test]
    fn heredocs_are_read_with_their_flags() {
        let n = nodes("FROM x\nRUN <<EOF cat <<-'END'\necho hi\nEOF\n\tdata\n\tEND\nRUN b\n");
        assert_eq!(n[1].heredocs.len(), 2);
        assert_eq!(n[1].heredocs[0].name, "EOF");
        assert!(n[1].heredocs[0].expand);
        assert_eq!(n[1].heredocs[0].content, "echo hi\n");
        assert!(n[1].heredocs[1].chomp && !n[1].heredocs[1].expand);
        assert_eq!(n[1].heredocs[1].content, "\tdata\n");
        assert_eq!((n[1].start_line, n[1].end_line), (2, 6));
        assert_eq!(n[2].start_line, 7);
    }

    #[test]
    fn unterminated_heredoc_names_its_line() {
        let e = parse_nodes("FROM x\nRUN <<EOF\nabc\n", "Dockerfile").unwrap_err();
        assert_eq!(e.to_string(), "Dockerfile:2: unterminated heredoc \"EOF\"");
    }

    #[test]
    fn crlf_and_bom_are_accepted() {
        let n = nodes("\u{feff}FROM x\r\nRUN a \\\r\n b\r\n");
        assert_eq!(n[0].args, ["x"]);
        assert_eq!(n[1].args, ["a  b"]);
    }

    #[test]
    fn empty_files_are_errors() {
        assert_eq!(parse_nodes("", "D").unwrap_err().message, "file with no instructions");
        assert_eq!(parse_nodes("# only\n\n", "D").unwrap_err().message, "file with no instructions");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = crate::dockerfile::parse(&text, "Dockerfile");
        }

        #[test]
        fn dockerfile_like_text_never_panics(
            text in r#"(FROM |RUN |COPY |ADD |ENV |ARG |ONBUILD |HEALTHCHECK |# escape=`\n|#|\\|`|<<EOF|<<-'E'|EOF|E|\[|\]|"|'| |\t|\r|\n|--x=|--|a|=|,){0,48}"#
        ) {
            let _ = crate::dockerfile::parse(&text, "Dockerfile");
        }
    }
}
