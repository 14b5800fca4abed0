//! Splitting one logical line into keyword, flags and arguments, with the per-instruction rules of the
//! reference parser (BuildKit's `line_parsers.go`): name=value lists with their legacy `KEY value` form,
//! JSON arrays with the fall-back to shell form, whitespace lists, single strings, HEALTHCHECK's type word
//! and ONBUILD's nested instruction. Quotes are kept; expansion happens later.

use super::error::Problem;
use super::node::Node;

/// Whitespace as the reference's `[\t\v\f\r ]` class sees it.
fn is_ws(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Splits on runs of reference whitespace, at most `limit` pieces (0 = no limit), like Go's `Regexp.Split`.
fn split_ws(text: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        if limit != 0 && out.len() + 1 == limit {
            out.push(rest.to_string());
            return out;
        }
        match rest.find(is_ws) {
            Some(start) => {
                out.push(rest[..start].to_string());
                let after = &rest[start..];
                let len = after.find(|c| !is_ws(c)).unwrap_or(after.len());
                rest = &after[len..];
            }
            None => {
                out.push(rest.to_string());
                return out;
            }
        }
    }
}

/// Builds the node of one logical line: keyword, flags and arguments (heredocs are attached by the caller).
pub fn node_from_line(line: &str, escape: char) -> Result<Node, Problem> {
    let trimmed = line.trim_matches(is_ws);
    let mut parts = split_ws(trimmed, 2).into_iter();
    let keyword = parts.next().unwrap_or_default().to_lowercase();
    let (rest, flags) = match parts.next() {
        Some(rest) => extract_flags(&rest),
        None => (String::new(), Vec::new()),
    };
    let rest = rest.trim_matches(is_ws).to_string();
    let mut node = Node { keyword: keyword.clone(), flags, original: line.to_string(), ..Default::default() };
    match keyword.as_str() {
        "add" | "copy" | "volume" => maybe_json_to_list(&rest, &mut node)?,
        "arg" => node.args = parse_words(&rest, escape),
        "cmd" | "entrypoint" | "run" | "shell" => maybe_json(&rest, &mut node)?,
        "env" => name_val(&rest, "ENV", escape, &mut node)?,
        "label" => name_val(&rest, "LABEL", escape, &mut node)?,
        "expose" | "from" => node.args = whitespace_list(&rest),
        "healthcheck" => health_config(&rest, &mut node)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if !rest.is_empty() {
                node.args = vec![rest];
            }
        }
        "onbuild" => {
            if !rest.is_empty() {
                node.sub = Some(Box::new(node_from_line(&rest, escape)?));
            }
        }
        // Unknown keywords are kept here and rejected with a suggestion when typed.
        _ => node.args = vec![rest],
    }
    Ok(node)
}

/// Leading `--flag[=value]` words; a lone `--` ends them. Returns the rest of the line and the flags.
fn extract_flags(line: &str) -> (String, Vec<String>) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut quote = '\0';
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let mut phase = Phase::Spaces;
    let mut i = 0;
    loop {
        let at_end = i >= chars.len();
        let (pos, ch) = chars.get(i).copied().unwrap_or((line.len(), '\0'));
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            let next_is_dash = chars.get(i + 1).is_some_and(|(_, c)| *c == '-');
            if ch != '-' || !next_is_dash {
                return (line[pos..].to_string(), words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (line[pos..].to_string(), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                i += 1;
                continue;
            }
            if ch == '\\' {
                if i + 1 == chars.len() {
                    i += 1;
                    continue;
                }
                i += 1;
                word.push(chars[i].1);
                i += 1;
                continue;
            }
            word.push(ch);
            i += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
            i += 1;
            continue;
        }
        if ch == '\\' {
            if i + 1 == chars.len() {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            i += 1;
        }
        word.push(chars[i].1);
        i += 1;
    }
    (String::new(), words)
}

/// Words separated by white space, quotes and escapes kept (they are removed at expansion).
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut word = String::new();
    let mut i = 0;
    loop {
        let at_end = i >= chars.len();
        let ch = chars.get(i).copied().unwrap_or('\0');
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if i + 1 == chars.len() {
                    i += 1;
                    continue;
                }
                // An unquoted escape keeps itself and the next character, even a quote.
                word.push(ch);
                i += 1;
            }
            word.push(chars[i]);
            i += 1;
            continue;
        }
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if i + 1 == chars.len() {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            word.push(ch);
            i += 1;
        }
        word.push(chars[i]);
        i += 1;
    }
    words
}

/// ENV and LABEL: `k=v k2=v2` (each with sep `=`), or the legacy `k value with spaces` (sep empty).
fn name_val(rest: &str, keyword: &str, escape: char, node: &mut Node) -> Result<(), Problem> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else { return Ok(()) };
    if !first.contains('=') {
        let parts = split_ws(rest, 2);
        if parts.len() < 2 {
            return Err(format!("{keyword} must have two arguments").into());
        }
        node.args = vec![parts[0].clone(), parts[1].clone(), String::new()];
        return Ok(());
    }
    for word in &words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!("Syntax error - can't find = in {word:?}. Must be of the form: name=value").into());
        };
        node.args.extend([key.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(())
}

fn whitespace_list(rest: &str) -> Vec<String> {
    if rest.is_empty() { Vec::new() } else { split_ws(rest, 0) }
}

/// Outcome of trying a JSON array.
enum Json {
    Strings(Vec<String>),
    /// Not JSON at all: the caller falls back to shell form.
    NotJson,
}

fn parse_json(rest: &str) -> Result<Json, Problem> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(Json::NotJson);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else { return Ok(Json::NotJson) };
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        match value {
            serde_json::Value::String(s) => out.push(s),
            _ => return Err("when using JSON array syntax, arrays must be comprised of strings only".into()),
        }
    }
    Ok(Json::Strings(out))
}

fn maybe_json(rest: &str, node: &mut Node) -> Result<(), Problem> {
    if rest.is_empty() {
        return Ok(());
    }
    match parse_json(rest)? {
        Json::Strings(args) => {
            node.args = args;
            node.json = true;
        }
        Json::NotJson => node.args = vec![rest.to_string()],
    }
    Ok(())
}

fn maybe_json_to_list(rest: &str, node: &mut Node) -> Result<(), Problem> {
    match parse_json(rest)? {
        Json::Strings(args) => {
            node.args = args;
            node.json = true;
        }
        Json::NotJson => node.args = whitespace_list(rest),
    }
    Ok(())
}

/// HEALTHCHECK: a type word (`CMD`, `NONE`) then, like CMD, a JSON array or a shell string.
fn health_config(rest: &str, node: &mut Node) -> Result<(), Problem> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(());
    }
    let after = rest[sep..].trim_start();
    let mut cmd = Node::default();
    maybe_json(after, &mut cmd)?;
    node.args = std::iter::once(rest[..sep].to_string()).chain(cmd.args).collect();
    node.json = cmd.json;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_stop_at_the_first_non_flag_word_or_double_dash() {
        assert_eq!(extract_flags("--a=1 --b x y"), ("x y".to_string(), vec!["--a=1".into(), "--b".into()]));
        assert_eq!(extract_flags("--a -- --b"), (" --b".to_string(), vec!["--a".into()]));
        assert_eq!(extract_flags("--x=\"a b\" y"), ("y".to_string(), vec!["--x=a b".into()]));
        assert_eq!(extract_flags("-x y"), ("-x y".to_string(), vec![]));
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(parse_words(r#"a="b c" d\ e 'f\g'"#, '\\'), vec![r#"a="b c""#, r"d\ e", r"'f\g'"]);
    }

    #[test]
    fn legacy_and_modern_env_forms() {
        let n = node_from_line("ENV name value with spaces", '\\').unwrap();
        assert_eq!(n.args, ["name", "value with spaces", ""]);
        let n = node_from_line("ENV a=1 b=\"2 3\"", '\\').unwrap();
        assert_eq!(n.args, ["a", "1", "=", "b", "\"2 3\"", "="]);
        assert!(node_from_line("ENV PATH", '\\').is_err());
    }

    #[test]
    fn invalid_json_falls_back_to_shell_form_but_nested_json_is_an_error() {
        let n = node_from_line("CMD [\"a\", 'b']", '\\').unwrap();
        assert!(!n.json);
        assert_eq!(n.args, ["[\"a\", 'b']"]);
        assert!(node_from_line("CMD [ \"echo\", [ \"nested json\" ] ]", '\\').is_err());
    }
}
