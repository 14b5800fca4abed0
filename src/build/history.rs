//! History entries as BuildKit writes them (dockerfile2llb's `commitToHistory` and each `dispatch*`):
//! which instructions get an entry, which of them have a layer, and the `created_by` text — the
//! instruction rebuilt from its resolved arguments, not the Dockerfile line (`COPY foo2 foo3` without
//! `--from`, `RUN |2 a=1 b=2 /bin/sh -c ...` with the stage's ARGs, `EXPOSE [80/tcp]`, Go's `%q` for CMD).

use crate::build::step::config;
use crate::dockerfile::instruction::{CommandLine, Heredoc};
use crate::plan::{HealthcheckSpec, ResolvedCopy, ResolvedStep};

/// One history entry to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `created_by`.
    pub created_by: String,
    /// Whether the step adds a layer (RUN, COPY, ADD always; WORKDIR unless it is `/`).
    pub layer: bool,
}

/// The history entry of `step`, or `None` for steps BuildKit records none for (ONBUILD). `shell` is the
/// SHELL in force, for CMD and ENTRYPOINT in shell form.
pub fn entry(step: &ResolvedStep, shell: &[String]) -> Option<Entry> {
    let config_only = |text: String| Some(Entry { created_by: text, layer: false });
    match step {
        ResolvedStep::Run { cmd, shell, heredocs, args, .. } => {
            let mut text = String::from("RUN ");
            if !args.is_empty() {
                text.push_str(&format!("|{} ", args.len()));
                for (k, v) in args {
                    text.push_str(&format!("{k}={v} "));
                }
            }
            text.push_str(&run_argv(cmd, shell, heredocs).join(" "));
            Some(Entry { created_by: format!("{text} # buildkit"), layer: true })
        }
        ResolvedStep::Copy(c) => Some(Entry { created_by: copy_text("COPY", c), layer: true }),
        ResolvedStep::Add(c) => Some(Entry { created_by: copy_text("ADD", c), layer: true }),
        ResolvedStep::Workdir(dir) => Some(Entry { created_by: format!("WORKDIR {dir}"), layer: dir != "/" }),
        ResolvedStep::Env(pairs) => config_only(format!("ENV {}", pairs_text(pairs))),
        ResolvedStep::Label(pairs) => config_only(format!("LABEL {}", pairs_text(pairs))),
        ResolvedStep::Expose(ports) => {
            let ports: Vec<String> = ports.iter().flat_map(|p| config::expand_port(p).unwrap_or_default()).collect();
            config_only(format!("EXPOSE [{}]", ports.join(" ")))
        }
        ResolvedStep::User(user) => config_only(format!("USER {user}")),
        ResolvedStep::Volume(paths) => config_only(format!("VOLUME [{}]", paths.join(" "))),
        ResolvedStep::Cmd(line) => config_only(format!("CMD {}", go_quoted_list(&config::argv(line, shell)))),
        ResolvedStep::Entrypoint(line) => {
            config_only(format!("ENTRYPOINT {}", go_quoted_list(&config::argv(line, shell))))
        }
        ResolvedStep::Shell(words) => config_only(format!("SHELL [{}]", words.join(" "))),
        ResolvedStep::Stopsignal(signal) => config_only(format!("STOPSIGNAL {signal}")),
        ResolvedStep::Healthcheck(check) => config_only(format!("HEALTHCHECK {}", health_text(check))),
        ResolvedStep::Maintainer(name) => config_only(format!("MAINTAINER {name}")),
        ResolvedStep::Arg(decls) => {
            let words: Vec<String> = decls
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k.clone(),
                })
                .collect();
            config_only(format!("ARG {}", words.join(" ")))
        }
        ResolvedStep::Onbuild(_) => None,
    }
}

/// The argv RUN runs, as BuildKit builds it: a lone heredoc is the script itself (a `#!` script is run
/// from `/dev/pipes/NAME`), several are appended to the line for the shell to read; shell form gets SHELL.
pub fn run_argv(cmd: &CommandLine, shell: &[String], heredocs: &[Heredoc]) -> Vec<String> {
    let text = match cmd {
        CommandLine::Exec(args) => return args.clone(),
        CommandLine::Shell(text) => text,
    };
    let script = match heredocs {
        [] => text.clone(),
        [doc] if is_just_heredoc(text, &doc.name) && doc.content.starts_with("#!") => {
            format!("/dev/pipes/{}", doc.name)
        }
        [doc] if is_just_heredoc(text, &doc.name) => doc.content.clone(),
        docs => {
            let mut script = text.clone();
            for doc in docs {
                script.push('\n');
                script.push_str(&doc.content);
                if !doc.content.ends_with('\n') && !doc.content.is_empty() {
                    script.push('\n');
                }
                script.push_str(&doc.name);
            }
            script
        }
    };
    shell.iter().cloned().chain(std::iter::once(script)).collect()
}

/// Whether a RUN line is nothing but the heredoc `name` (`<<EOF`, `<<-"EOF"`).
pub fn is_just_heredoc(text: &str, name: &str) -> bool {
    let word = text.trim().trim_start_matches("<<").trim_start_matches('-');
    word.trim_matches(|c| c == '"' || c == '\'') == name
}

fn copy_text(keyword: &str, c: &ResolvedCopy) -> String {
    let mut text = keyword.to_string();
    if c.parents {
        text.push_str(" --parents");
    }
    if let Some(chown) = &c.chown {
        text.push_str(&format!(" --chown={chown}"));
    }
    if let Some(chmod) = &c.chmod {
        text.push_str(&format!(" --chmod={}", chmod.text));
    }
    let heredocs: Vec<&str> = c.heredocs.iter().map(|h| h.name.as_str()).collect();
    for source in c.sources.iter().filter(|s| !heredocs.contains(&s.as_str())) {
        text.push_str(&format!(" {source}"));
    }
    for name in heredocs {
        text.push_str(&format!(" <<{name}"));
    }
    format!("{text} {} # buildkit", c.dest)
}

fn pairs_text(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// Go's `%+v` of the image config's health check.
fn health_text(check: &HealthcheckSpec) -> String {
    let d = |ns: Option<i64>| go_duration(ns.unwrap_or(0));
    format!(
        "{{Test:[{}] Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        check.test.join(" "),
        d(check.interval),
        d(check.timeout),
        d(check.start_period),
        d(check.start_interval),
        check.retries.unwrap_or(0)
    )
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub fn go_quoted_list(words: &[String]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| crate::dockerfile::go_quote(w)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `time.Duration.String()`: `0s`, `1.5s`, `1m30s`, `1h0m0s`, `250ms`, `10µs`.
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    let fraction = |value: u64, unit: u64| {
        let whole = value / unit;
        let frac = value % unit;
        if frac == 0 {
            return whole.to_string();
        }
        let digits = unit.ilog10() as usize;
        let text = format!("{frac:0digits$}");
        format!("{whole}.{}", text.trim_end_matches('0'))
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", fraction(u, 1_000));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", fraction(u, 1_000_000));
    }
    let seconds = fraction(u % 60_000_000_000, 1_000_000_000);
    let minutes = u / 60_000_000_000;
    match (minutes / 60, minutes % 60) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, m) => format!("{sign}{m}m{seconds}s"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn run_lines_carry_the_stages_args_and_the_shell() {
        let sh = [s("/bin/sh"), s("-c")];
        let run = |cmd, args| ResolvedStep::Run {
            cmd,
            shell: sh.to_vec(),
            mounts: Vec::new(),
            network: None,
            security: None,
            heredocs: Vec::new(),
            env: Vec::new(),
            args,
        };
        let shell = run(CommandLine::Shell(s("ls /etc/")), vec![(s("foo"), s("bar2")), (s("bar"), s("123"))]);
        let e = entry(&shell, &sh).unwrap();
        assert_eq!(e.created_by, "RUN |2 foo=bar2 bar=123 /bin/sh -c ls /etc/ # buildkit");
        assert!(e.layer);
        let exec = run(CommandLine::Exec(vec![s("ls")]), Vec::new());
        assert_eq!(entry(&exec, &sh).unwrap().created_by, "RUN ls # buildkit");
    }

    #[test]
    fn config_lines_as_buildkit_formats_them() {
        let sh = [s("/bin/sh"), s("-c")];
        let e = entry(&ResolvedStep::Expose(vec![s("1234/udp"), s("2375"), s("5000")]), &sh).unwrap();
        assert_eq!((e.created_by.as_str(), e.layer), ("EXPOSE [1234/udp 2375/tcp 5000/tcp]", false));
        let cmd = entry(&ResolvedStep::Cmd(CommandLine::Shell(s("echo \"hi\""))), &sh).unwrap();
        assert_eq!(cmd.created_by, r#"CMD ["/bin/sh" "-c" "echo \"hi\""]"#);
        assert!(!entry(&ResolvedStep::Workdir(s("/")), &sh).unwrap().layer);
        assert_eq!(
            entry(&ResolvedStep::Workdir(s("/w")), &sh).unwrap(),
            Entry { created_by: s("WORKDIR /w"), layer: true }
        );
        assert_eq!(
            entry(&ResolvedStep::Arg(vec![(s("a"), Some(s("1"))), (s("b"), None)]), &sh).unwrap().created_by,
            "ARG a=1 b"
        );
        assert_eq!(entry(&ResolvedStep::Onbuild(s("RUN x")), &sh), None);
    }

    #[test]
    fn go_formats() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(30_000_000_000), "30s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(250_000_000), "250ms");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(crate::dockerfile::go_quote("a\tb\u{1}é"), "\"a\\tb\\x01é\"");
    }
}
