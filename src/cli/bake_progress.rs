//! `kiln bake` progress: on a terminal, one live line per running build (its latest output) under an
//! overall `N/M` bar; otherwise plain lines when a build starts, retries and ends. Full output is in each
//! build's log file; a failed build's last lines are shown here too.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::progress::Mode;
use crate::bake::report::BuildResult;
use crate::bake::scheduler::Event;

/// Renders scheduler events.
pub struct Renderer {
    mode: Mode,
    multi: MultiProgress,
    overall: Option<ProgressBar>,
    bars: Mutex<Vec<(String, ProgressBar)>>,
}

impl Renderer {
    /// A renderer for `total` builds.
    pub fn new(mode: Mode, total: usize) -> Renderer {
        let multi = MultiProgress::new();
        let overall = (mode == Mode::Live).then(|| {
            let bar = multi.add(ProgressBar::new(total as u64));
            bar.set_style(
                ProgressStyle::with_template("[{pos}/{len}] {elapsed} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Renderer { mode, multi, overall, bars: Mutex::new(Vec::new()) }
    }

    /// Shows one event.
    pub fn event(&self, event: Event) {
        match event {
            Event::Started { build, attempt } => self.started(&build, attempt),
            Event::Line { build, text } => {
                if let Some((_, bar)) = self.bars().iter().find(|(n, _)| *n == build) {
                    bar.set_message(format!("{build}: {}", shorten(&text, 90)));
                }
            }
            Event::Retrying { build, attempt, wait, reason } => {
                self.line(&format!(
                    "[{build}] attempt {attempt} failed: {reason}; retrying in {:.0}s",
                    wait.as_secs_f64()
                ));
            }
            Event::Finished(result) => self.finished(&result),
            Event::Warning(text) => self.line(&format!("warning: {text}")),
        }
    }

    fn bars(&self) -> std::sync::MutexGuard<'_, Vec<(String, ProgressBar)>> {
        self.bars.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn started(&self, build: &str, attempt: u32) {
        let again = if attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
        if self.mode != Mode::Live {
            self.line(&format!("[{build}] started{again}"));
            return;
        }
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("  {spinner} {elapsed:>4} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(format!("{build}{again}"));
        bar.enable_steady_tick(Duration::from_millis(120));
        let mut bars = self.bars();
        bars.retain(|(n, b)| {
            let keep = n != build;
            if !keep {
                b.finish_and_clear();
            }
            keep
        });
        bars.push((build.to_string(), bar));
        self.update_overall(&bars);
    }

    fn finished(&self, result: &BuildResult) {
        {
            let mut bars = self.bars();
            if let Some(pos) = bars.iter().position(|(n, _)| *n == result.name) {
                let (_, bar) = bars.remove(pos);
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
            if let Some(o) = &self.overall {
                o.inc(1);
            }
            self.update_overall(&bars);
        }
        let digest = result.digest.as_deref().map(|d| format!(" {d}")).unwrap_or_default();
        self.line(&format!("[{}] {}{digest}", result.name, result.summary()));
        if !result.status.ok() {
            if let Some(error) = &result.error {
                self.line(&format!("[{}] {error}", result.name));
            }
            if let Some(log) = &result.log {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                for line in &lines[lines.len().saturating_sub(15)..] {
                    self.line(&format!("[{}]   {line}", result.name));
                }
                self.line(&format!("[{}] full log: {}", result.name, log.display()));
            }
        }
    }

    fn update_overall(&self, bars: &[(String, ProgressBar)]) {
        if let Some(o) = &self.overall {
            let names: Vec<&str> = bars.iter().map(|(n, _)| n.as_str()).collect();
            o.set_message(if names.is_empty() { String::new() } else { format!("building {}", names.join(", ")) });
        }
    }

    fn line(&self, text: &str) {
        match self.mode {
            Mode::Live => {
                let _ = self.multi.println(text);
            }
            _ => eprintln!("{text}"),
        }
    }

    /// Clears the live display.
    pub fn finish(&self) {
        if let Some(o) = &self.overall {
            o.finish_and_clear();
        }
        for (_, bar) in self.bars().drain(..) {
            bar.finish_and_clear();
        }
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max - 1).collect();
    format!("{cut}…")
}
