//! Rules over a Dockerfile: base images of the stages the build needs (allow-list, digest pin, `:latest`),
//! ADD of URLs without `--checksum`, download-and-run pipelines, downloads from hosts other than Nexus,
//! secret-looking ARG/ENV names, and a final stage that runs as root.

use super::finding;
use super::shell;
use crate::dockerfile::instruction::{Command, CommandLine, Instruction};
use crate::image::Reference;
use crate::plan::{Base, Plan};
use crate::policy::Finding;
use crate::policy::{Location, Policy};

/// Package-manager settings whose values name where dependencies come from.
const INDEX_KEYS: [&str; 6] = ["INDEX", "REGISTRY", "PROXY", "MIRROR", "REPO", "URL"];

/// Runs the Dockerfile rules.
pub fn check(policy: &Policy, plan: &Plan, out: &mut Vec<Finding>) {
    let at = |line: usize| Location::Dockerfile { file: plan.file.clone(), line };
    for &index in &plan.order {
        let stage = &plan.stages[index];
        if let Base::Image(name) = &stage.base {
            base_rules(policy, name, at(stage.span.start_line), out);
        }
        for inst in &stage.instructions {
            instruction_rules(policy, inst, &at(inst.span.start_line), out);
        }
    }
    user_rule(plan, plan.target, &at, out);
}

/// The base image rules for `name` (as written after ARG expansion) found at `location`.
pub fn base_rules(policy: &Policy, name: &str, location: Location, out: &mut Vec<Finding>) {
    if name.contains('$') {
        return; // not expandable here: judged when the image is checked
    }
    let Ok(reference) = Reference::parse(name) else { return };
    if !policy.base_allowed(&reference.name()) {
        out.push(finding(
            "base-not-allowed",
            format!("base image {name} is not from an allowed repository"),
            location.clone(),
        ));
    }
    if reference.digest().is_none() {
        out.push(finding("base-unpinned", format!("base image {name} is not pinned by digest"), location.clone()));
        if reference.tag() == Some("latest") {
            out.push(finding("base-latest", format!("base image {name} uses the latest tag"), location));
        }
    }
}

fn instruction_rules(policy: &Policy, inst: &Instruction, at: &Location, out: &mut Vec<Finding>) {
    match &inst.command {
        Command::Run(run) => {
            let mut text = match &run.cmd {
                CommandLine::Shell(s) => s.clone(),
                CommandLine::Exec(words) => words.join(" "),
            };
            for heredoc in &run.heredocs {
                text.push('\n');
                text.push_str(&heredoc.content);
            }
            if shell::pipes_to_shell(&text) {
                out.push(finding("pipe-to-shell", "RUN downloads a script and runs it in one go".into(), at.clone()));
            }
            downloads(policy, &text, "RUN downloads from", at, out);
        }
        Command::Add(add) => {
            for source in add.sources.iter().filter(|s| s.starts_with("http://") || s.starts_with("https://")) {
                if add.checksum.is_none() {
                    out.push(finding("add-url-checksum", format!("ADD {source} has no --checksum"), at.clone()));
                }
                downloads(policy, source, "ADD downloads from", at, out);
            }
        }
        Command::Arg(args) => {
            for arg in args {
                secret(policy, &arg.name, "ARG", at, out);
            }
        }
        Command::Env(pairs) => {
            for pair in pairs {
                secret(policy, &pair.key, "ENV", at, out);
                let key = pair.key.to_ascii_uppercase();
                if INDEX_KEYS.iter().any(|k| key.contains(k)) {
                    downloads(policy, &pair.value, &format!("ENV {} points at", pair.key), at, out);
                }
            }
        }
        Command::Onbuild(inner) => instruction_rules(policy, inner, at, out),
        _ => {}
    }
}

fn downloads(policy: &Policy, text: &str, what: &str, at: &Location, out: &mut Vec<Finding>) {
    if policy.nexus.hosts.is_empty() {
        return;
    }
    for (url, host) in shell::urls(text) {
        if !policy.is_nexus(&host) {
            out.push(finding("download-not-nexus", format!("{what} {host}, not Nexus ({url})"), at.clone()));
        }
    }
}

/// Whether a variable name looks like it holds a secret under the policy's word list.
pub fn secret_looking(policy: &Policy, name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    if policy.secrets.allow.iter().any(|a| a.eq_ignore_ascii_case(name)) {
        return false;
    }
    upper.split(['_', '-', '.']).any(|word| policy.secrets.names.iter().any(|n| n.eq_ignore_ascii_case(word)))
}

fn secret(policy: &Policy, name: &str, kind: &str, at: &Location, out: &mut Vec<Finding>) {
    if secret_looking(policy, name) {
        let message = format!("{kind} {name} looks like a secret; its value stays in the image's history and config");
        out.push(finding("secret-in-arg-env", message, at.clone()));
    }
}

/// Whether a USER value means root.
pub fn is_root(user: &str) -> bool {
    let name = user.split(':').next().unwrap_or(user).trim();
    name.is_empty() || name == "root" || name == "0"
}

fn user_rule(plan: &Plan, target: usize, at: &dyn Fn(usize) -> Location, out: &mut Vec<Finding>) {
    let mut stage = &plan.stages[target];
    for _ in 0..plan.stages.len() {
        let last_user = stage.instructions.iter().rev().find_map(|i| match &i.command {
            Command::User(u) => Some((u, i.span.start_line)),
            _ => None,
        });
        if let Some((user, line)) = last_user {
            if !user.contains('$') && is_root(user) {
                out.push(finding("user-root", format!("the image runs as root (USER {user})"), at(line)));
            }
            return;
        }
        match &stage.base {
            Base::Stage(i) => stage = &plan.stages[*i],
            Base::Scratch => {
                let message = "the image runs as root (no USER on a scratch base)".to_string();
                out.push(finding("user-root", message, at(plan.stages[target].span.start_line)));
                return;
            }
            Base::Image(_) => return, // the base image decides: judged when the image is checked
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::{Input, Policy, check};

    fn findings(dockerfile: &str, policy: &Policy) -> Vec<(String, usize)> {
        let parsed = crate::dockerfile::parse(dockerfile, "Dockerfile").unwrap();
        let plan = crate::plan::plan(&parsed.instructions, parsed.escape, "Dockerfile", &Default::default()).unwrap();
        let input = Input { dockerfile: Some(crate::policy::DockerfileInput { plan: &plan }), ..Default::default() };
        check(policy, &input)
            .into_iter()
            .map(|f| {
                let line = match f.location {
                    crate::policy::Location::Dockerfile { line, .. } => line,
                    _ => 0,
                };
                (f.rule.to_string(), line)
            })
            .collect()
    }

    fn rules(dockerfile: &str, policy: &Policy) -> Vec<String> {
        findings(dockerfile, policy).into_iter().map(|f| f.0).collect()
    }

    const UBI: &str = "registry.access.redhat.com/ubi9/python-39:1-117@sha256:0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn base_rules_pass_and_fail() {
        let p = Policy::default();
        assert!(rules(&format!("FROM {UBI}\nUSER 1001\n"), &p).is_empty());
        assert_eq!(
            findings("FROM python:3.7\nUSER 1001\n", &p),
            [("base-not-allowed".into(), 1), ("base-unpinned".into(), 1)]
        );
        assert_eq!(
            rules("FROM registry.access.redhat.com/ubi8/ubi\nUSER 1001\n", &p),
            ["base-latest", "base-unpinned"]
        );
        // Global ARGs are expanded in FROM; stages built on stages are not bases.
        let df = format!("ARG BASE={UBI}\nFROM $BASE AS b\nFROM b\nUSER 1001\n");
        assert!(rules(&df, &p).is_empty());
        let mut bake = Policy::default();
        bake.extra_bases.push("registry.example.com/team/base".into());
        assert!(rules("FROM registry.example.com/team/base@sha256:0000000000000000000000000000000000000000000000000000000000000000\nUSER 1\n", &bake).is_empty());
    }

    #[test]
    fn add_checksum_pipe_secrets_and_user() {
        let p = Policy::default();
        let base = format!("FROM {UBI}\n");
        assert_eq!(rules(&format!("{base}ADD https://x.example/a.tgz /a\nUSER 1001\n"), &p), ["add-url-checksum"]);
        let sum = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        assert!(rules(&format!("{base}ADD --checksum={sum} https://x.example/a.tgz /a\nUSER 1001\n"), &p).is_empty());
        assert_eq!(rules(&format!("{base}RUN curl -fsSL https://x | sh\nUSER 1001\n"), &p), ["pipe-to-shell"]);
        assert!(rules(&format!("{base}RUN curl -fsSLo /tmp/x https://x\nUSER 1001\n"), &p).is_empty());
        assert_eq!(
            findings(&format!("{base}ARG NEXUS_TOKEN\nENV DB_PASSWORD=x GPG_KEY=abc LANG=C\nUSER 1001\n"), &p),
            [("secret-in-arg-env".into(), 2), ("secret-in-arg-env".into(), 3)]
        );
        assert_eq!(findings(&format!("{base}USER 1001\nUSER root\n"), &p), [("user-root".into(), 3)]);
        assert_eq!(rules("FROM scratch\nCOPY a /a\n", &p), ["user-root"]);
        assert!(rules(&format!("{base}RUN true\n"), &p).is_empty(), "a base image's own USER is judged on the image");
    }

    #[test]
    fn downloads_only_from_nexus_when_configured() {
        let df = format!(
            "FROM {UBI}\nRUN pip install -i https://nexus.corp/repository/pypi/simple flask\n\
RUN curl -fsSLo /tmp/x https://github.com/x/y/releases/z.tgz\nENV PIP_INDEX_URL=https://pypi.org/simple\nUSER 1001\n"
        );
        assert!(rules(&df, &Policy::default()).is_empty(), "no Nexus configured: not judged");
        let p = Policy::parse("[nexus]\nhosts = [\"nexus.corp\"]\n", "p").unwrap();
        assert_eq!(findings(&df, &p), [("download-not-nexus".into(), 3), ("download-not-nexus".into(), 4)]);
    }
}
