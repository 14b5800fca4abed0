//! What a bake did: one [`BuildResult`] per build, printed as a table and written as JSON (`--report`).

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

/// How a build ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Built (some steps ran, or the image changed).
    Built,
    /// Every step came from the cache and the image is the one its name already had.
    UpToDate,
    /// Failed (after any retries).
    Failed,
    /// Stopped at its deadline.
    TimedOut,
    /// Not started because a build it needs failed.
    Skipped,
}

impl Status {
    /// Whether the build has an image.
    pub fn ok(&self) -> bool {
        matches!(self, Status::Built | Status::UpToDate)
    }

    fn text(&self) -> &'static str {
        match self {
            Status::Built => "built",
            Status::UpToDate => "up to date",
            Status::Failed => "FAILED",
            Status::TimedOut => "TIMED OUT",
            Status::Skipped => "skipped",
        }
    }
}

/// One attempt of a build.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    /// 1-based.
    pub number: u32,
    /// Wall time.
    pub seconds: f64,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Set when it was retried: why the failure looked transient.
    pub retried_because: Option<String>,
}

/// The result of one build.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildResult {
    /// The build.
    pub name: String,
    /// How it ended.
    pub status: Status,
    /// Wall time, retries and back-off included.
    pub seconds: f64,
    /// Steps run or reused.
    pub steps: usize,
    /// Steps from the cache.
    pub cached: usize,
    /// Image ID (config digest).
    pub image_id: Option<String>,
    /// Manifest digest.
    pub digest: Option<String>,
    /// Its names.
    pub tags: Vec<String>,
    /// The full log.
    pub log: Option<PathBuf>,
    /// The final error.
    pub error: Option<String>,
    /// Every attempt, with the reason of each retry.
    pub attempts: Vec<Attempt>,
}

impl BuildResult {
    /// A build not started because `because` failed.
    pub fn skipped(name: &str, because: &str) -> BuildResult {
        BuildResult {
            name: name.to_string(),
            status: Status::Skipped,
            seconds: 0.0,
            steps: 0,
            cached: 0,
            image_id: None,
            digest: None,
            tags: Vec::new(),
            log: None,
            error: Some(format!("needs {because}, which failed")),
            attempts: Vec::new(),
        }
    }

    /// `built 3.2s (5/7 cached)`-style summary for progress lines.
    pub fn summary(&self) -> String {
        let mut text = format!("{} {:.2}s", self.status.text(), self.seconds);
        if self.steps > 0 {
            let _ = write!(text, " ({}/{} steps cached)", self.cached, self.steps);
        }
        let retries = self.attempts.iter().filter(|a| a.retried_because.is_some()).count();
        if retries > 0 {
            let _ = write!(text, " after {retries} retr{}", if retries == 1 { "y" } else { "ies" });
        }
        text
    }
}

/// The final table: build, result, time, cached steps, image digest; then each failure's message.
pub fn table(results: &[BuildResult]) -> String {
    let width = results.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
    let mut out = format!("{:width$}  {:10}  {:>8}  {:>7}  {}\n", "BUILD", "RESULT", "TIME", "CACHED", "DIGEST");
    for r in results {
        let cached = if r.steps > 0 { format!("{}/{}", r.cached, r.steps) } else { "-".to_string() };
        let digest = r.digest.as_deref().map(short).unwrap_or("-");
        let retries = r.attempts.iter().filter(|a| a.retried_because.is_some()).count();
        let result =
            if retries > 0 { format!("{} ({retries}×↻)", r.status.text()) } else { r.status.text().to_string() };
        let _ = writeln!(out, "{:width$}  {:10}  {:>7.2}s  {:>7}  {digest}", r.name, result, r.seconds, cached);
    }
    let failed = results.iter().filter(|r| !r.status.ok()).count();
    let _ = writeln!(out, "{} builds: {} ok, {failed} not", results.len(), results.len() - failed);
    for r in results.iter().filter(|r| !r.status.ok()) {
        let log = r.log.as_ref().map(|l| format!(" (log: {})", l.display())).unwrap_or_default();
        let _ = writeln!(out, "{}: {}{log}", r.name, r.error.as_deref().unwrap_or("failed"));
    }
    for r in results {
        for a in r.attempts.iter().filter(|a| a.retried_because.is_some()) {
            let why = a.retried_because.as_deref().unwrap_or_default();
            let _ = writeln!(out, "{}: attempt {} retried: {why}", r.name, a.number);
        }
    }
    out
}

/// `sha256:0123456789ab` from a full digest.
fn short(digest: &str) -> &str {
    let end = digest.find(':').map_or(12, |i| i + 13).min(digest.len());
    &digest[..end]
}

/// The `--report` JSON document.
pub fn json(results: &[BuildResult]) -> String {
    #[derive(Serialize)]
    struct Report<'a> {
        ok: bool,
        builds: &'a [BuildResult],
    }
    let ok = results.iter().all(|r| r.status.ok());
    serde_json::to_string_pretty(&Report { ok, builds: results }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, status: Status) -> BuildResult {
        BuildResult { status, ..BuildResult::skipped(name, "x") }
    }

    #[test]
    fn the_table_lists_every_build_and_every_failure() {
        let mut ok = result("base", Status::Built);
        ok.steps = 4;
        ok.cached = 1;
        ok.digest = Some(format!("sha256:{}", "ab".repeat(32)));
        ok.error = None;
        ok.attempts.push(Attempt {
            number: 1,
            seconds: 1.0,
            error: Some("503".into()),
            retried_because: Some("registry said 503".into()),
        });
        let text = table(&[ok, result("app", Status::Skipped)]);
        assert!(text.contains("base   built (1×↻)"), "{text}");
        assert!(text.contains("1/4") && text.contains("sha256:abababababab\n"), "{text}");
        assert!(text.contains("app: needs x, which failed"), "{text}");
        assert!(text.contains("base: attempt 1 retried: registry said 503"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&json(&[result("app", Status::UpToDate)])).unwrap();
        assert_eq!(json["builds"][0]["status"], "up-to-date");
        assert_eq!(json["ok"], true);
    }
}
