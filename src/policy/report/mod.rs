//! Rendering findings: plain text for people (`Dockerfile:3: error[base-not-allowed] ...`), JSON for
//! scripts, SARIF 2.1.0 for code-scanning dashboards.

mod sarif;

pub use sarif::sarif;

use super::{Finding, counts};

/// Findings as text, one per finding plus its hint, then a summary line; `skipped` lists rules that could
/// not be judged.
pub fn text(findings: &[Finding], skipped: &[String]) -> String {
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!("{}: {}[{}] {}\n  hint: {}\n", f.location, f.severity.name(), f.rule, f.message, f.hint));
    }
    for s in skipped {
        out.push_str(&format!("note: {s}\n"));
    }
    let (e, w, n) = counts(findings);
    if findings.is_empty() {
        out.push_str("no findings\n");
    } else {
        out.push_str(&format!("{e} error(s), {w} warning(s), {n} note(s)\n"));
    }
    out
}

/// Findings as a JSON document: `{"findings": [...], "summary": {...}, "skipped": [...]}`.
pub fn json(findings: &[Finding], skipped: &[String]) -> serde_json::Value {
    let (errors, warnings, notes) = counts(findings);
    serde_json::json!({
        "findings": findings,
        "summary": {"errors": errors, "warnings": warnings, "notes": notes},
        "skipped": skipped,
    })
}
