//! From nodes to typed instructions: the flags each instruction accepts, argument counts, exec vs shell
//! form, heredoc sources — BuildKit's `instructions/parse.go`. Nothing is expanded here.

use super::error::Problem;
use super::flags::{Flags, Kind};
use super::instruction::{
    ArgDecl, Command, CommandLine, CopyArgs, From, Healthcheck, Heredoc, Instruction, KeyValue, Run, Span,
};
use super::node::{Node, RawHeredoc};

/// Every instruction keyword, for "did you mean" suggestions.
const KEYWORDS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// Converts one node; the caller attaches the line to errors.
pub fn instruction(node: &Node) -> Result<Instruction, Problem> {
    let command = command(node)?;
    Ok(Instruction {
        command,
        span: Span { start_line: node.start_line, end_line: node.end_line },
        original: node.original.trim().to_string(),
    })
}

fn command(node: &Node) -> Result<Command, Problem> {
    let kw = node.keyword.as_str();
    let no_flags = |n: &Node| Flags::parse(&n.flags, &[]).map(|_| ());
    match kw {
        "from" => from(node),
        "run" => run(node),
        "cmd" => no_flags(node).map(|_| Command::Cmd(command_line(node))),
        "entrypoint" => no_flags(node).map(|_| Command::Entrypoint(command_line(node))),
        "label" => no_flags(node).and_then(|_| pairs(node, "LABEL")).map(Command::Label),
        "env" => no_flags(node).and_then(|_| pairs(node, "ENV")).map(Command::Env),
        "maintainer" => no_flags(node).and_then(|_| one(node, "MAINTAINER")).map(Command::Maintainer),
        "expose" => no_flags(node).and_then(|_| at_least_one(node, "EXPOSE")).map(Command::Expose),
        "add" => copy_args(node, true).map(Command::Add),
        "copy" => copy_args(node, false).map(Command::Copy),
        "volume" => no_flags(node).and_then(|_| volume(node)),
        "user" => no_flags(node).and_then(|_| one(node, "USER")).map(Command::User),
        "workdir" => no_flags(node).and_then(|_| one(node, "WORKDIR")).map(Command::Workdir),
        "arg" => no_flags(node).and_then(|_| arg(node)),
        "onbuild" => onbuild(node),
        "stopsignal" => no_flags(node).and_then(|_| one(node, "STOPSIGNAL")).map(Command::Stopsignal),
        "healthcheck" => healthcheck(node),
        "shell" => no_flags(node).and_then(|_| shell(node)),
        other => Err(unknown_instruction(other)),
    }
}

fn unknown_instruction(keyword: &str) -> Problem {
    let upper = keyword.to_uppercase();
    let hint = KEYWORDS
        .iter()
        .map(|k| (strsim::damerau_levenshtein(k, keyword), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean {}?)", k.to_uppercase()))
        .unwrap_or_default();
    Problem(format!("unknown instruction: {upper}{hint}"))
}

fn command_line(node: &Node) -> CommandLine {
    if node.json {
        CommandLine::Exec(node.args.clone())
    } else {
        CommandLine::Shell(node.args.first().cloned().unwrap_or_default())
    }
}

fn one(node: &Node, kw: &str) -> Result<String, Problem> {
    match node.args.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(format!("{kw} requires exactly one argument").into()),
        _ => Err(format!("{kw} requires exactly one argument").into()),
    }
}

fn at_least_one(node: &Node, kw: &str) -> Result<Vec<String>, Problem> {
    if node.args.is_empty() {
        return Err(format!("{kw} requires at least one argument").into());
    }
    Ok(node.args.clone())
}

fn pairs(node: &Node, kw: &str) -> Result<Vec<KeyValue>, Problem> {
    if node.args.is_empty() {
        return Err(format!("{kw} requires at least one argument").into());
    }
    node.args
        .chunks(3)
        .map(|c| match c {
            [k, _, _] if k.is_empty() => Err(format!("{kw} names can not be blank").into()),
            [k, v, _] => Ok(KeyValue { key: k.clone(), value: v.clone() }),
            _ => Err(format!("{kw} has a malformed name=value list").into()),
        })
        .collect()
}

fn from(node: &Node) -> Result<Command, Problem> {
    let flags = Flags::parse(&node.flags, &[("platform", Kind::String)])?;
    let (image, name) = match node.args.as_slice() {
        [image] => (image.clone(), None),
        [image, as_, name] if as_.eq_ignore_ascii_case("as") => (image.clone(), Some(name.to_lowercase())),
        _ => return Err("FROM requires either one or three arguments (FROM IMAGE [AS NAME])".into()),
    };
    if let Some(name) = &name
        && !valid_stage_name(name)
    {
        return Err(format!(
            "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
        )
        .into());
    }
    Ok(Command::From(From { image, name, platform: flags.string("platform") }))
}

/// `^[a-z][a-z0-9-_.]*$`, the reference's rule for stage names.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn run(node: &Node) -> Result<Command, Problem> {
    let allowed = [("mount", Kind::List), ("network", Kind::String), ("security", Kind::String)];
    let flags = Flags::parse(&node.flags, &allowed)?;
    Ok(Command::Run(Run {
        cmd: command_line(node),
        mounts: flags.list("mount"),
        network: flags.string("network"),
        security: flags.string("security"),
        heredocs: node.heredocs.iter().map(heredoc).collect(),
    }))
}

fn heredoc(raw: &RawHeredoc) -> Heredoc {
    let content = if raw.chomp {
        raw.content.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
    } else {
        raw.content.clone()
    };
    Heredoc { name: raw.name.clone(), content, expand: raw.expand }
}

fn copy_args(node: &Node, is_add: bool) -> Result<CopyArgs, Problem> {
    let kw = if is_add { "ADD" } else { "COPY" };
    let mut allowed =
        vec![("chown", Kind::String), ("chmod", Kind::String), ("link", Kind::Bool), ("exclude", Kind::List)];
    if is_add {
        allowed.extend([("checksum", Kind::String), ("keep-git-dir", Kind::Bool), ("unpack", Kind::Bool)]);
    } else {
        allowed.extend([("from", Kind::String), ("parents", Kind::Bool)]);
    }
    let flags = Flags::parse(&node.flags, &allowed)?;
    if node.args.len() < 2 {
        return Err(format!(
            "{kw} requires at least two arguments, but only {} provided. Destination could not be determined",
            node.args.len()
        )
        .into());
    }
    let (dest, sources) = node.args.split_last().ok_or_else(|| Problem::from("missing destination"))?;
    let mut docs = node.heredocs.iter();
    let mut heredocs = Vec::new();
    let mut names = Vec::new();
    for source in sources {
        match source.strip_prefix("<<").or_else(|| source.strip_prefix("<<-")) {
            Some(_) if !node.json => match docs.next() {
                Some(raw) => {
                    names.push(raw.name.clone());
                    heredocs.push(heredoc(raw));
                }
                None => names.push(source.clone()),
            },
            _ => names.push(source.clone()),
        }
    }
    Ok(CopyArgs {
        sources: names,
        dest: dest.clone(),
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link").unwrap_or(false),
        exclude: flags.list("exclude"),
        parents: flags.bool("parents").unwrap_or(false),
        checksum: flags.string("checksum"),
        keep_git_dir: flags.bool("keep-git-dir").unwrap_or(false),
        unpack: flags.bool("unpack"),
        heredocs,
    })
}

fn volume(node: &Node) -> Result<Command, Problem> {
    if node.args.is_empty() || node.args.iter().any(|a| a.trim().is_empty()) {
        return Err("VOLUME specified can not be an empty string".into());
    }
    Ok(Command::Volume(node.args.clone()))
}

fn arg(node: &Node) -> Result<Command, Problem> {
    if node.args.is_empty() {
        return Err("ARG requires at least one argument".into());
    }
    let decls = node
        .args
        .iter()
        .map(|word| {
            let (name, default) = match word.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (word.clone(), None),
            };
            if name.is_empty() {
                return Err(Problem::from("ARG names can not be blank"));
            }
            Ok(ArgDecl { name, default })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Command::Arg(decls))
}

fn onbuild(node: &Node) -> Result<Command, Problem> {
    Flags::parse(&node.flags, &[])?;
    let Some(sub) = &node.sub else { return Err("ONBUILD requires at least one argument".into()) };
    match sub.keyword.as_str() {
        "onbuild" => return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
        "from" | "maintainer" => {
            return Err(format!("{} isn't allowed as an ONBUILD trigger", sub.keyword.to_uppercase()).into());
        }
        _ => {}
    }
    let mut inner = (**sub).clone();
    inner.start_line = node.start_line;
    inner.end_line = node.end_line;
    inner.heredocs = node.heredocs.clone();
    Ok(Command::Onbuild(Box::new(instruction(&inner)?)))
}

fn healthcheck(node: &Node) -> Result<Command, Problem> {
    let allowed = [
        ("interval", Kind::String),
        ("timeout", Kind::String),
        ("start-period", Kind::String),
        ("start-interval", Kind::String),
        ("retries", Kind::String),
    ];
    let flags = Flags::parse(&node.flags, &allowed)?;
    let Some(kind) = node.args.first() else { return Err("HEALTHCHECK requires an argument (CMD or NONE)".into()) };
    match kind.to_uppercase().as_str() {
        "NONE" => {
            if node.args.len() > 1 || !node.flags.is_empty() {
                return Err("HEALTHCHECK NONE takes no arguments or options".into());
            }
            Ok(Command::Healthcheck(Healthcheck::None))
        }
        "CMD" => {
            if node.args.len() < 2 {
                return Err("Missing command after HEALTHCHECK CMD".into());
            }
            let rest = Node { args: node.args[1..].to_vec(), json: node.json, ..Default::default() };
            Ok(Command::Healthcheck(Healthcheck::Cmd {
                test: command_line(&rest),
                interval: flags.string("interval"),
                timeout: flags.string("timeout"),
                start_period: flags.string("start-period"),
                start_interval: flags.string("start-interval"),
                retries: flags.string("retries"),
            }))
        }
        other => Err(format!("Unknown type {other:?} in HEALTHCHECK (try CMD)").into()),
    }
}

fn shell(node: &Node) -> Result<Command, Problem> {
    if !node.json {
        return Err("SHELL requires the arguments to be in JSON form".into());
    }
    if node.args.is_empty() {
        return Err("SHELL requires at least one argument".into());
    }
    Ok(Command::Shell(node.args.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parser::parse_nodes;

    fn typed(src: &str) -> Result<Vec<Instruction>, String> {
        let tree = parse_nodes(src, "Dockerfile").map_err(|e| e.to_string())?;
        tree.nodes.iter().map(|n| instruction(n).map_err(|p| p.at("Dockerfile", n.start_line).to_string())).collect()
    }

    #[test]
    fn unknown_instructions_get_a_suggestion() {
        let e = typed("FORM busybox\n").unwrap_err();
        assert_eq!(e, "Dockerfile:1: unknown instruction: FORM (did you mean FROM?)");
        let e = typed("FROM x\nCOPPY a b\n").unwrap_err();
        assert_eq!(e, "Dockerfile:2: unknown instruction: COPPY (did you mean COPY?)");
    }

    #[test]
    fn from_forms() {
        let i = typed("FROM --platform=linux/amd64 img:1 AS Build\n").unwrap();
        let Command::From(f) = &i[0].command else { panic!("not FROM") };
        assert_eq!((f.image.as_str(), f.name.as_deref()), ("img:1", Some("build")));
        assert_eq!(f.platform.as_deref(), Some("linux/amd64"));
        assert!(typed("FROM a b\n").is_err());
        assert!(typed("FROM a AS 1x\n").is_err());
    }

    #[test]
    fn copy_flags_and_heredoc_sources() {
        let i = typed("FROM x\nCOPY --from=b --chown=1:2 --link a b /d/\nCOPY <<EOF /f\nhi\nEOF\n").unwrap();
        let Command::Copy(c) = &i[1].command else { panic!("not COPY") };
        assert_eq!((c.from.as_deref(), c.chown.as_deref(), c.link), (Some("b"), Some("1:2"), true));
        assert_eq!((c.sources.clone(), c.dest.as_str()), (vec!["a".to_string(), "b".into()], "/d/"));
        let Command::Copy(c) = &i[2].command else { panic!("not COPY") };
        assert_eq!(c.sources, ["EOF"]);
        assert_eq!(c.heredocs[0].content, "hi\n");
        assert!(typed("FROM x\nCOPY --checksum=x a b\n").is_err());
        assert!(typed("FROM x\nCOPY a\n").is_err());
    }

    #[test]
    fn run_shell_exec_and_mounts() {
        let i =
            typed("FROM x\nRUN --mount=type=cache,target=/c --network=none echo $HOME\nRUN [\"a\",\"b\"]\n").unwrap();
        let Command::Run(r) = &i[1].command else { panic!("not RUN") };
        assert_eq!(r.cmd, CommandLine::Shell("echo $HOME".into()));
        assert_eq!(r.mounts, ["type=cache,target=/c"]);
        assert_eq!(r.network.as_deref(), Some("none"));
        let Command::Run(r) = &i[2].command else { panic!("not RUN") };
        assert_eq!(r.cmd, CommandLine::Exec(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn healthcheck_forms() {
        assert!(matches!(
            typed("FROM x\nHEALTHCHECK NONE\n").unwrap()[1].command,
            Command::Healthcheck(Healthcheck::None)
        ));
        assert!(typed("FROM x\nHEALTHCHECK CONNECT TCP 7000\n").is_err());
        assert!(typed("FROM x\nHEALTHCHECK CMD\n").is_err());
        let i = typed("FROM x\nHEALTHCHECK --interval=5s CMD [\"check\"]\n").unwrap();
        let Command::Healthcheck(Healthcheck::Cmd { test, interval, .. }) = &i[1].command else { panic!() };
        assert_eq!(test, &CommandLine::Exec(vec!["check".into()]));
        assert_eq!(interval.as_deref(), Some("5s"));
    }

    #[test]
    fn onbuild_nests_and_refuses_chains() {
        let i = typed("FROM x\nONBUILD RUN echo hi\n").unwrap();
        let Command::Onbuild(inner) = &i[1].command else { panic!("not ONBUILD") };
        assert!(matches!(inner.command, Command::Run(_)));
        assert!(typed("FROM x\nONBUILD ONBUILD RUN x\n").is_err());
        assert!(typed("FROM x\nONBUILD FROM y\n").is_err());
    }

    #[test]
    fn env_arg_and_shell_rules() {
        assert!(typed("FROM x\nENV =a\n").is_err());
        let i = typed("FROM x\nARG A B=2\n").unwrap();
        let Command::Arg(a) = &i[1].command else { panic!("not ARG") };
        assert_eq!((a[0].default.clone(), a[1].default.as_deref()), (None, Some("2")));
        assert!(typed("FROM x\nSHELL /bin/bash -c\n").is_err());
        assert!(typed("FROM x\nWORKDIR\n").is_err());
    }
}
