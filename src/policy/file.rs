//! The policy in force: the team's defaults, or a TOML file that changes parts of them (every table and
//! key is optional; what a file leaves out keeps its default).
//!
//! ```toml
//! [base]
//! allow = ["registry.access.redhat.com/ubi9", "registry.example.com/platform"]  # repository prefixes
//! [runtimes]
//! python_min = "3.8"
//! jdk_min = 11
//! jdk_lts = [8, 11, 17, 21, 25]
//! go_min = "1.17"
//! [nexus]
//! hosts = ["nexus.example.com"]
//! [secrets]
//! names = ["TOKEN", "PASSWORD", "PASSWD", "SECRET", "KEY", "APIKEY", "CREDENTIALS"]
//! allow = ["GPG_KEY"]
//! [ca]
//! require_layer = true
//! [severity]
//! base-unpinned = "error"   # error | warning | note | off
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::Severity;

/// The label an image carries when kiln packaged the company CA as its own layer (`--ca-persist`): the diff id
/// of that layer. Configurable with `[ca] label`.
pub const CA_LAYER_LABEL: &str = crate::supply::trust::persist::LABEL_LAYER;

/// Why a policy file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read the policy file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a valid policy.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What the TOML decoder said (with the line and column).
        message: String,
    },
}

/// Base image rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasePolicy {
    /// Allowed repositories (`registry/path` prefixes at a `/` boundary; `*` allows any).
    pub allow: Vec<String>,
}

impl Default for BasePolicy {
    fn default() -> Self {
        BasePolicy {
            allow: [
                "registry.access.redhat.com/ubi8",
                "registry.access.redhat.com/ubi9",
                "registry.redhat.io/ubi8",
                "registry.redhat.io/ubi9",
            ]
            .map(str::to_string)
            .to_vec(),
        }
    }
}

/// Runtime version rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimePolicy {
    /// Oldest Python allowed.
    pub python_min: String,
    /// Oldest JDK feature release allowed.
    pub jdk_min: u32,
    /// The JDK feature releases that are long-term-support lines.
    pub jdk_lts: Vec<u32>,
    /// Oldest Go allowed (toolchains and the Go that built a binary).
    pub go_min: String,
}

impl Default for RuntimePolicy {
    fn default() -> Self {
        RuntimePolicy { python_min: "3.8".into(), jdk_min: 11, jdk_lts: vec![8, 11, 17, 21, 25], go_min: "1.17".into() }
    }
}

/// Where dependencies must come from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NexusPolicy {
    /// The Nexus hosts (`nexus.example.com`, with or without a port or scheme). Empty: the download rules are
    /// not checked (the report says so).
    pub hosts: Vec<String>,
}

/// Secret-looking build arguments and environment variables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretPolicy {
    /// Words (split at `_`) that make a name secret-looking.
    pub names: Vec<String>,
    /// Names that are fine even so.
    pub allow: Vec<String>,
}

impl Default for SecretPolicy {
    fn default() -> Self {
        SecretPolicy {
            names: ["TOKEN", "PASSWORD", "PASSWD", "SECRET", "KEY", "APIKEY", "CREDENTIALS", "CREDENTIAL"]
                .map(str::to_string)
                .to_vec(),
            allow: vec!["GPG_KEY".into()],
        }
    }
}

/// The packaged CA layer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaPolicy {
    /// Every image must carry the company CA layer (`kiln build --ca-persist`).
    pub require_layer: bool,
    /// The label naming that layer's diff id.
    pub label: String,
}

impl Default for CaPolicy {
    fn default() -> Self {
        CaPolicy { require_layer: false, label: CA_LAYER_LABEL.into() }
    }
}

/// A severity override: a level, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Report as an error.
    Error,
    /// Report as a warning.
    Warning,
    /// Report as a note.
    Note,
    /// Do not report.
    Off,
}

/// A whole policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Base images.
    pub base: BasePolicy,
    /// Runtimes.
    pub runtimes: RuntimePolicy,
    /// Nexus.
    pub nexus: NexusPolicy,
    /// Secrets.
    pub secrets: SecretPolicy,
    /// CA layer.
    pub ca: CaPolicy,
    /// Severity per rule id.
    pub severity: BTreeMap<String, Level>,
    /// Images built by the same bake, allowed as bases whatever `[base] allow` says (set by the caller).
    #[serde(skip)]
    pub extra_bases: Vec<String>,
}

impl Policy {
    /// Reads a policy file; unknown keys, unknown rule ids and bad values are errors naming the line.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read { path: shown.clone(), source })?;
        Policy::parse(&text, &shown)
    }

    /// Parses policy text; `name` is used in messages.
    pub fn parse(text: &str, name: &str) -> Result<Policy, PolicyError> {
        let policy: Policy = toml::from_str(text)
            .map_err(|e| PolicyError::Invalid { path: name.to_string(), message: e.to_string() })?;
        for id in policy.severity.keys() {
            if !super::RULES.iter().any(|r| r.id == id) {
                let known: Vec<&str> = super::RULES.iter().map(|r| r.id).collect();
                return Err(PolicyError::Invalid {
                    path: name.to_string(),
                    message: format!("[severity] names an unknown rule {id:?} (rules: {})", known.join(", ")),
                });
            }
        }
        Ok(policy)
    }

    /// The severity of `rule` under this policy (`None` when switched off).
    pub fn severity_of(&self, rule: &str, default: Severity) -> Option<Severity> {
        match self.severity.get(rule) {
            None => Some(default),
            Some(Level::Off) => None,
            Some(Level::Error) => Some(Severity::Error),
            Some(Level::Warning) => Some(Severity::Warning),
            Some(Level::Note) => Some(Severity::Note),
        }
    }

    /// Whether the repository `repo` (`registry/path`, no tag) is an allowed base.
    pub fn base_allowed(&self, repo: &str) -> bool {
        let matches = |entry: &str| {
            let entry = entry.trim_end_matches("/*").trim_end_matches('/');
            entry == "*" || repo == entry || repo.strip_prefix(entry).is_some_and(|rest| rest.starts_with('/'))
        };
        self.base.allow.iter().any(|e| matches(e)) || self.extra_bases.iter().any(|e| matches(e))
    }

    /// The Nexus host names (ports and schemes dropped), lower case.
    pub fn nexus_hosts(&self) -> Vec<String> {
        self.nexus
            .hosts
            .iter()
            .map(|h| {
                let h = h.split("://").last().unwrap_or(h);
                let h = h.split('/').next().unwrap_or(h);
                h.rsplit_once(':').map_or(h, |(name, _)| name).to_ascii_lowercase()
            })
            .collect()
    }

    /// Whether `host` (with or without a port) is a Nexus host.
    pub fn is_nexus(&self, host: &str) -> bool {
        let name =
            host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(n, _)| n);
        self.nexus_hosts().iter().any(|h| h.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_override_parts_of_the_default() {
        let p = Policy::parse(
            "[nexus]\nhosts = [\"https://nexus.corp:8443/repository/\"]\n[severity]\nbase-unpinned = \"off\"\n",
            "p.toml",
        )
        .unwrap();
        assert_eq!(p.runtimes.python_min, "3.8");
        assert!(p.is_nexus("nexus.corp:443"));
        assert!(!p.is_nexus("pypi.org"));
        assert_eq!(p.severity_of("base-unpinned", Severity::Warning), None);
        assert!(p.base_allowed("registry.access.redhat.com/ubi9/python-39"));
        assert!(!p.base_allowed("registry.access.redhat.com/ubi9-evil/x"));
        let err = Policy::parse("[severity]\nno-such-rule = \"off\"\n", "p.toml").unwrap_err().to_string();
        assert!(err.contains("unknown rule"), "{err}");
        let err = Policy::parse("[base]\nalow = []\n", "p.toml").unwrap_err().to_string();
        assert!(err.contains("p.toml") && err.contains("alow"), "{err}");
    }
}
