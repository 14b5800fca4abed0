//! Command-line interface: clap definitions, flags → library calls, output, exit codes.
//!
//! This is the only place that reads the process environment, talks to the terminal and decides exit codes:
//! 0 success, 1 the command failed on its input (a bad Dockerfile, a missing file, a registry refusal),
//! 2 a usage error (clap) or an internal error.

mod args;
mod attest;
mod bake;
mod bake_progress;
mod build;
mod check;
mod env;
mod fsck;
mod images;
mod interrupt;
mod login;
mod output;
mod parse;
mod progress;
mod sbom;
mod supply;
mod transfer;

use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;

/// What a failed command tells `main`: the error chain to print once, and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// 1 for input errors, 2 for internal ones.
    pub code: u8,
    /// The error with its context chain.
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure { code: 1, error: error.into() }
    }
}

/// Parses arguments, runs the command, prints errors once, and maps them to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that unpack layers or remove snapshots work as root of kiln's user namespace when run by an
    // ordinary user; entering it forks, so it happens here, while the process is still single-threaded. A
    // build by root without mount rights enters one too, unless it asked for root or chroot isolation.
    let isolation = match &cli.command {
        args::Command::Build(b) => Some(b.args.isolation),
        args::Command::Bake(b) => Some(b.build.isolation),
        _ => None,
    };
    let root_may_enter = isolation.is_some_and(|i| !matches!(i, args::IsolationArg::Root | args::IsolationArg::Chroot));
    if matches!(
        cli.command,
        args::Command::Build(_) | args::Command::Bake(_) | args::Command::Prune(_) | args::Command::Fsck(_)
    ) && let Some(code) = crate::sandbox::userns::enter(root_may_enter)
    {
        return code;
    }
    // Still single-threaded: every thread started from here on inherits the blocked signals.
    let interrupts = interrupt::Interrupts::install(env::store_root(cli.root.as_deref()));
    let result = run(cli);
    // An interrupted command fails; the interrupt's own clean-up ends the process with its status.
    interrupts.hold_if_stopping();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `kiln images | head`: the reader has what it wanted.
        Err(failure) if output::is_broken_pipe(&failure.error) => ExitCode::SUCCESS,
        Err(failure) => {
            output::print_error(&failure.error);
            ExitCode::from(failure.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    use args::Command;
    let root = cli.root.as_deref();
    match cli.command {
        Command::Build(a) => build::run(root, &a),
        Command::Bake(a) => bake::run(root, &a),
        Command::Parse(a) => parse::run(&a),
        Command::Images(a) => images::images(root, &a),
        Command::Inspect(a) => images::inspect(root, &a),
        Command::Tag(a) => images::tag(root, &a),
        Command::Rmi(a) => images::rmi(root, &a),
        Command::Prune(a) => images::prune(root, &a),
        Command::Fsck(a) => fsck::fsck(root, &a),
        Command::Push(a) => transfer::push(root, &a),
        Command::Pull(a) => transfer::pull(root, &a),
        Command::Login(a) => login::login(&a),
        Command::Logout(a) => login::logout(&a),
        Command::Config(a) => supply::config(&a),
        Command::CaUpdate(a) => supply::ca_update(root, &a),
        Command::Check(a) => check::run(root, &a),
        Command::Sbom(a) => sbom::sbom(root, &a),
        Command::Provenance(a) => sbom::provenance(root, &a),
    }
}

/// The async runtime for registry work, created only by commands that need it — after the sandbox
/// child check in `main`, so no thread exists when a child enters its namespaces.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure { code: 2, error: anyhow::Error::new(e).context("cannot start the async runtime") })
}
