//! Progress events of a build, and the trait through which the CLI renders them.
//!
//! The builder never prints: it reports events, and the CLI decides between a live terminal display,
//! plain lines (logs, CI) and silence (`--quiet`).

use std::time::Duration;

/// Something worth telling the person watching a build.
#[derive(Debug, Clone)]
pub enum Event {
    /// A step starts: `[stage 1/2] STEP 3/7: COPY . /app`.
    StepStarted {
        /// Stage label (name or index).
        stage: String,
        /// 1-based step number within the stage.
        number: usize,
        /// Steps in the stage.
        total: usize,
        /// The instruction as written.
        text: String,
    },
    /// A step finished; `cached` when its result came from the cache.
    StepDone {
        /// How long it took.
        elapsed: Duration,
        /// Whether the result was reused.
        cached: bool,
    },
    /// A line of output from a RUN step.
    Output {
        /// The line, without its newline.
        line: String,
    },
    /// A blob transfer began (pull or push).
    Transfer {
        /// `pull` or `push`.
        direction: &'static str,
        /// Short digest.
        digest: String,
        /// Size in bytes when known.
        size: Option<u64>,
    },
    /// A warning (unused build args, deprecated instructions, ...).
    Warning(String),
    /// Anything else worth one line.
    Info(String),
}

/// Receives build events; implemented by the CLI's renderers.
pub trait Reporter: Send + Sync {
    /// Handles one event.
    fn report(&self, event: Event);
}

/// A reporter that drops everything (library use, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _event: Event) {}
}
