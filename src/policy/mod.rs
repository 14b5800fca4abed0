//! Policy: rules over a Dockerfile (its plan), an image (its inventory and config) and a build's fetch log,
//! giving [`Finding`]s — each with a rule id, a severity, a place (`Dockerfile:LINE` or a path in the
//! image) and a hint — and rendering them as text, JSON or SARIF 2.1.0.
//!
//! ```text
//!  Policy (TOML file or the default) ─┐
//!  Input { plan?, image?, fetch log? } ─ rules::{dockerfile, image, fetch} ─ Vec<Finding> ─ report::{text, json, sarif}
//! ```
//!
//! Knows nothing of the store or registries: the CLI and the builder hand it the facts.

mod file;
pub mod report;
pub(crate) mod rules;
mod version;

use serde::Serialize;

pub use file::{CA_LAYER_LABEL, Policy, PolicyError};
pub use rules::dockerfile::secret_looking;
pub use rules::{RULES, RuleInfo};

use crate::attest::fetched::FetchRecord;
use crate::image::ImageConfig;
use crate::inventory::Inventory;
use crate::plan::Plan;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Note,
    /// Should be fixed; does not fail the check.
    Warning,
    /// Breaks the policy: `kiln check` exits 1 and an enforcing build stops before its push.
    Error,
}

impl Severity {
    /// `error`, `warning`, `note` (SARIF's level names too).
    pub fn name(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Where a finding is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Location {
    /// A line of a Dockerfile.
    Dockerfile {
        /// The file as given.
        file: String,
        /// 1-based line.
        line: usize,
    },
    /// A path in an image (or one of its config fields, written `config:User`).
    Image {
        /// The image's name.
        image: String,
        /// The path inside it.
        path: String,
    },
    /// A line of a fetch log.
    FetchLog {
        /// The log file.
        file: String,
        /// 1-based line.
        line: usize,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dockerfile { file, line } | Location::FetchLog { file, line } => write!(f, "{file}:{line}"),
            Location::Image { image, path } => write!(f, "{image} {path}"),
        }
    }
}

/// One policy violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule's id (`base-not-allowed`).
    pub rule: &'static str,
    /// Its severity under the policy in force.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// Where.
    pub location: Location,
    /// How to fix it.
    pub hint: String,
}

/// An image to check.
#[derive(Debug, Clone)]
pub struct ImageInput<'a> {
    /// Its name, for messages.
    pub name: String,
    /// Its config.
    pub config: &'a ImageConfig,
    /// Its inventory.
    pub inventory: &'a Inventory,
    /// Its manifest's annotations (`org.opencontainers.image.base.name` names the base).
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Base images known from elsewhere (its provenance): (name, where it was read), checked when no
    /// Dockerfile is.
    pub bases: Vec<(String, String)>,
}

/// A Dockerfile to check, planned with the build's arguments and target.
#[derive(Debug, Clone)]
pub struct DockerfileInput<'a> {
    /// The plan (stages, bases after ARG expansion, instructions with their lines).
    pub plan: &'a Plan,
}

/// Everything a check looks at; any part may be absent.
#[derive(Debug, Clone, Default)]
pub struct Input<'a> {
    /// The Dockerfile.
    pub dockerfile: Option<DockerfileInput<'a>>,
    /// The image.
    pub image: Option<ImageInput<'a>>,
    /// The build's fetch log, with line numbers, and the file's name.
    pub fetch_log: Option<(String, &'a [(usize, FetchRecord)])>,
}

/// Runs every rule of `policy` over `input`; findings sorted by place, errors first within a place.
pub fn check(policy: &Policy, input: &Input<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(df) = &input.dockerfile {
        rules::dockerfile::check(policy, df.plan, &mut out);
    }
    if let Some(image) = &input.image {
        rules::image::check(policy, image, input.dockerfile.is_some(), &mut out);
    }
    if let Some((file, records)) = &input.fetch_log {
        rules::fetch::check(policy, file, records, &mut out);
    }
    let mut kept: Vec<Finding> = out
        .into_iter()
        .filter_map(|mut f| {
            f.severity = policy.severity_of(f.rule, f.severity)?;
            Some(f)
        })
        .collect();
    kept.sort_by(|a, b| {
        location_key(&a.location)
            .cmp(&location_key(&b.location))
            .then(b.severity.cmp(&a.severity))
            .then(a.rule.cmp(b.rule))
    });
    kept.dedup();
    kept
}

fn location_key(l: &Location) -> (u8, String, usize) {
    match l {
        Location::Dockerfile { file, line } => (0, file.clone(), *line),
        Location::Image { image, path } => (1, format!("{image} {path}"), 0),
        Location::FetchLog { file, line } => (2, file.clone(), *line),
    }
}

/// Counts by severity: (errors, warnings, notes).
pub fn counts(findings: &[Finding]) -> (usize, usize, usize) {
    let n = |s| findings.iter().filter(|f| f.severity == s).count();
    (n(Severity::Error), n(Severity::Warning), n(Severity::Note))
}
