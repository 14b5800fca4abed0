//! Expanding one stage's steps in order: the ARG/ENV scope as the reference defines it, and each
//! instruction's arguments after expansion.
//!
//! Precedence: an ENV always wins over an ARG of the same name; an ARG inside a stage takes the
//! `--build-arg` value, else its default, else the global ARG's value when it re-declares one. ARG values
//! reach RUN steps but never the image config. RUN, CMD and ENTRYPOINT text is not expanded by the
//! builder (the shell does it); exec form never is.

use std::collections::BTreeMap;

use super::chmod::Chmod;
use super::health::{self, HealthcheckSpec};
use super::mount::{self, RunMount};
use super::{Plan, PlanError, resolve_from};
use crate::dockerfile::instruction::{Command, CommandLine, CopyArgs, Heredoc, Instruction};
use crate::dockerfile::shell::{Expander, Vars};

/// Where `COPY --from` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFrom {
    /// An earlier stage.
    Stage(usize),
    /// An image reference.
    Image(String),
}

/// COPY/ADD arguments after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedCopy {
    /// Source paths (heredoc sources by name).
    pub sources: Vec<String>,
    /// Destination as written after expansion (relative to WORKDIR when not absolute).
    pub dest: String,
    /// `--from`.
    pub from: Option<CopyFrom>,
    /// `--chown` after expansion (names resolved by the builder through the image's files).
    pub chown: Option<String>,
    /// `--chmod`, octal or symbolic.
    pub chmod: Option<Chmod>,
    /// `--link`.
    pub link: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// `--parents`.
    pub parents: bool,
    /// ADD `--checksum`.
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// ADD `--unpack`.
    pub unpack: Option<bool>,
    /// Heredoc sources, bodies expanded unless the delimiter was quoted.
    pub heredocs: Vec<Heredoc>,
}

/// One step with its arguments resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedStep {
    /// RUN.
    Run {
        /// The command (never expanded by the builder).
        cmd: CommandLine,
        /// The SHELL in force.
        shell: Vec<String>,
        /// Parsed `--mount`s (their `from=` expanded).
        mounts: Vec<RunMount>,
        /// `--network`.
        network: Option<String>,
        /// `--security`.
        security: Option<String>,
        /// Heredoc bodies (the shell expands them).
        heredocs: Vec<Heredoc>,
        /// The environment the command sees: image ENV plus the build args in scope (proxies apart).
        env: Vec<(String, String)>,
        /// The stage's ARGs with their values, in declaration order: history shows them (`RUN |2 a=1 b=2`).
        args: Vec<(String, String)>,
    },
    /// COPY.
    Copy(ResolvedCopy),
    /// ADD.
    Add(ResolvedCopy),
    /// ENV pairs.
    Env(Vec<(String, String)>),
    /// LABEL pairs.
    Label(Vec<(String, String)>),
    /// EXPOSE ports.
    Expose(Vec<String>),
    /// WORKDIR, absolute and cleaned.
    Workdir(String),
    /// USER.
    User(String),
    /// VOLUME paths.
    Volume(Vec<String>),
    /// CMD.
    Cmd(CommandLine),
    /// ENTRYPOINT.
    Entrypoint(CommandLine),
    /// SHELL.
    Shell(Vec<String>),
    /// STOPSIGNAL.
    Stopsignal(String),
    /// HEALTHCHECK.
    Healthcheck(HealthcheckSpec),
    /// ONBUILD trigger text.
    Onbuild(String),
    /// MAINTAINER.
    Maintainer(String),
    /// ARG declarations with their values in this stage.
    Arg(Vec<(String, Option<String>)>),
}

/// What a stage inherits from its base image.
#[derive(Debug, Clone, Default)]
pub struct BaseConfig {
    /// The base image's ENV, in order.
    pub env: Vec<(String, String)>,
    /// The base image's SHELL, if it set one.
    pub shell: Option<Vec<String>>,
    /// The base image's WORKDIR, if it set one.
    pub workdir: Option<String>,
    /// When the base is an earlier stage: that stage's ARGs, which stay in scope (BuildKit keeps them in
    /// the stage's environment, not in the image config).
    pub args: Vec<(String, Option<String>)>,
}

/// The expansion state of one stage, advanced one instruction at a time.
#[derive(Debug, Clone)]
pub struct StageScope<'p> {
    plan: &'p Plan,
    stage: usize,
    expander: Expander,
    env: Vec<(String, String)>,
    args: Vec<(String, String)>,
    /// Every ARG declared (here or in a base stage), first position kept, last value kept.
    declared: Vec<(String, Option<String>)>,
    shell: Vec<String>,
    workdir: String,
}

/// ENV first, then ARGs: the reference's precedence.
struct Scope<'a> {
    env: &'a [(String, String)],
    args: &'a [(String, String)],
}

impl Vars for Scope<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.env.lookup(name).or_else(|| self.args.lookup(name))
    }
}

fn set(list: &mut Vec<(String, String)>, key: &str, value: String) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => list.push((key.to_string(), value)),
    }
}

impl<'p> StageScope<'p> {
    /// The scope at the start of stage `stage`, given what its base image set.
    pub fn new(plan: &'p Plan, stage: usize, base: &BaseConfig) -> StageScope<'p> {
        let args = base.args.iter().filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))).collect();
        StageScope {
            plan,
            stage,
            expander: plan.expander(),
            env: base.env.clone(),
            args,
            declared: base.args.clone(),
            shell: base.shell.clone().unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()]),
            workdir: base.workdir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".to_string()),
        }
    }

    /// Image ENV plus the ARGs in scope: what a RUN step sees (ENV wins on a clash).
    pub fn run_env(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> =
            self.args.iter().filter(|(k, _)| !self.env.iter().any(|(e, _)| e == k)).cloned().collect();
        out.extend(self.env.iter().cloned());
        out
    }

    /// The ENV that persists in the image config.
    pub fn image_env(&self) -> Vec<(String, String)> {
        self.env.clone()
    }

    /// The build arguments in scope (for cache keys).
    pub fn build_args_in_scope(&self) -> BTreeMap<String, String> {
        self.args.iter().cloned().collect()
    }

    /// Every ARG declared in this stage or its base stages, with its value: what a stage built on this
    /// one inherits.
    pub fn declared_args(&self) -> Vec<(String, Option<String>)> {
        self.declared.clone()
    }

    /// The declared ARGs with the values a RUN sees, for RUN's history line (BuildKit's
    /// `runCommandString`: the environment's value, else the declared one).
    fn history_args(&self) -> Vec<(String, String)> {
        let vars = Scope { env: &self.env, args: &self.args };
        self.declared
            .iter()
            .map(|(k, v)| (k.clone(), vars.lookup(k).map(str::to_string).or_else(|| v.clone()).unwrap_or_default()))
            .collect()
    }

    /// The SHELL in force.
    pub fn shell(&self) -> &[String] {
        &self.shell
    }

    /// The WORKDIR in force.
    pub fn workdir(&self) -> &str {
        &self.workdir
    }

    fn err(&self, instruction: &Instruction, message: impl std::fmt::Display) -> PlanError {
        PlanError::at(
            &self.plan.file,
            instruction.span.start_line,
            format!("{}: {message}", instruction.command.keyword()),
        )
    }

    fn word(&self, instruction: &Instruction, word: &str) -> Result<String, PlanError> {
        let vars = Scope { env: &self.env, args: &self.args };
        self.expander.word(word, &vars).map_err(|e| self.err(instruction, e))
    }

    fn opt_word(&self, instruction: &Instruction, word: &Option<String>) -> Result<Option<String>, PlanError> {
        word.as_ref().map(|w| self.word(instruction, w)).transpose()
    }

    /// Expands `instruction` with the scope before it, then applies its effect on the scope.
    pub fn resolve(&mut self, instruction: &Instruction) -> Result<ResolvedStep, PlanError> {
        let i = instruction;
        Ok(match &i.command {
            Command::From(_) => return Err(self.err(i, "FROM cannot appear inside a stage")),
            Command::Run(run) => {
                match run.security.as_deref() {
                    None | Some("sandbox") => {}
                    // kiln grants no entitlements: every step runs with Docker's default capabilities.
                    Some("insecure") => return Err(self.err(i, "entitlement security.insecure is not allowed")),
                    Some(other) => return Err(self.err(i, format!("security {other:?} is not valid"))),
                }
                let mut mounts = Vec::new();
                for m in &run.mounts {
                    // `from=` was checked when planning: it holds no variables.
                    mount::from_unexpanded(m).map_err(|e| self.err(i, format!("--mount {m}: {e}")))?;
                    let vars = Scope { env: &self.env, args: &self.args };
                    let mut expand = |v: &str| self.expander.word(v, &vars).map_err(|e| e.message);
                    let parsed =
                        mount::parse_expanded(m, &mut expand).map_err(|e| self.err(i, format!("--mount {m}: {e}")))?;
                    mounts.push(parsed);
                }
                ResolvedStep::Run {
                    cmd: run.cmd.clone(),
                    shell: self.shell.clone(),
                    mounts,
                    network: run.network.clone(),
                    security: run.security.clone(),
                    heredocs: run.heredocs.clone(),
                    env: self.run_env(),
                    args: self.history_args(),
                }
            }
            Command::Copy(c) => ResolvedStep::Copy(self.copy(i, c)?),
            Command::Add(c) => ResolvedStep::Add(self.copy(i, c)?),
            Command::Env(pairs) => {
                let mut resolved = Vec::new();
                for kv in pairs {
                    resolved.push((self.word(i, &kv.key)?, self.word(i, &kv.value)?));
                }
                for (k, v) in &resolved {
                    set(&mut self.env, k, v.clone());
                }
                ResolvedStep::Env(resolved)
            }
            Command::Label(pairs) => {
                let mut resolved = Vec::new();
                for kv in pairs {
                    resolved.push((self.word(i, &kv.key)?, self.word(i, &kv.value)?));
                }
                ResolvedStep::Label(resolved)
            }
            Command::Expose(ports) => {
                let vars = Scope { env: &self.env, args: &self.args };
                let mut out = Vec::new();
                // BuildKit sorts the words as written, before expanding them.
                let mut ports = ports.clone();
                ports.sort();
                for p in &ports {
                    out.extend(self.expander.words(p, &vars).map_err(|e| self.err(i, e))?);
                }
                ResolvedStep::Expose(out)
            }
            Command::Workdir(dir) => {
                let dir = self.word(i, dir)?;
                let joined = if dir.starts_with('/') { dir } else { format!("{}/{}", self.workdir, dir) };
                self.workdir = clean_abs(&joined);
                ResolvedStep::Workdir(self.workdir.clone())
            }
            Command::User(u) => ResolvedStep::User(self.word(i, u)?),
            Command::Volume(v) => {
                ResolvedStep::Volume(v.iter().map(|p| self.word(i, p)).collect::<Result<Vec<_>, _>>()?)
            }
            Command::Cmd(c) => ResolvedStep::Cmd(c.clone()),
            Command::Entrypoint(c) => ResolvedStep::Entrypoint(c.clone()),
            Command::Shell(s) => {
                self.shell = s.clone();
                ResolvedStep::Shell(s.clone())
            }
            Command::Stopsignal(s) => ResolvedStep::Stopsignal(self.word(i, s)?),
            Command::Healthcheck(h) => ResolvedStep::Healthcheck(health::resolve(h).map_err(|e| self.err(i, e))?),
            Command::Onbuild(inner) => ResolvedStep::Onbuild(trigger_text(inner)),
            Command::Maintainer(m) => ResolvedStep::Maintainer(m.clone()),
            Command::Arg(decls) => {
                let mut out = Vec::new();
                for d in decls {
                    let value = match self.plan.build_args.get(&d.name) {
                        Some(v) => Some(v.clone()),
                        None => match &d.default {
                            Some(default) => Some(self.word(i, default)?),
                            None => self.plan.global_args.get(&d.name).cloned().flatten(),
                        },
                    };
                    if let Some(v) = &value {
                        set(&mut self.args, &d.name, v.clone());
                    }
                    match self.declared.iter_mut().find(|(k, _)| *k == d.name) {
                        Some(entry) => entry.1 = value.clone(),
                        None => self.declared.push((d.name.clone(), value.clone())),
                    }
                    out.push((d.name.clone(), value));
                }
                ResolvedStep::Arg(out)
            }
        })
    }

    fn copy(&self, i: &Instruction, c: &CopyArgs) -> Result<ResolvedCopy, PlanError> {
        let vars = Scope { env: &self.env, args: &self.args };
        let names: Vec<Option<String>> = self.plan.stages.iter().map(|s| s.name.clone()).collect();
        // `--from` holds no variables (checked when planning), as in BuildKit.
        let from = match &c.from {
            Some(f) => Some(resolve_from(f, self.stage, &names).map_err(|e| self.err(i, e))?),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(m) => Some(Chmod::parse(&self.word(i, m)?).map_err(|e| self.err(i, e))?),
            None => None,
        };
        let mut heredocs = Vec::new();
        for doc in &c.heredocs {
            let content = if doc.expand {
                self.expander.heredoc(&doc.content, &vars).map_err(|e| self.err(i, e))?
            } else {
                doc.content.clone()
            };
            heredocs.push(Heredoc { content, ..doc.clone() });
        }
        let heredoc_names: Vec<&str> = c.heredocs.iter().map(|h| h.name.as_str()).collect();
        let sources = c
            .sources
            .iter()
            .map(|s| if heredoc_names.contains(&s.as_str()) { Ok(s.clone()) } else { self.word(i, s) })
            .collect::<Result<Vec<_>, _>>()?;
        if c.checksum.is_some() {
            // BuildKit's rules for ADD --checksum, checked before anything is fetched.
            if sources.len() != 1 {
                return Err(self.err(i, "checksum can't be specified for multiple sources"));
            }
            let remote = ["http://", "https://", "git@", "git://"];
            if !remote.iter().any(|p| sources[0].starts_with(p)) {
                return Err(self.err(i, "checksum requires HTTP(S) or Git sources"));
            }
        }
        Ok(ResolvedCopy {
            sources,
            dest: self.word(i, &c.dest)?,
            from,
            chown: self.opt_word(i, &c.chown)?,
            chmod,
            link: c.link,
            exclude: c.exclude.iter().map(|e| self.word(i, e)).collect::<Result<Vec<_>, _>>()?,
            parents: c.parents,
            checksum: self.opt_word(i, &c.checksum)?,
            keep_git_dir: c.keep_git_dir,
            unpack: c.unpack,
            heredocs,
        })
    }
}

/// An ONBUILD trigger as the image config records it: the instruction's text, then each heredoc body and
/// its terminator (BuildKit's `parseOnBuild`), so a child build parses the same instruction again.
fn trigger_text(inner: &Instruction) -> String {
    let heredocs = match &inner.command {
        Command::Run(r) => r.heredocs.as_slice(),
        Command::Copy(c) | Command::Add(c) => c.heredocs.as_slice(),
        _ => &[],
    };
    let mut text = inner.original.lines().next().unwrap_or_default().to_string();
    if heredocs.is_empty() {
        return inner.original.clone();
    }
    for doc in heredocs {
        text.push('\n');
        text.push_str(&doc.content);
        text.push_str(&doc.name);
    }
    text
}

/// An absolute, cleaned path (`/a/./b/../c` → `/a/c`).
fn clean_abs(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}
