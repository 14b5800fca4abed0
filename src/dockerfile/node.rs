//! The syntax tree as BuildKit's parser builds it, before any instruction-specific validation, and its
//! dump in the reference's test-data format: `(copy ["--from=x"] "a" "/b")`.

/// One heredoc attached to an instruction, body as read (leading tabs not yet removed for `<<-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHeredoc {
    /// The delimiter word with quotes removed.
    pub name: String,
    /// The body, each line with its newline.
    pub content: String,
    /// False when any part of the delimiter was quoted.
    pub expand: bool,
    /// `<<-`: strip leading tabs from the body and the terminator.
    pub chomp: bool,
}

/// One instruction line of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    /// The instruction keyword, lower-cased (`copy`).
    pub keyword: String,
    /// The argument words after the per-instruction splitting rules (quotes kept).
    pub args: Vec<String>,
    /// Flags before the arguments, as written (`--from=build`).
    pub flags: Vec<String>,
    /// Arguments came from a JSON array (exec form).
    pub json: bool,
    /// The nested instruction of ONBUILD.
    pub sub: Option<Box<Node>>,
    /// Heredoc bodies, in order.
    pub heredocs: Vec<RawHeredoc>,
    /// The logical line as joined from its physical lines.
    pub original: String,
    /// First physical line (1-based).
    pub start_line: usize,
    /// Last physical line (1-based).
    pub end_line: usize,
    /// The line where the logical line ended, when an empty continuation line was inside it (for the
    /// NoEmptyContinuation build check; not part of the dump).
    pub empty_continuation_at: Option<usize>,
    /// The comment lines before the instruction, `#` and blanks trimmed (per-instruction `# check=`
    /// options of the build checks; not part of the dump).
    pub comments: Vec<String>,
}

/// Dumps nodes in the reference's format: one `(...)` line per instruction.
pub fn dump(nodes: &[Node]) -> String {
    nodes.iter().map(|n| format!("({})\n", dump_node(n))).collect()
}

fn dump_node(node: &Node) -> String {
    let mut out = node.keyword.to_lowercase();
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|f| go_quote(f)).collect();
        out.push_str(&format!(" [{}]", flags.join(" ")));
    }
    for arg in &node.args {
        out.push(' ');
        out.push_str(&go_quote(arg));
    }
    if let Some(sub) = &node.sub {
        out.push_str(&format!(" ({})", dump_node(sub)));
    }
    out.trim().to_string()
}

/// Quotes like Go's `strconv.Quote`, which the reference's dump uses.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\u{0}\t♥"), r#""\x00\t♥""#);
        assert_eq!(go_quote("\u{a0}"), r#""\u00a0""#);
    }

    #[test]
    fn dumps_flags_args_and_onbuild() {
        let sub = Node { keyword: "run".into(), args: vec!["echo hi".into()], ..Default::default() };
        let node = Node {
            keyword: "onbuild".into(),
            flags: vec!["--x=1".into()],
            sub: Some(Box::new(sub)),
            ..Default::default()
        };
        assert_eq!(dump(&[node]), "(onbuild [\"--x=1\"] (run \"echo hi\"))\n");
    }
}
