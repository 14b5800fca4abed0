//! Rendering build events: a live line per step on a terminal, plain lines otherwise (logs, CI), or nothing
//! with `--quiet`. Build output goes to stderr so that stdout carries only the image ID, as podman does.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::build::events::{Event, Reporter};

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing but errors.
    Quiet,
    /// One plain line per event.
    Plain,
    /// A spinner for the running step, replaced by its final line.
    Live,
}

impl Mode {
    /// `Live` on a terminal, `Plain` otherwise, `Quiet` when asked.
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Live
        } else {
            Mode::Plain
        }
    }
}

/// The CLI's event renderer.
pub struct Progress {
    mode: Mode,
    current: Mutex<Option<(String, Option<ProgressBar>)>>,
}

impl Progress {
    /// A renderer in `mode`.
    pub fn new(mode: Mode) -> Progress {
        Progress { mode, current: Mutex::new(None) }
    }

    fn line(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl Reporter for Progress {
    fn report(&self, event: Event) {
        if self.mode == Mode::Quiet {
            return;
        }
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::StepStarted { stage, number, total, text } => {
                let title = format!("[{stage}] STEP {number}/{total}: {text}");
                let bar = (self.mode == Mode::Live).then(|| {
                    let bar = ProgressBar::new_spinner();
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_message(title.clone());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                if bar.is_none() {
                    self.line(&title);
                }
                *current = Some((title, bar));
            }
            Event::StepDone { elapsed, cached } => {
                let status = if cached { "CACHED".to_string() } else { format!("done {}", seconds(elapsed)) };
                match current.take() {
                    Some((title, Some(bar))) => {
                        bar.finish_and_clear();
                        self.line(&format!("{title} … {status}"));
                    }
                    _ => self.line(&format!("--> {status}")),
                }
            }
            Event::Output { line } => match current.as_ref().and_then(|(_, b)| b.as_ref()) {
                Some(bar) => bar.println(format!("  │ {line}")),
                None => self.line(&format!("  │ {line}")),
            },
            Event::Transfer { direction, digest, size } => {
                let size = size.map(|s| format!(" ({s} bytes)")).unwrap_or_default();
                let text = format!("{direction} {digest}{size}");
                match current.as_ref().and_then(|(_, b)| b.as_ref()) {
                    Some(bar) => bar.println(text),
                    None => self.line(&text),
                }
            }
            Event::Warning(text) => self.line(&format!("warning: {text}")),
            Event::Info(text) => self.line(&text),
        }
    }
}
