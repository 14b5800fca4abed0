//! `kiln parse`: print a Dockerfile's syntax tree (with `--dump`, in BuildKit's test-data format).

use super::Failure;
use super::args::ParseArgs;
use crate::dockerfile;

/// Runs `kiln parse`.
pub fn run(args: &ParseArgs) -> Result<(), Failure> {
    let source = fs_err::read_to_string(&args.file)?;
    // Messages name the file as the user wrote it, so `path/Dockerfile:12` can be opened as is.
    let name = args.file.display().to_string();
    let parsed = dockerfile::parse(&source, &name)?;
    for warning in &parsed.warnings {
        eprintln!("warning: {warning}");
    }
    if args.dump {
        print!("{}", dockerfile::dump::dump(&parsed.nodes));
    } else {
        for instruction in &parsed.instructions {
            println!("{:>4}: {:?}", instruction.span.start_line, instruction.command);
        }
    }
    Ok(())
}
