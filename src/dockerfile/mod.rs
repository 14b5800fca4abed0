//! The Dockerfile front end: lexing and parsing to a syntax tree, typed instructions, shell-word
//! expansion and `.dockerignore` matching. Knows nothing of images, files on disk or processes.

pub mod ignore;
pub mod instruction;
pub mod shell;
