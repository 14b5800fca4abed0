//! Rules on how the Dockerfile is written, which BuildKit runs while parsing: keyword and stage-name
//! casing, stage names, empty continuation lines, MAINTAINER.

use std::collections::BTreeSet;

use super::super::Dockerfile;
use super::super::node::{Node, go_quote};
use super::Sink;
use super::rules::{
    CONSISTENT_INSTRUCTION_CASING, DUPLICATE_STAGE_NAME, FROM_AS_CASING, MAINTAINER_DEPRECATED, NO_EMPTY_CONTINUATION,
    RESERVED_STAGE_NAME, STAGE_NAME_CASING,
};
use super::stages::{Stages, keyword_as_written, span};

/// Stage names BuildKit reserves (`FROM scratch AS scratch` would shadow them).
const RESERVED: &[&str] = &["context", "scratch"];

/// Runs the rules of this group.
pub fn run(df: &Dockerfile, stages: &Stages<'_>, sink: &mut Sink<'_>) {
    node_rules(&df.nodes, sink);
    stage_names(df, stages, sink);
    command_casing(df, stages, sink);
}

/// The rules that need only the node tree (BuildKit runs them node by node while it converts, so they are
/// told even when a later instruction does not convert): empty continuations, MAINTAINER, FROM casing.
pub fn node_rules(nodes: &[Node], sink: &mut Sink<'_>) {
    for node in nodes {
        if let Some(line) = node.empty_continuation_at {
            sink.add(&NO_EMPTY_CONTINUATION, (line, line), "Empty continuation line".to_string());
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let at = (node.start_line, node.end_line);
        match node.keyword.as_str() {
            "maintainer" => {
                let message = "Maintainer instruction is deprecated in favor of using label".to_string();
                sink.add_for(i, &MAINTAINER_DEPRECATED, at, message);
            }
            "from" => from_casing(i, keyword_as_written(node), &node.args, at, sink),
            _ => {}
        }
    }
}

/// StageNameCasing and FromAsCasing on one `FROM image AS name` (arguments as written).
fn from_casing(i: usize, keyword: &str, args: &[String], at: (usize, usize), sink: &mut Sink<'_>) {
    let [_, as_word, name, ..] = args else { return };
    if args.len() == 3 && *name != name.to_lowercase() {
        sink.add_for(i, &STAGE_NAME_CASING, at, format!("Stage name '{name}' should be lowercase"));
    }
    // A keyword of mixed case is ConsistentInstructionCasing's business, not this rule's.
    let matches = if keyword == keyword.to_lowercase() {
        *as_word == as_word.to_lowercase()
    } else if keyword == keyword.to_uppercase() {
        *as_word == as_word.to_uppercase()
    } else {
        true
    };
    if !matches {
        sink.add_for(i, &FROM_AS_CASING, at, format!("'{as_word}' and '{keyword}' keywords' casing do not match"));
    }
}

/// DuplicateStageName and ReservedStageName.
fn stage_names(df: &Dockerfile, stages: &Stages<'_>, sink: &mut Sink<'_>) {
    let mut seen = BTreeSet::new();
    for stage in &stages.stages {
        let Some(name) = stage.from.name.as_deref() else { continue };
        let at = span(&df.instructions[stage.at]);
        if RESERVED.contains(&name) {
            sink.add(
                &RESERVED_STAGE_NAME,
                at,
                format!("Stage name should not use the same name as reserved stage {}", go_quote(name)),
            );
        }
        if !seen.insert(name) {
            sink.add(
                &DUPLICATE_STAGE_NAME,
                at,
                format!("Duplicate stage name {}, stage names should be unique", go_quote(name)),
            );
        }
    }
}

/// ConsistentInstructionCasing: every keyword in the stages (global ARGs are not counted) is all lower or
/// all upper case, and matches the majority; a tie counts as upper case, as in BuildKit.
fn command_casing(df: &Dockerfile, stages: &Stages<'_>, sink: &mut Sink<'_>) {
    let in_stages: Vec<usize> =
        stages.stages.iter().flat_map(|s| std::iter::once(s.at).chain(s.commands.iter().copied())).collect();
    let keywords: Vec<&str> = in_stages.iter().map(|&i| keyword_as_written(&df.nodes[i])).collect();
    let lower = keywords.iter().filter(|k| is_lower(k)).count();
    let upper = keywords.iter().filter(|k| !is_lower(k) && is_upper(k)).count();
    let majority_lower = lower > upper;
    for (&i, keyword) in in_stages.iter().zip(&keywords) {
        let wrong = if majority_lower { !is_lower(keyword) } else { !is_upper(keyword) };
        if wrong {
            let casing = if majority_lower { "lowercase" } else { "uppercase" };
            let message = format!("Command '{keyword}' should match the case of the command majority ({casing})");
            sink.add(&CONSISTENT_INSTRUCTION_CASING, span(&df.instructions[i]), message);
        }
    }
}

fn is_lower(word: &str) -> bool {
    word == word.to_lowercase()
}

fn is_upper(word: &str) -> bool {
    word == word.to_uppercase()
}
