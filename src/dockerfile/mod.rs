//! The Dockerfile front end: lexing and parsing to a syntax tree, typed instructions, shell-word
//! expansion and `.dockerignore` matching. Knows nothing of images, files on disk or processes.
//!
//! ```text
//!  text ──parser──▶ NodeTree (BuildKit's node tree; `dump` prints the reference's test format)
//!       ──typed───▶ Vec<Instruction> (flags checked, exec/shell form, heredocs; words unexpanded)
//! ```

mod args;
mod error;
mod flags;
mod node;
mod parser;
mod typed;

pub mod ignore;
pub mod instruction;
pub mod lint;
pub mod shell;

pub use error::{ParseError, Warning};
pub use node::{Node, RawHeredoc, dump, go_quote};
pub use parser::{NodeTree, parse_nodes};

use instruction::Instruction;

/// A parsed Dockerfile: the node tree and the typed instructions.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// The file's name for messages.
    pub file: String,
    /// The escape character in force.
    pub escape: char,
    /// The `# syntax=` directive, recorded and ignored.
    pub syntax: Option<String>,
    /// The `# check=` directive (build-check options), applied by [`lint`].
    pub check: Option<String>,
    /// The syntax tree.
    pub nodes: Vec<Node>,
    /// One typed instruction per node.
    pub instructions: Vec<Instruction>,
    /// Accepted oddities worth telling.
    pub warnings: Vec<Warning>,
}

/// Parses a Dockerfile into nodes and typed instructions; every error names `file` and a line.
pub fn parse(source: &str, file: &str) -> Result<Dockerfile, ParseError> {
    let tree = parse_nodes(source, file)?;
    let instructions = tree
        .nodes
        .iter()
        .map(|n| typed::instruction(n).map_err(|p| p.at(file, n.start_line)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Dockerfile {
        file: file.to_string(),
        escape: tree.escape,
        syntax: tree.syntax,
        check: tree.check,
        nodes: tree.nodes,
        instructions,
        warnings: tree.warnings,
    })
}

#[cfg(test)]
mod conformance;
