//! Rules on FROM lines and the global ARGs they use: undeclared arguments, a base name that is invalid
//! with the ARG defaults alone, `--platform=$TARGETPLATFORM` (redundant) and a constant `--platform`.
//! The global scope is built as BuildKit's `buildMetaArgs` does: predefined platform arguments, then each
//! global ARG in order, its default expanded with what came before, a `--build-arg` winning.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;

use super::super::Dockerfile;
use super::super::instruction::Command;
use super::super::node::go_quote;
use super::super::shell::{Expander, Expansion};
use super::rules::{
    FROM_PLATFORM_FLAG_CONST_DISALLOWED, INVALID_DEFAULT_ARG_IN_FROM, REDUNDANT_TARGET_PLATFORM, UNDEFINED_ARG_IN_FROM,
};
use super::stages::{Stages, span};
use super::{Inputs, Sink};

/// The global scope: variables with values, and every declared name (with or without a value).
pub(super) struct Scope {
    /// Names with values, in order (a later pair wins).
    pub(super) vars: Vec<(String, String)>,
    /// Every declared global ARG.
    pub(super) declared: BTreeSet<String>,
}

/// Runs the rules of this group.
pub fn run(df: &Dockerfile, stages: &Stages<'_>, inputs: &Inputs, sink: &mut Sink<'_>) {
    let expander = Expander::new(df.escape);
    invalid_defaults(df, stages, inputs, &expander, sink);
    let Some(scope) = global_scope(df, stages, inputs, Some(&inputs.build_args), &expander) else { return };
    let mut known: BTreeSet<String> = scope.declared.clone();
    known.extend(scope.vars.iter().map(|(k, _)| k.clone()));
    for stage in &stages.stages {
        let at = span(&df.instructions[stage.at]);
        if let Ok(name) = expander.word_with_lookups(&stage.from.image, &scope.vars) {
            undeclared(stage.at, &name, &known, at, sink);
        }
        let Some(platform) = &stage.from.platform else { continue };
        let Ok(found) = expander.word_with_lookups(platform, &scope.vars) else { continue };
        undeclared(stage.at, &found, &known, at, sink);
        redundant_target_platform(stage.at, platform, &found, &scope, at, sink);
        const_platform(stage.at, stage.from.name.as_deref().unwrap_or_default(), &found, at, sink);
    }
}

/// Builds the global scope; `None` when an ARG default does not expand (the build reports that itself).
pub(super) fn global_scope(
    df: &Dockerfile,
    stages: &Stages<'_>,
    inputs: &Inputs,
    build_args: Option<&BTreeMap<String, String>>,
    expander: &Expander,
) -> Option<Scope> {
    let mut scope = Scope { vars: inputs.predefined.clone(), declared: BTreeSet::new() };
    for &i in &stages.global {
        let Command::Arg(decls) = &df.instructions[i].command else { continue };
        for decl in decls {
            let value = match (build_args.and_then(|b| b.get(&decl.name)), &decl.default) {
                (Some(given), _) => Some(given.clone()),
                (None, Some(default)) => Some(expander.word(default, &scope.vars).ok()?),
                (None, None) => None,
            };
            if let Some(value) = value {
                scope.vars.push((decl.name.clone(), value));
            }
            scope.declared.insert(decl.name.clone());
        }
    }
    Some(scope)
}

/// UndefinedArgInFrom: a name the FROM line uses that is neither declared nor predefined.
fn undeclared(i: usize, found: &Expansion, known: &BTreeSet<String>, at: (usize, usize), sink: &mut Sink<'_>) {
    for name in found.unmatched.iter().filter(|n| !known.contains(*n)) {
        let hint = suggest(name, known).map(|s| format!(" (did you mean {s}?)")).unwrap_or_default();
        sink.add_for(i, &UNDEFINED_ARG_IN_FROM, at, format!("FROM argument '{name}' is not declared{hint}"));
    }
}

/// RedundantTargetPlatform: `--platform` is exactly `$TARGETPLATFORM` and nothing else was looked up.
fn redundant_target_platform(
    i: usize,
    written: &str,
    found: &Expansion,
    scope: &Scope,
    at: (usize, usize),
    sink: &mut Sink<'_>,
) {
    const TARGET: &str = "TARGETPLATFORM";
    if found.matched.len() != 1 || !found.unmatched.is_empty() || !found.matched.contains(TARGET) {
        return;
    }
    let value = scope.vars.iter().rev().find(|(k, _)| k == TARGET).map(|(_, v)| v.as_str());
    if value == Some(found.result.as_str()) {
        let message =
            format!("Setting platform to predefined {written} in FROM is redundant as this is the default behavior");
        sink.add_for(i, &REDUNDANT_TARGET_PLATFORM, at, message);
    }
}

/// FromPlatformFlagConstDisallowed: a literal `--platform`, unless the stage's name mentions its OS or
/// architecture (`AS build-arm64`), which marks a deliberate per-platform stage.
fn const_platform(i: usize, stage_name: &str, found: &Expansion, at: (usize, usize), sink: &mut Sink<'_>) {
    if !found.matched.is_empty() || !found.unmatched.is_empty() {
        return;
    }
    let Some((os, arch)) = parse_platform(&found.result) else { return };
    if stage_name.contains(&os) || stage_name.contains(&arch) {
        return;
    }
    let message = format!("FROM --platform flag should not use constant value {}", go_quote(&found.result));
    sink.add_for(i, &FROM_PLATFORM_FLAG_CONST_DISALLOWED, at, message);
}

/// InvalidDefaultArgInFrom: with the ARG defaults alone (no `--build-arg`), a base name is empty or not a
/// valid image reference.
fn invalid_defaults(df: &Dockerfile, stages: &Stages<'_>, inputs: &Inputs, expander: &Expander, sink: &mut Sink<'_>) {
    let Some(scope) = global_scope(df, stages, inputs, None, expander) else { return };
    for stage in &stages.stages {
        let Ok(name) = expander.word(&stage.from.image, &scope.vars) else { return };
        if !is_valid_reference(&name) {
            let message =
                format!("Default value for ARG {} results in empty or invalid base image name", stage.from.image);
            sink.add(&INVALID_DEFAULT_ARG_IN_FROM, span(&df.instructions[stage.at]), message);
        }
    }
}

/// The closest name within edit distance 2 (BuildKit's `suggest.Search`, case-sensitive); none on an
/// exact match.
pub(super) fn suggest<'a>(name: &str, options: impl IntoIterator<Item = &'a String>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for option in options {
        if option == name {
            return None;
        }
        let distance = strsim::levenshtein(name, option);
        if distance < best.map_or(3, |(d, _)| d) {
            best = Some((distance, option));
        }
    }
    best.map(|(_, o)| o)
}

/// Whether `name` is a valid image reference after Docker's normalisation (distribution/reference's
/// grammar: optional registry host, lower-case path components, tag, digest). Hand-written with a regex
/// because the front end must not depend on the image module, and only validity matters here.
pub(super) fn is_valid_reference(name: &str) -> bool {
    // Compiled once: the grammar takes milliseconds to compile, which every build would pay. Go's `\w` is
    // ASCII, so the tag class is spelled out; its 128-character limit is checked apart, since a counted
    // repetition multiplies the automaton.
    static GRAMMAR: LazyLock<Option<Regex>> = LazyLock::new(|| {
        let component = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
        let domain_part = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let domain = format!(r"(?:{domain_part}(?:\.{domain_part})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?");
        let tag = "[0-9A-Za-z_][0-9A-Za-z_.-]*";
        let digest = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
        Regex::new(&format!("^((?:{domain}/)?{component}(?:/{component})*)(?::({tag}))?(?:@{digest})?$")).ok()
    });
    let Some(grammar) = GRAMMAR.as_ref() else { return true };
    let Some(captures) = grammar.captures(name) else { return false };
    let repository = captures.get(1).map_or("", |m| m.as_str());
    let tag_fits = captures.get(2).is_none_or(|t| t.len() <= 128);
    let hex64 = name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    repository.len() <= 255 && tag_fits && !hex64
}

/// OS and architecture of a platform word as containerd's `platforms.Parse` normalises them; `None`
/// when it would not parse (the build reports that).
fn parse_platform(text: &str) -> Option<(String, String)> {
    const OSES: &[&str] =
        &["aix", "android", "darwin", "freebsd", "illumos", "ios", "linux", "netbsd", "openbsd", "solaris", "windows"];
    let parts: Vec<&str> = text.split('/').collect();
    let valid = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if parts.len() > 3 || !parts.iter().all(|p| valid(p)) {
        return None;
    }
    let os = |p: &str| match p.to_lowercase().as_str() {
        "macos" => "darwin".to_string(),
        other => other.to_string(),
    };
    let arch = |p: &str| match p.to_lowercase().as_str() {
        "i386" => "386".to_string(),
        "x86_64" | "x86-64" => "amd64".to_string(),
        "aarch64" => "arm64".to_string(),
        "armhf" | "armel" => "arm".to_string(),
        other => other.to_string(),
    };
    match parts.as_slice() {
        [one] if OSES.contains(&one.to_lowercase().as_str()) => Some((os(one), arch(std::env::consts::ARCH))),
        [one] => Some(("linux".to_string(), arch(one))),
        [o, a, ..] => Some((os(o), arch(a))),
        [] => None,
    }
}
