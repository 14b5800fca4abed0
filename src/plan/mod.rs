//! From typed instructions and build options to a plan: stages, their bases and dependencies, the stages
//! the target needs in an order where dependencies come first, and the global build arguments.
//!
//! Step arguments are expanded later, stage by stage, through [`StageScope`]: a stage's environment starts
//! with its base image's ENV, which is known only once the base has been pulled.

mod chmod;
mod epoch;
mod error;
mod health;
mod mount;
pub mod predefined;
mod render;
mod scope;

use std::collections::{BTreeMap, BTreeSet};

pub use chmod::{Chmod, ChmodError};
pub use epoch::Epoch;
pub use error::PlanError;
pub use health::{HealthcheckSpec, parse_go_duration};
pub use mount::{RunMount, RunMountKind, Sharing};
pub use render::render_dry_run;
pub use scope::{BaseConfig, CopyFrom, ResolvedCopy, ResolvedStep, StageScope};

use crate::dockerfile::instruction::{Command, Instruction, KeyValue, Span};
use crate::dockerfile::shell::Expander;
use crate::image::Platform;

/// The options that shape a plan.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `--build-arg` values (the CLI has resolved `--build-arg NAME` from the environment).
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--from`: replaces the base of the stage `from_rule` names.
    pub from_override: Option<String>,
    /// The platform built for (`TARGETPLATFORM` ...); the host's when not given.
    pub platform: Option<Platform>,
    /// Which stage `from_override` applies to: the first (podman) or the last (OpenShift BuildConfigs).
    pub from_rule: FromRule,
    /// `ENV` pairs inserted after every FROM, as OpenShift does with a Docker strategy's `env`.
    pub stage_env: Vec<(String, String)>,
}

/// Which stage's base a `--from` override replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FromRule {
    /// The first stage (`podman build --from`, `buildah bud --from`).
    #[default]
    First,
    /// The last stage: OpenShift's Docker strategy replaces the last FROM of a multi-stage Dockerfile
    /// (openshift/builder `replaceLastFrom`), whatever it named, a stage included.
    Last,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`.
    Scratch,
    /// An image reference, after global-argument expansion.
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

/// One `FROM` block.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Position among the stages.
    pub index: usize,
    /// The `AS` name, lower-cased.
    pub name: Option<String>,
    /// What it starts from.
    pub base: Base,
    /// `--platform`, expanded.
    pub platform: Option<String>,
    /// The instructions after FROM.
    pub instructions: Vec<Instruction>,
    /// Stages it needs (base, `COPY --from`, `RUN --mount=from=`).
    pub deps: BTreeSet<usize>,
    /// The FROM line.
    pub span: Span,
    /// Depth in the dependency graph: stages of the same level do not depend on each other.
    pub level: usize,
}

impl Stage {
    /// The stage's name for messages: its `AS` name, else its index.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }
}

/// The resolved shape of a build.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The Dockerfile's name for messages.
    pub file: String,
    /// Its escape character.
    pub escape: char,
    /// Every stage, in file order.
    pub stages: Vec<Stage>,
    /// The stage whose result is the image.
    pub target: usize,
    /// The stages to build, dependencies first.
    pub order: Vec<usize>,
    /// Global ARGs (before the first FROM) with their values.
    pub global_args: BTreeMap<String, Option<String>>,
    /// The build arguments given.
    pub build_args: BTreeMap<String, String>,
    /// Warnings (unused build args, ...).
    pub warnings: Vec<String>,
    /// `SOURCE_DATE_EPOCH` from a build argument or a global ARG's default: the time of every history
    /// entry and of the image, or the remote source that gives it (see [`Plan::set_epoch`]).
    pub epoch: Option<Epoch>,
}

impl Plan {
    /// The expander for this Dockerfile.
    pub fn expander(&self) -> Expander {
        Expander::new(self.escape)
    }

    /// Names of the named stages, for messages.
    pub fn stage_names(&self) -> String {
        let names: Vec<String> = self.stages.iter().map(Stage::label).collect();
        names.join(", ")
    }
}

/// Plans a build: splits stages, resolves global ARGs and bases, finds dependencies and the order.
pub fn plan(instructions: &[Instruction], escape: char, file: &str, opts: &PlanOptions) -> Result<Plan, PlanError> {
    let expander = Expander::new(escape);
    let host = Platform::host();
    let target_platform = opts.platform.clone().unwrap_or_else(|| host.clone());
    let target_stage = opts.target.clone().unwrap_or_else(|| last_stage_name(instructions));
    let mut global_args: BTreeMap<String, Option<String>> =
        predefined::platform_args(&host, &target_platform, &target_stage, &opts.build_args)
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
    let mut stages: Vec<Stage> = Vec::new();
    let mut consumed: BTreeSet<String> = BTreeSet::new();
    for instruction in instructions {
        let line = instruction.span.start_line;
        match (&instruction.command, stages.last_mut()) {
            (Command::From(from), _) => {
                let values = global_values(&global_args);
                let expand = |word: &str| {
                    expander.word_with_matches(word, &values).map_err(|e| PlanError::at(file, line, e.message))
                };
                let (image, used) = expand(&from.image)?;
                consumed.extend(used);
                let platform = match &from.platform {
                    Some(p) => Some(expand(p)?.0),
                    None => None,
                };
                if image.is_empty() {
                    return Err(PlanError::at(file, line, format!("base name ({}) should not be blank", from.image)));
                }
                let index = stages.len();
                let base = base_of(&image, &stages);
                let deps = match base {
                    Base::Stage(i) => BTreeSet::from([i]),
                    _ => BTreeSet::new(),
                };
                stages.push(Stage {
                    index,
                    name: from.name.clone(),
                    base,
                    platform,
                    instructions: stage_env(&opts.stage_env, instruction.span),
                    deps,
                    span: instruction.span,
                    level: 0,
                });
            }
            (Command::Arg(decls), None) => {
                for decl in decls {
                    let value = match opts.build_args.get(&decl.name) {
                        Some(v) => {
                            consumed.insert(decl.name.clone());
                            Some(v.clone())
                        }
                        None => match &decl.default {
                            Some(d) => Some(
                                expander
                                    .word(d, &global_values(&global_args))
                                    .map_err(|e| PlanError::at(file, line, e.message))?,
                            ),
                            // A bare ARG keeps what the name already has (a predefined argument's value).
                            None => global_args.get(&decl.name).cloned().flatten(),
                        },
                    };
                    global_args.insert(decl.name.clone(), value);
                }
            }
            (_, None) => {
                return Err(PlanError::at(
                    file,
                    line,
                    format!("{} before the first FROM: only ARG may come before FROM", instruction.command.keyword()),
                ));
            }
            (_, Some(stage)) => stage.instructions.push(instruction.clone()),
        }
    }
    if stages.is_empty() {
        return Err(PlanError::at(file, 0, "dockerfile contains no stages to build (a Dockerfile needs a FROM)"));
    }
    if let Some(from) = &opts.from_override {
        let index = match opts.from_rule {
            FromRule::First => 0,
            FromRule::Last => stages.len() - 1,
        };
        stages[index].base = if from == "scratch" { Base::Scratch } else { Base::Image(from.clone()) };
        stages[index].deps.clear();
    }
    let names: Vec<Option<String>> = stages.iter().map(|s| s.name.clone()).collect();
    for i in 0..stages.len() {
        let extra = step_deps(&stages[i], &stages, &names, file)?;
        stages[i].deps.extend(extra);
    }
    let target = match &opts.target {
        None => stages.len() - 1,
        Some(t) => {
            let t = t.to_lowercase();
            // A name defined twice (a DuplicateStageName warning) means its last stage, as in BuildKit.
            stages.iter().rposition(|s| s.name.as_deref() == Some(t.as_str())).ok_or_else(|| {
                let names: Vec<String> = stages.iter().map(Stage::label).collect();
                let near = stages
                    .iter()
                    .filter_map(|s| s.name.as_deref())
                    .map(|n| (strsim::damerau_levenshtein(n, &t), n))
                    .filter(|(d, _)| *d <= 2)
                    .min()
                    .map(|(_, n)| format!(" (did you mean {n}?)"))
                    .unwrap_or_default();
                PlanError::at(
                    file,
                    0,
                    format!("target stage {t:?} could not be found{near} (stages: {})", names.join(", ")),
                )
            })?
        }
    };
    let order = order_and_levels(&mut stages, target);
    for &i in &order {
        for instruction in &stages[i].instructions {
            if let Command::Arg(decls) = &instruction.command {
                consumed.extend(decls.iter().map(|d| d.name.clone()));
            }
        }
    }
    let unused: Vec<&String> = opts
        .build_args
        .keys()
        .filter(|k| !consumed.contains(*k) && !global_args.contains_key(*k) && !predefined::is_predefined(k))
        .collect();
    let mut warnings = Vec::new();
    if !unused.is_empty() {
        let list: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
        warnings.push(format!("one or more build-args [{}] were not consumed", list.join(" ")));
    }
    let epoch =
        epoch::resolve(&opts.build_args, &global_args, &stages, &expander).map_err(|e| PlanError::at(file, 0, e))?;
    let mut build_args = opts.build_args.clone();
    if let Some(Epoch::Fixed(seconds)) = epoch {
        // `ARG SOURCE_DATE_EPOCH` lines see it normalised, as in BuildKit.
        global_args.insert("SOURCE_DATE_EPOCH".to_string(), Some(seconds.to_string()));
        build_args.entry("SOURCE_DATE_EPOCH".to_string()).and_modify(|v| *v = seconds.to_string());
    }
    Ok(Plan { file: file.to_string(), escape, stages, target, order, global_args, build_args, warnings, epoch })
}

/// The name of the last stage (`TARGETSTAGE` when no `--target` is given), empty when unnamed.
fn last_stage_name(instructions: &[Instruction]) -> String {
    instructions
        .iter()
        .rev()
        .find_map(|i| match &i.command {
            Command::From(f) => Some(f.name.clone().unwrap_or_default()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The `ENV` instruction inserted after a FROM for `pairs` (none when empty). Values are double-quoted
/// words, so `$VAR` still expands, as in the `ENV "K"="V"` line OpenShift writes.
fn stage_env(pairs: &[(String, String)], span: Span) -> Vec<Instruction> {
    if pairs.is_empty() {
        return Vec::new();
    }
    let quote = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    let kvs: Vec<KeyValue> = pairs.iter().map(|(k, v)| KeyValue { key: k.clone(), value: quote(v) }).collect();
    let original = kvs.iter().map(|kv| format!("{}={}", kv.key, kv.value)).collect::<Vec<_>>().join(" ");
    vec![Instruction { command: Command::Env(kvs), span, original: format!("ENV {original}") }]
}

fn global_values(args: &BTreeMap<String, Option<String>>) -> BTreeMap<String, String> {
    args.iter().filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))).collect()
}

fn base_of(image: &str, earlier: &[Stage]) -> Base {
    let lower = image.to_lowercase();
    // The latest stage of that name so far: a later stage may take a name again (BuildKit warns).
    if let Some(stage) = earlier.iter().rev().find(|s| s.name.as_deref() == Some(lower.as_str())) {
        return Base::Stage(stage.index);
    }
    if lower == "scratch" { Base::Scratch } else { Base::Image(image.to_string()) }
}

/// Resolves a `--from` value against the stages before `current`: a name, an index, or else an image.
/// A name means the last stage of that name in the whole file (BuildKit resolves `--from` once all stages
/// are known), which must come before `current`.
pub fn resolve_from(value: &str, current: usize, names: &[Option<String>]) -> Result<CopyFrom, String> {
    let lower = value.to_lowercase();
    if let Some(i) = names.iter().rposition(|n| n.as_deref() == Some(lower.as_str()))
        && i < current
    {
        return Ok(CopyFrom::Stage(i));
    }
    if let Ok(i) = value.parse::<usize>() {
        if i < current {
            return Ok(CopyFrom::Stage(i));
        }
        return Err(format!("invalid stage index {i}: only earlier stages (0..{current}) can be used"));
    }
    if names.iter().any(|n| n.as_deref() == Some(lower.as_str())) {
        let current = names.get(current).cloned().flatten().unwrap_or_else(|| format!("stage-{current}"));
        return Err(format!(
            "cannot copy from stage {value:?}, it needs to be defined before current stage {current:?}"
        ));
    }
    Ok(CopyFrom::Image(value.to_string()))
}

/// Stages that steps of `stage` read from (`COPY --from`, `RUN --mount=from=`), and those the ONBUILD
/// triggers of a base stage read from, which run in this stage.
fn step_deps(
    stage: &Stage,
    stages: &[Stage],
    names: &[Option<String>],
    file: &str,
) -> Result<BTreeSet<usize>, PlanError> {
    let own = stage.instructions.iter();
    let triggers = match stage.base {
        Base::Stage(b) => stages[b]
            .instructions
            .iter()
            .filter_map(|i| match &i.command {
                Command::Onbuild(inner) => Some(inner.as_ref()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut deps = BTreeSet::new();
    for instruction in own.chain(triggers) {
        let line = instruction.span.start_line;
        for word in from_words(instruction).map_err(|e| PlanError::at(file, line, e))? {
            if let CopyFrom::Stage(i) =
                resolve_from(&word, stage.index, names).map_err(|e| PlanError::at(file, line, e))?
            {
                deps.insert(i);
            }
        }
    }
    Ok(deps)
}

/// The `--from` of a COPY and the `from=` of each RUN mount, as written: BuildKit plans stage dependencies
/// before any step runs, so it refuses variables there (with these messages).
pub fn from_words(instruction: &Instruction) -> Result<Vec<String>, String> {
    match &instruction.command {
        Command::Copy(c) => match &c.from {
            Some(from) => {
                let none: BTreeMap<String, String> = BTreeMap::new();
                let expanded = Expander::new('\\').word(from, &none).map_err(|e| e.message)?;
                if expanded != *from {
                    return Err("variable expansion is not supported for --from, define a new stage with FROM using \
                                ARG from global scope as a workaround"
                        .to_string());
                }
                Ok(vec![from.clone()])
            }
            None => Ok(Vec::new()),
        },
        Command::Run(r) => {
            let mut out = Vec::new();
            for m in &r.mounts {
                out.extend(mount::from_unexpanded(m).map_err(|e| format!("--mount {m}: {e}"))?);
            }
            Ok(out)
        }
        _ => Ok(Vec::new()),
    }
}

/// The needed stages in dependency order, with each one's level set.
fn order_and_levels(stages: &mut [Stage], target: usize) -> Vec<usize> {
    let order = needed_order(stages, target);
    for &i in &order {
        let level = stages[i].deps.iter().map(|d| stages[*d].level + 1).max().unwrap_or(0);
        stages[i].level = level;
    }
    order
}

impl Plan {
    /// The epoch in seconds, once known (a remote source's is set by [`Plan::set_epoch`]).
    pub fn source_date_epoch(&self) -> Option<i64> {
        match self.epoch {
            Some(Epoch::Fixed(seconds)) => Some(seconds),
            _ => None,
        }
    }

    /// Records the epoch a remote source gave (`None`: it gave none, and the build has no epoch), where
    /// `ARG SOURCE_DATE_EPOCH` lines see it.
    pub fn set_epoch(&mut self, seconds: Option<i64>) {
        self.epoch = seconds.map(Epoch::Fixed);
        let value = seconds.map(|s| s.to_string());
        self.global_args.insert("SOURCE_DATE_EPOCH".to_string(), value.clone());
        match value {
            Some(v) => self.build_args.insert("SOURCE_DATE_EPOCH".to_string(), v),
            None => self.build_args.remove("SOURCE_DATE_EPOCH"),
        };
    }

    /// Adds the stages that `stage`'s base-image ONBUILD `triggers` read from (known only once the base is
    /// pulled) and orders the build again; true when that adds a dependency.
    pub fn add_trigger_deps(&mut self, stage: usize, triggers: &[Instruction]) -> Result<bool, PlanError> {
        let names: Vec<Option<String>> = self.stages.iter().map(|s| s.name.clone()).collect();
        let line = self.stages[stage].span.start_line;
        let mut added = false;
        for trigger in triggers {
            for word in from_words(trigger).map_err(|e| PlanError::at(&self.file, line, e))? {
                let from = resolve_from(&word, stage, &names).map_err(|e| PlanError::at(&self.file, line, e))?;
                if let CopyFrom::Stage(i) = from {
                    added |= self.stages[stage].deps.insert(i);
                }
            }
        }
        if added {
            self.order = order_and_levels(&mut self.stages, self.target);
        }
        Ok(added)
    }
}

/// The stages `target` needs, dependencies first, in file order where there is a choice.
fn needed_order(stages: &[Stage], target: usize) -> Vec<usize> {
    fn visit(stages: &[Stage], i: usize, seen: &mut BTreeSet<usize>, out: &mut Vec<usize>) {
        if !seen.insert(i) {
            return;
        }
        for &d in &stages[i].deps {
            visit(stages, d, seen, out);
        }
        out.push(i);
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    visit(stages, target, &mut seen, &mut out);
    out
}

#[cfg(test)]
mod tests;
