//! UndefinedVar: a variable a stage's instruction expands that neither the stage's environment (its base's
//! env, ENV, ARGs with values) nor a declared ARG provides — BuildKit's `reportUnmatchedVariables`, run on
//! the words BuildKit expands at dispatch (ENV, LABEL, COPY/ADD flags, sources, destination and heredoc
//! bodies, WORKDIR, USER, VOLUME, STOPSIGNAL). A stage built on an image needs that image's env, which only
//! the build knows: the caller passes it, and a stage whose start is unknown is not judged. With the env at
//! hand, WORKDIR paths and EXPOSE words that use variables are judged here too, expanded (the literal ones
//! are `stage.rs`'s).

use std::collections::{BTreeMap, BTreeSet};

use super::super::Dockerfile;
use super::super::instruction::{Command, CopyArgs};
use super::super::node::go_quote;
use super::super::shell::{Expander, Expansion};
use super::from::{global_scope, suggest};
use super::rules::{UNDEFINED_VAR, WORKDIR_RELATIVE_PATH};
use super::stage::expose;
use super::stages::{Stages, span};
use super::{Inputs, Sink};

/// Build arguments BuildKit never puts in the environment, so never reports.
const NON_ENV_ARGS: &[&str] = &["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

/// What the build knows about where stages start.
#[derive(Debug, Clone, Default)]
pub struct Bases {
    /// The stages to judge (those the build runs); their parents come first.
    pub stages: BTreeSet<usize>,
    /// The env (`K`, `V`) of the image each image-based stage starts from.
    pub image_env: BTreeMap<usize, Vec<(String, String)>>,
    /// ENV pairs the build adds after every FROM (`--env`-like stage env).
    pub stage_env: Vec<(String, String)>,
}

/// The environment of a stage as dispatch goes.
struct Env {
    vars: Vec<(String, String)>,
    /// ARG names declared in the stage so far, with or without a value.
    args: BTreeSet<String>,
    /// A WORKDIR ran in this stage or the stage it builds on.
    workdir_set: bool,
}

/// Runs the rule over the stages `bases` names.
pub fn run(df: &Dockerfile, stages: &Stages<'_>, inputs: &Inputs, bases: &Bases, sink: &mut Sink<'_>) {
    let expander = Expander::new(df.escape);
    let globals = global_scope(df, stages, inputs, Some(&inputs.build_args), &expander).map(|s| s.vars);
    let globals = globals.unwrap_or_default();
    let mut finished: BTreeMap<usize, Env> = BTreeMap::new();
    for (index, stage) in stages.stages.iter().enumerate() {
        if !bases.stages.contains(&index) {
            continue;
        }
        // The build's word on an image base wins (it knows about `--from` overrides).
        let start = match (bases.image_env.get(&index), stage.parent) {
            (Some(vars), _) => Some((vars.clone(), false)),
            (None, Some(parent)) => finished.get(&parent).map(|e| (e.vars.clone(), e.workdir_set)),
            // BuildKit's empty image has the default PATH.
            (None, None) if stage.from.image.eq_ignore_ascii_case("scratch") => {
                Some((vec![("PATH".to_string(), default_path())], false))
            }
            (None, None) => None,
        };
        let Some((mut vars, workdir_set)) = start else { continue };
        vars.extend(bases.stage_env.iter().cloned());
        let mut env = Env { vars, args: BTreeSet::new(), workdir_set };
        for &i in &stage.commands {
            instruction(df, i, &expander, &mut env, inputs, &globals, sink);
        }
        finished.insert(index, env);
    }
}

fn default_path() -> String {
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()
}

/// Where a finding goes: the instruction's index and lines.
#[derive(Clone, Copy)]
struct Place {
    i: usize,
    at: (usize, usize),
}

fn instruction(
    df: &Dockerfile,
    i: usize,
    expander: &Expander,
    env: &mut Env,
    inputs: &Inputs,
    globals: &[(String, String)],
    sink: &mut Sink<'_>,
) {
    let place = Place { i, at: span(&df.instructions[i]) };
    let word = |w: &str, env: &Env, sink: &mut Sink<'_>| -> Option<String> {
        let found = expander.word_with_lookups(w, &env.vars).ok()?;
        report(place, &found, env, sink);
        Some(found.result)
    };
    match &df.instructions[i].command {
        Command::Env(pairs) => {
            let expanded: Vec<(String, String)> =
                pairs.iter().filter_map(|p| Some((word(&p.key, env, sink)?, word(&p.value, env, sink)?))).collect();
            env.vars.extend(expanded);
        }
        Command::Label(pairs) => {
            for p in pairs {
                word(&p.key, env, sink);
                word(&p.value, env, sink);
            }
        }
        Command::Add(c) | Command::Copy(c) => {
            for w in copy_words(c) {
                word(w, env, sink);
            }
            for doc in c.heredocs.iter().filter(|d| d.expand) {
                if let Ok(found) = expander.heredoc_with_lookups(&doc.content, &env.vars) {
                    report(place, &found, env, sink);
                }
            }
        }
        Command::Workdir(w) => {
            // Literal paths are `stage.rs`'s; one with variables is judged here, expanded, as BuildKit does.
            let path = word(w, env, sink);
            if let Some(path) = path.filter(|p| w.contains('$') && !env.workdir_set && !p.starts_with('/')) {
                let message = format!(
                    "Relative workdir {} can have unexpected results if the base image changes",
                    go_quote(&path)
                );
                sink.add_for(i, &WORKDIR_RELATIVE_PATH, place.at, message);
            }
            env.workdir_set = true;
        }
        Command::Expose(ports) => {
            // Expanded without UndefinedVar, as BuildKit's dispatchExpose does; literal words are `stage.rs`'s.
            for port in ports.iter().filter(|p| p.contains('$')) {
                if let Ok(port) = expander.word(port, &env.vars) {
                    expose(i, &port, place.at, sink);
                }
            }
        }
        Command::User(w) | Command::Stopsignal(w) => {
            word(w, env, sink);
        }
        Command::Volume(paths) => {
            for w in paths {
                word(w, env, sink);
            }
        }
        Command::Arg(decls) => {
            for decl in decls {
                let value = match (inputs.build_args.get(&decl.name), &decl.default) {
                    (Some(given), _) => Some(given.clone()),
                    (None, Some(default)) => word(default, env, sink),
                    (None, None) => globals.iter().rev().find(|(k, _)| *k == decl.name).map(|(_, v)| v.clone()),
                };
                if let Some(value) = value.filter(|_| !NON_ENV_ARGS.contains(&decl.name.as_str())) {
                    env.vars.push((decl.name.clone(), value));
                }
                env.args.insert(decl.name.clone());
            }
        }
        _ => {}
    }
}

/// Reports the names an expansion missed, except the stage's declared ARGs; suggests a close env name.
fn report(place: Place, found: &Expansion, env: &Env, sink: &mut Sink<'_>) {
    let keys: Vec<String> = env.vars.iter().map(|(k, _)| k.clone()).collect();
    for name in &found.unmatched {
        if env.args.contains(name) || NON_ENV_ARGS.contains(&name.as_str()) {
            continue;
        }
        let hint = suggest(name, &keys).map(|s| format!(" (did you mean ${s}?)")).unwrap_or_default();
        sink.add_for(place.i, &UNDEFINED_VAR, place.at, format!("Usage of undefined variable '${name}'{hint}"));
    }
}

/// The words BuildKit expands on COPY and ADD: flags, sources, destination.
fn copy_words(c: &CopyArgs) -> impl Iterator<Item = &String> {
    [&c.chown, &c.chmod, &c.checksum].into_iter().flatten().chain(&c.sources).chain(std::iter::once(&c.dest))
}
