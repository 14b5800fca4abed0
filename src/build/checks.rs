//! Build checks before a build: the Dockerfile's lint rules (`dockerfile::lint`) with the build's
//! arguments and platform, each finding reported as a warning; with `error=true` a finding fails the build
//! before any step runs. Two passes, as BuildKit splits them: the file-wide rules before planning (so
//! they are told even when planning fails), the dispatch-time rules once the plan says which stages run and
//! the base images' env is known (UndefinedVar needs it). Knows nothing of the store.

use std::collections::HashMap;

use crate::build::BuildOptions;
use crate::build::error::BuildError;
use crate::build::events::{Event, Reporter};
use crate::build::state::ImageState;
use crate::dockerfile::instruction::Command;
use crate::dockerfile::lint::{self, Bases, Inputs, Report};
use crate::dockerfile::{Dockerfile, ParseError, parse_nodes};
use crate::image::Platform;
use crate::plan::Plan;
use crate::plan::predefined::platform_args;

/// Runs the checks over a parsed Dockerfile with the build's arguments (`--check` prints the result).
pub fn report(parsed: &Dockerfile, options: &BuildOptions) -> Result<Report, BuildError> {
    Ok(lint::check(parsed, &inputs(options))?)
}

/// Reports the node-level findings before the instruction that did not parse (the parse error itself is
/// the caller's to return; `error=true` changes nothing here).
pub fn before_error(source: &str, error: &ParseError, options: &BuildOptions, reporter: &dyn Reporter) {
    let Ok(tree) = parse_nodes(source, &error.file) else { return };
    let report = lint::check_before_error(&tree, &error.file, error.line, &inputs(options));
    let _ = emit(&Report { error: false, ..report }, reporter);
}

/// `--check`: every rule over every stage without pulling anything; UndefinedVar judges only the stages
/// that start from scratch (or from such a stage), the others' base env being unknown.
pub fn report_without_images(parsed: &Dockerfile, options: &BuildOptions) -> Result<Report, BuildError> {
    let mut all = report(parsed, options)?;
    let stages = parsed.instructions.iter().filter(|i| matches!(i.command, Command::From(_))).count();
    let bases =
        Bases { stages: (0..stages).collect(), image_env: Default::default(), stage_env: options.stage_env.clone() };
    all.warnings.extend(lint::check_stages(parsed, &inputs(options), &bases)?.warnings);
    all.warnings.sort_by_key(|w| w.start_line);
    Ok(all)
}

/// What the checks know of the build: its arguments and the (host) platform's predefined arguments.
fn inputs(options: &BuildOptions) -> Inputs {
    let host = Platform::host();
    let target = options.target.clone().unwrap_or_default();
    Inputs {
        build_args: options.build_args.clone(),
        predefined: platform_args(&host, &host, &target, &options.build_args),
    }
}

/// Reports every finding as a warning and a count; fails when `error=true` and there are findings.
pub fn run(parsed: &Dockerfile, options: &BuildOptions, reporter: &dyn Reporter) -> Result<(), BuildError> {
    emit(&report(parsed, options)?, reporter)
}

/// The dispatch-time rules, UndefinedVar among them, once the base images are resolved (it needs their env)
/// and before any step runs; only the stages the build runs are judged, as in BuildKit.
pub fn run_stages(
    parsed: &Dockerfile,
    options: &BuildOptions,
    plan: &Plan,
    bases: &HashMap<usize, ImageState>,
    reporter: &dyn Reporter,
) -> Result<(), BuildError> {
    let image_env = bases
        .iter()
        .map(|(&index, state)| {
            let env = state.config.config.env.iter().flatten();
            (
                index,
                env.map(|kv| kv.split_once('=').map_or((kv.clone(), String::new()), |(k, v)| (k.into(), v.into())))
                    .collect(),
            )
        })
        .collect();
    let lint_bases =
        Bases { stages: plan.order.iter().copied().collect(), image_env, stage_env: options.stage_env.clone() };
    emit(&lint::check_stages(parsed, &inputs(options), &lint_bases)?, reporter)
}

fn emit(report: &Report, reporter: &dyn Reporter) -> Result<(), BuildError> {
    for warning in &report.warnings {
        reporter.report(Event::Warning(warning.to_string()));
    }
    if !report.warnings.is_empty() {
        let n = report.warnings.len();
        reporter.report(Event::Info(format!("{n} build check warning{} found", if n == 1 { "" } else { "s" })));
    }
    match report.violation() {
        Some(message) => Err(BuildError::Checks(message)),
        None => Ok(()),
    }
}
