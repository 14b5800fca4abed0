//! `kiln parse`: print a Dockerfile's syntax tree (with `--dump`, in BuildKit's test-data format).

use super::args::ParseArgs;
use super::{Failure, output};
use crate::dockerfile;
use std::io::Write as _;

/// Runs `kiln parse`.
pub fn run(args: &ParseArgs) -> Result<(), Failure> {
    let source = fs_err::read_to_string(&args.file)?;
    // Messages name the file as the user wrote it, so `path/Dockerfile:12` can be opened as is.
    let name = args.file.display().to_string();
    if args.dump {
        // The dump is the syntax tree only, as the reference prints it: instruction-level checks would
        // reject some of the reference's own test files (unknown flags are a build error, not a syntax one).
        let tree = dockerfile::parse_nodes(&source, &name)?;
        write!(output::stdout(), "{}", dockerfile::dump(&tree.nodes))?;
        return Ok(());
    }
    let parsed = dockerfile::parse(&source, &name)?;
    for warning in &parsed.warnings {
        eprintln!("warning: {warning}");
    }
    {
        for instruction in &parsed.instructions {
            writeln!(output::stdout(), "{:>4}: {:?}", instruction.span.start_line, instruction.command)?;
        }
    }
    Ok(())
}
