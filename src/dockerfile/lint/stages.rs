//! The Dockerfile cut into the global part (before the first FROM) and stages, as the checks see it:
//! instruction indices (into both `nodes` and `instructions`) and which earlier stage a stage builds on.

use super::super::Dockerfile;
use super::super::instruction::{Command, From, Instruction};
use super::super::node::Node;

/// One stage: its FROM and the instructions after it.
#[derive(Debug)]
pub struct Stage<'a> {
    /// Index of the FROM instruction.
    pub at: usize,
    /// The FROM's fields.
    pub from: &'a From,
    /// Indices of the stage's other instructions, in order.
    pub commands: Vec<usize>,
    /// The earlier stage named by the FROM image word, if any.
    pub parent: Option<usize>,
}

/// The global instructions and the stages.
#[derive(Debug, Default)]
pub struct Stages<'a> {
    /// Indices of the instructions before the first FROM (global ARGs).
    pub global: Vec<usize>,
    /// The stages in order.
    pub stages: Vec<Stage<'a>>,
}

/// Cuts `df` into stages.
pub fn split(df: &Dockerfile) -> Stages<'_> {
    let mut out = Stages::default();
    for (i, instruction) in df.instructions.iter().enumerate() {
        match (&instruction.command, out.stages.last_mut()) {
            (Command::From(from), _) => {
                let base = from.image.to_lowercase();
                let parent = out.stages.iter().rposition(|s| s.from.name.as_deref() == Some(base.as_str()));
                out.stages.push(Stage { at: i, from, commands: Vec::new(), parent });
            }
            (_, Some(stage)) => stage.commands.push(i),
            (_, None) => out.global.push(i),
        }
    }
    out
}

/// The instruction keyword as written (`From`, `copy`): the first word of the logical line.
pub fn keyword_as_written(node: &Node) -> &str {
    node.original.split_whitespace().next().unwrap_or_default()
}

/// The lines an instruction spans, as the sink wants them.
pub fn span(instruction: &Instruction) -> (usize, usize) {
    (instruction.span.start_line, instruction.span.end_line)
}
