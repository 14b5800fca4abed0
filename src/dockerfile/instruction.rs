//! Typed Dockerfile instructions: the parser's output after flags are parsed, before any word expansion.
//!
//! Words here are still exactly as written (quotes, `$VAR` and escapes intact) except where a field says
//! otherwise; `plan` expands them with the ARG/ENV scope in force at that step, as BuildKit's
//! `instructions` package does at dispatch time.

/// Where an instruction sits in its Dockerfile, for error messages (`Dockerfile:12`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First physical line (1-based).
    pub start_line: usize,
    /// Last physical line (1-based), after continuations and heredoc bodies.
    pub end_line: usize,
}

/// One instruction with its place and original text.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// What the instruction does, with its parsed flags and arguments.
    pub command: Command,
    /// Lines it spans.
    pub span: Span,
    /// The instruction as written on its (joined) logical line, for history `created_by` and messages.
    pub original: String,
}

/// Shell form (`RUN echo hi`, run through SHELL) or exec form (`RUN ["echo", "hi"]`, run directly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// The text after the flags, to hand to the stage's SHELL.
    Shell(String),
    /// The decoded JSON array; exec form is never expanded.
    Exec(Vec<String>),
}

/// A heredoc body attached to RUN, COPY or ADD (`<<EOF` ... `EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word without quotes or `-` (`EOF`); for COPY/ADD it is the source file name.
    pub name: String,
    /// The body, with leading tabs already removed for `<<-`.
    pub content: String,
    /// False when the delimiter was quoted (`<<'EOF'`, `<<"EOF"`): no expansion of the body.
    pub expand: bool,
}

/// `FROM [--platform=P] IMAGE [AS NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The image word, unexpanded (may use global ARGs).
    pub image: String,
    /// The stage name after `AS`, lower-cased as BuildKit does.
    pub name: Option<String>,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
}

/// `RUN [--mount=...] [--network=...] [--security=...] CMD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command; in shell form with heredocs, the first line as written (`cat <<EOF`).
    pub cmd: CommandLine,
    /// Each `--mount` value, unparsed (`type=cache,target=/root/.cache`).
    pub mounts: Vec<String>,
    /// `--network` value (`default`, `none`, `host`).
    pub network: Option<String>,
    /// `--security` value (`sandbox`, `insecure`).
    pub security: Option<String>,
    /// Heredoc bodies named on the command line, in order.
    pub heredocs: Vec<Heredoc>,
}

/// Arguments shared by COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyArgs {
    /// Source words (paths, globs, URLs), unexpanded; heredoc sources appear here by their name.
    pub sources: Vec<String>,
    /// Destination word, unexpanded.
    pub dest: String,
    /// `--from` (stage name, index or image), unexpanded.
    pub from: Option<String>,
    /// `--chown`, unexpanded.
    pub chown: Option<String>,
    /// `--chmod`, unexpanded.
    pub chmod: Option<String>,
    /// `--link` given (and not `=false`).
    pub link: bool,
    /// `--exclude` patterns, in order.
    pub exclude: Vec<String>,
    /// `--parents` given (and not `=false`).
    pub parents: bool,
    /// ADD only: `--checksum`.
    pub checksum: Option<String>,
    /// ADD only: `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// ADD only: `--unpack` when given explicitly.
    pub unpack: Option<bool>,
    /// Heredoc sources, in order of appearance.
    pub heredocs: Vec<Heredoc>,
}

/// `HEALTHCHECK` settings; durations as written (`30s`), checked by `plan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [OPTIONS] CMD ...`.
    Cmd {
        /// The test command.
        test: CommandLine,
        /// `--interval`.
        interval: Option<String>,
        /// `--timeout`.
        timeout: Option<String>,
        /// `--start-period`.
        start_period: Option<String>,
        /// `--start-interval`.
        start_interval: Option<String>,
        /// `--retries`.
        retries: Option<String>,
    },
}

/// A `KEY=VALUE` pair of ENV or LABEL, both halves unexpanded (quotes kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key as written.
    pub key: String,
    /// The value as written.
    pub value: String,
}

/// One `ARG NAME[=DEFAULT]` declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The argument's name.
    pub name: String,
    /// The default as written (unexpanded), if any.
    pub default: Option<String>,
}

/// The closed set of Dockerfile instructions (dockerfile:1 syntax).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `FROM`.
    From(From),
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(CommandLine),
    /// `ENTRYPOINT`.
    Entrypoint(CommandLine),
    /// `LABEL k=v ...` (and the legacy `LABEL k v` form).
    Label(Vec<KeyValue>),
    /// `MAINTAINER name` (deprecated; sets the author field).
    Maintainer(String),
    /// `EXPOSE port[/proto] ...`, words unexpanded.
    Expose(Vec<String>),
    /// `ENV k=v ...` (and the legacy `ENV k v` form).
    Env(Vec<KeyValue>),
    /// `ADD`.
    Add(CopyArgs),
    /// `COPY`.
    Copy(CopyArgs),
    /// `VOLUME` paths (JSON or space separated), unexpanded.
    Volume(Vec<String>),
    /// `USER user[:group]`, unexpanded.
    User(String),
    /// `WORKDIR path`, unexpanded.
    Workdir(String),
    /// `ARG name[=default] ...`.
    Arg(Vec<ArgDecl>),
    /// `ONBUILD INSTRUCTION`: the nested instruction, already parsed; its text is recorded in the image config.
    Onbuild(Box<Instruction>),
    /// `STOPSIGNAL signal`, unexpanded.
    Stopsignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `SHELL ["exe", "arg"...]` (exec form only).
    Shell(Vec<String>),
}

impl Command {
    /// The instruction keyword in upper case (`COPY`), for messages and history.
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::From(_) => "FROM",
            Command::Run(_) => "RUN",
            Command::Cmd(_) => "CMD",
            Command::Entrypoint(_) => "ENTRYPOINT",
            Command::Label(_) => "LABEL",
            Command::Maintainer(_) => "MAINTAINER",
            Command::Expose(_) => "EXPOSE",
            Command::Env(_) => "ENV",
            Command::Add(_) => "ADD",
            Command::Copy(_) => "COPY",
            Command::Volume(_) => "VOLUME",
            Command::User(_) => "USER",
            Command::Workdir(_) => "WORKDIR",
            Command::Arg(_) => "ARG",
            Command::Onbuild(_) => "ONBUILD",
            Command::Stopsignal(_) => "STOPSIGNAL",
            Command::Healthcheck(_) => "HEALTHCHECK",
            Command::Shell(_) => "SHELL",
        }
    }
}
