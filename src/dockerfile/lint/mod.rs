//! Build checks: BuildKit's Dockerfile lint rules (frontend/dockerfile/linter), run over a parsed
//! Dockerfile and its build arguments before anything is built.
//!
//! Input: a [`Dockerfile`], the `--build-arg` values and the predefined platform arguments; for the
//! dispatch-time rules also which stages run and the env of their base images ([`Bases`]). Output: a
//! [`Report`] of [`Warning`]s (rule, message, file:line) and whether `error=true` turns them into a
//! failure. The options come from `# check=` or, replacing it whole, the `BUILDKIT_DOCKERFILE_CHECK`
//! build argument. Only rules decidable from the text are here; nothing about images, files or
//! registries is known (rules that need a base image's config or the context live elsewhere or not at all).

mod config;
mod from;
mod rules;
mod stage;
mod stages;
mod syntax;
mod vars;

use std::collections::BTreeMap;

use super::node::Node;
use super::{Dockerfile, NodeTree};

pub use config::{CHECK_BUILD_ARG, Config, ConfigError};
pub use rules::{ALL, Rule};
pub use vars::Bases;

/// One finding of a build check, as BuildKit reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The rule's name (`StageNameCasing`).
    pub rule: &'static str,
    /// What the rule is about, in one sentence.
    pub description: &'static str,
    /// The rule's documentation page.
    pub url: &'static str,
    /// The finding (`Stage name 'Build' should be lowercase`).
    pub message: String,
    /// The Dockerfile's name.
    pub file: String,
    /// First line of the offending instruction (1-based).
    pub start_line: usize,
    /// Last line of the offending instruction.
    pub end_line: usize,
}

impl std::fmt::Display for Warning {
    /// `StageNameCasing: Stage name 'Build' should be lowercase (Dockerfile:3)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({}:{})", self.rule, self.message, self.file, self.start_line)
    }
}

/// The findings of one run and what the configuration makes of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Every finding of an enabled rule, ordered by line.
    pub warnings: Vec<Warning>,
    /// `error=true`: any finding fails the build.
    pub error: bool,
}

impl Report {
    /// With `error=true` and findings: `lint violation found for rules: A (Dockerfile:2), B (Dockerfile:7)`
    /// (BuildKit's words, each rule once, at its first place).
    pub fn violation(&self) -> Option<String> {
        if !self.error || self.warnings.is_empty() {
            return None;
        }
        let mut first: BTreeMap<&str, &Warning> = BTreeMap::new();
        for w in &self.warnings {
            first.entry(w.rule).or_insert(w);
        }
        let rules: Vec<String> = first.values().map(|w| format!("{} ({}:{})", w.rule, w.file, w.start_line)).collect();
        Some(format!("lint violation found for rules: {}", rules.join(", ")))
    }
}

/// What the checks know besides the Dockerfile.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// The predefined platform arguments in force (`TARGETPLATFORM`, `BUILDARCH`, ...), with values.
    pub predefined: Vec<(String, String)>,
}

/// Runs the file-wide rules (BuildKit's parse-time ones and those on FROM lines, over every stage); the
/// configuration is `# check=` unless the `BUILDKIT_DOCKERFILE_CHECK` build argument replaces it.
pub fn check(df: &Dockerfile, inputs: &Inputs) -> Result<Report, ConfigError> {
    Ok(check_with(df, inputs, &config_of(df, inputs)?))
}

/// The options in force: `# check=` unless the build argument replaces it.
fn config_of(df: &Dockerfile, inputs: &Inputs) -> Result<Config, ConfigError> {
    Config::resolve(df.check.as_deref(), inputs.build_args.get(CHECK_BUILD_ARG).map(String::as_str))
}

/// Runs the file-wide rules `config` enables.
pub fn check_with(df: &Dockerfile, inputs: &Inputs, config: &Config) -> Report {
    let mut sink = Sink::new(df, config);
    let stages = stages::split(df);
    syntax::run(df, &stages, &mut sink);
    from::run(df, &stages, inputs, &mut sink);
    sink.report()
}

/// Runs the rules BuildKit applies while it dispatches a stage, on the stages the build runs
/// (`bases.stages`), UndefinedVar included, which needs the env of the images they start from; the options
/// are resolved as in [`check`].
pub fn check_stages(df: &Dockerfile, inputs: &Inputs, bases: &Bases) -> Result<Report, ConfigError> {
    let config = config_of(df, inputs)?;
    let mut sink = Sink::new(df, &config);
    let stages = stages::split(df);
    stage::run(df, &stages, &bases.stages, &mut sink);
    vars::run(df, &stages, inputs, bases, &mut sink);
    Ok(sink.report())
}

/// When `df` did not convert (an error at `error_line` of `file`): the node-level rules over the nodes up to
/// that line, as BuildKit tells them before its error (testWarningsBeforeError). Options that do not parse
/// give nothing: the conversion error is the one to tell.
pub fn check_before_error(tree: &NodeTree, file: &str, error_line: usize, inputs: &Inputs) -> Report {
    let build_arg = inputs.build_args.get(CHECK_BUILD_ARG).map(String::as_str);
    let Ok(config) = Config::resolve(tree.check.as_deref(), build_arg) else { return Report::default() };
    let upto = tree.nodes.iter().take_while(|n| n.start_line <= error_line).count();
    let mut sink = Sink::over(&tree.nodes[..upto], file, &config);
    syntax::node_rules(&tree.nodes[..upto], &mut sink);
    sink.report()
}

/// Collects findings of the rules the configuration enables.
struct Sink<'a> {
    /// The file's options.
    config: &'a Config,
    /// Each instruction's options (the file's plus its `# check=` comment).
    local: Vec<Config>,
    file: &'a str,
    warnings: Vec<Warning>,
}

impl<'a> Sink<'a> {
    fn new(df: &'a Dockerfile, config: &'a Config) -> Self {
        Sink::over(&df.nodes, &df.file, config)
    }

    fn over(nodes: &[Node], file: &'a str, config: &'a Config) -> Self {
        let local = nodes.iter().map(|n| config.with_comments(&n.comments)).collect();
        Sink { config, local, file, warnings: Vec::new() }
    }

    /// The findings by line, with the file's `error=`.
    fn report(self) -> Report {
        let mut warnings = self.warnings;
        warnings.sort_by_key(|w| w.start_line);
        Report { warnings, error: self.config.error }
    }

    /// Records a finding of a file-wide rule at lines `span` unless the file's options turn it off.
    fn add(&mut self, rule: &Rule, span: (usize, usize), message: String) {
        if self.config.enabled(rule) {
            self.push(rule, span, message);
        }
    }

    /// Records a finding about instruction `i` unless its options (with its comments) turn the rule off.
    fn add_for(&mut self, i: usize, rule: &Rule, span: (usize, usize), message: String) {
        if self.local.get(i).unwrap_or(self.config).enabled(rule) {
            self.push(rule, span, message);
        }
    }

    fn push(&mut self, rule: &Rule, span: (usize, usize), message: String) {
        self.warnings.push(Warning {
            rule: rule.name,
            description: rule.description,
            url: rule.url,
            message,
            file: self.file.to_string(),
            start_line: span.0,
            end_line: span.1,
        });
    }
}

#[cfg(test)]
mod tests;
