//! Build checks before a build: the Dockerfile's lint rules (`dockerfile::lint`) with the build's
//! arguments and platform, each finding reported as a warning; with `error=true` a finding fails the build
//! before any step runs. Knows nothing of images or the store.

use crate::build::BuildOptions;
use crate::build::error::BuildError;
use crate::build::events::{Event, Reporter};
use crate::dockerfile::Dockerfile;
use crate::dockerfile::lint::{self, Inputs, Report};
use crate::image::Platform;
use crate::plan::predefined::platform_args;

/// Runs the checks over a parsed Dockerfile with the build's arguments (`--check` prints the result).
pub fn report(parsed: &Dockerfile, options: &BuildOptions) -> Result<Report, BuildError> {
    let host = Platform::host();
    let target = options.target.clone().unwrap_or_default();
    let inputs = Inputs {
        build_args: options.build_args.clone(),
        predefined: platform_args(&host, &host, &target, &options.build_args),
    };
    Ok(lint::check(parsed, &inputs)?)
}

/// Reports every finding as a warning and a count; fails when `error=true` and there are findings.
pub fn run(parsed: &Dockerfile, options: &BuildOptions, reporter: &dyn Reporter) -> Result<(), BuildError> {
    let report = report(parsed, options)?;
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
