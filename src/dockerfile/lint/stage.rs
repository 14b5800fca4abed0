//! Rules BuildKit runs while it dispatches a stage's instructions: shell-form CMD/ENTRYPOINT, repeated
//! CMD/ENTRYPOINT/HEALTHCHECK, legacy `ENV k v`, secret-looking ARG/ENV names, a relative first WORKDIR,
//! EXPOSE protocol casing and host mappings. A stage built on an earlier stage inherits that stage's SHELL
//! and WORKDIR state; a base image's config is not known here, so it counts as setting neither.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;

use super::super::Dockerfile;
use super::super::instruction::{Command, CommandLine};
use super::super::node::{Node, go_quote};
use super::Sink;
use super::rules::{
    EXPOSE_INVALID_FORMAT, EXPOSE_PROTO_CASING, JSON_ARGS_RECOMMENDED, LEGACY_KEY_VALUE_FORMAT,
    MULTIPLE_INSTRUCTIONS_DISALLOWED, SECRETS_USED_IN_ARG_OR_ENV, WORKDIR_RELATIVE_PATH,
};
use super::stages::{Stages, keyword_as_written, span};

/// What a stage has set so far, as far as these rules care.
#[derive(Debug, Clone, Copy, Default)]
struct State {
    shell_set: bool,
    workdir_set: bool,
}

/// Places of the last CMD, ENTRYPOINT and HEALTHCHECK of the stage being checked.
#[derive(Default)]
struct Last {
    cmd: Option<(usize, usize)>,
    entrypoint: Option<(usize, usize)>,
    healthcheck: Option<(usize, usize)>,
}

/// Runs the rules of this group over the stages in `judged` (a judged stage's parent is judged too: the
/// build needs it).
pub fn run(df: &Dockerfile, stages: &Stages<'_>, judged: &BTreeSet<usize>, sink: &mut Sink<'_>) {
    let mut states: BTreeMap<usize, State> = BTreeMap::new();
    for (index, stage) in stages.stages.iter().enumerate().filter(|(i, _)| judged.contains(i)) {
        let mut state = stage.parent.and_then(|p| states.get(&p).copied()).unwrap_or_default();
        let mut last = Last::default();
        for &i in &stage.commands {
            instruction(df, i, &mut state, &mut last, sink);
        }
        states.insert(index, state);
    }
}

fn instruction(df: &Dockerfile, i: usize, state: &mut State, last: &mut Last, sink: &mut Sink<'_>) {
    let (node, instruction) = (&df.nodes[i], &df.instructions[i]);
    let at = span(instruction);
    let name = keyword_as_written(node);
    match &instruction.command {
        Command::Cmd(line) | Command::Entrypoint(line) => {
            let slot =
                if matches!(instruction.command, Command::Cmd(_)) { &mut last.cmd } else { &mut last.entrypoint };
            used_once(i, name, slot, at, sink);
            if matches!(line, CommandLine::Shell(_)) && !state.shell_set {
                let message = format!(
                    "JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"
                );
                sink.add_for(i, &JSON_ARGS_RECOMMENDED, at, message);
            }
        }
        Command::Healthcheck(_) => used_once(i, name, &mut last.healthcheck, at, sink),
        Command::Shell(_) => state.shell_set = true,
        Command::Env(pairs) => {
            legacy_key_value(i, node, name, at, sink);
            for pair in pairs {
                SECRETS.check(i, "ENV", &pair.key, at, sink);
            }
        }
        Command::Label(_) => legacy_key_value(i, node, name, at, sink),
        Command::Arg(decls) => {
            for decl in decls {
                SECRETS.check(i, "ARG", &decl.name, at, sink);
            }
        }
        Command::Workdir(path) => {
            // A path with variables is judged in `vars.rs`, where the stage's env is known.
            if !state.workdir_set && !path.starts_with('/') && !path.contains('$') {
                let message = format!(
                    "Relative workdir {} can have unexpected results if the base image changes",
                    go_quote(path)
                );
                sink.add_for(i, &WORKDIR_RELATIVE_PATH, at, message);
            }
            state.workdir_set = true;
        }
        Command::Expose(ports) => {
            // Words with variables are judged in `vars.rs`, expanded.
            for port in ports.iter().filter(|p| !p.contains('$')) {
                expose(i, port, at, sink);
            }
        }
        _ => {}
    }
}

/// MultipleInstructionsDisallowed: reports the previous instruction, the one that will be ignored.
fn used_once(i: usize, name: &str, slot: &mut Option<(usize, usize)>, at: (usize, usize), sink: &mut Sink<'_>) {
    if let Some(previous) = slot.replace(at) {
        let message = format!(
            "Multiple {name} instructions should not be used in the same stage because only the last one will be used"
        );
        sink.add_for(i, &MULTIPLE_INSTRUCTIONS_DISALLOWED, previous, message);
    }
}

/// LegacyKeyValueFormat: the parser marks the legacy `ENV k v` pair with an empty separator.
fn legacy_key_value(i: usize, node: &Node, name: &str, at: (usize, usize), sink: &mut Sink<'_>) {
    if node.args.chunks(3).any(|pair| pair.get(2).is_some_and(String::is_empty)) {
        let message = format!("\"{name} key=value\" should be used instead of legacy \"{name} key value\" format");
        sink.add_for(i, &LEGACY_KEY_VALUE_FORMAT, at, message);
    }
}

/// ExposeProtoCasing and ExposeInvalidFormat on one `[ip:][host:]port[/proto]` word; a word BuildKit
/// would reject (no port, unknown protocol) gets no finding, the build fails on it instead.
pub(super) fn expose(i: usize, raw: &str, at: (usize, usize), sink: &mut Sink<'_>) {
    let parts: Vec<&str> = raw.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [i, h, c] => (*i, *h, *c),
        [.., h, c] => (&raw[..raw.len() - h.len() - c.len() - 2], *h, *c),
        [] => return,
    };
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    if port.is_empty() || !matches!(proto.to_lowercase().as_str(), "" | "tcp" | "udp" | "sctp") {
        return;
    }
    if proto != proto.to_lowercase() {
        sink.add_for(
            i,
            &EXPOSE_PROTO_CASING,
            at,
            format!("Defined protocol '{raw}' in EXPOSE instruction should be lowercase"),
        );
    }
    if !ip.is_empty() || !host.is_empty() {
        let message = format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{raw}'");
        sink.add_for(i, &EXPOSE_INVALID_FORMAT, at, message);
    }
}

/// The patterns below, compiled once for the process rather than per build.
static SECRETS: LazyLock<Secrets> = LazyLock::new(Secrets::new);

/// SecretsUsedInArgOrEnv's name patterns (BuildKit's `getSecretsRegex`): a secret word as the whole name
/// or as an `_`-separated part of it, unless an allow word (`public`, `file`, `version`) is also a part.
/// Both patterns are constants (a failure to compile would leave the rule silent, and the unit tests red).
struct Secrets {
    deny: Option<Regex>,
    allow: Option<Regex>,
}

impl Secrets {
    fn new() -> Self {
        let words = "apikey|auth|credential|credentials|key|password|pword|passwd|secret|token";
        let deny = Regex::new(&format!("(?i)(?:_|^)(?:{words})(?:_|$)")).ok();
        let allow = Regex::new("(?i)(?:_|^)(?:public|file|version)(?:_|$)").ok();
        Secrets { deny, allow }
    }

    fn check(&self, i: usize, instruction: &str, key: &str, at: (usize, usize), sink: &mut Sink<'_>) {
        let (Some(deny), Some(allow)) = (&self.deny, &self.allow) else { return };
        if deny.is_match(key) && !allow.is_match(key) {
            let message =
                format!("Do not use ARG or ENV instructions for sensitive data ({instruction} {})", go_quote(key));
            sink.add_for(i, &SECRETS_USED_IN_ARG_OR_ENV, at, message);
        }
    }
}
