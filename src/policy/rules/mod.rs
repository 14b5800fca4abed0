//! The rules: one table of ids, default severities, descriptions and hints, and one file per kind of input.

pub mod dockerfile;
pub mod fetch;
pub mod image;
mod shell;

use super::Severity;

/// A rule's fixed facts.
#[derive(Debug, Clone, Copy)]
pub struct RuleInfo {
    /// Its id.
    pub id: &'static str,
    /// Its severity when the policy does not override it.
    pub default: Severity,
    /// What it checks, in one line.
    pub description: &'static str,
    /// How to fix a finding.
    pub hint: &'static str,
}

/// Every rule kiln checks.
pub const RULES: &[RuleInfo] = &[
    RuleInfo {
        id: "base-not-allowed",
        default: Severity::Error,
        description: "Base images come from the allowed repositories (Red Hat UBI by default).",
        hint: "build FROM an allowed base (registry.access.redhat.com/ubi8/... or ubi9/...), or add its repository to [base] allow",
    },
    RuleInfo {
        id: "base-unpinned",
        default: Severity::Warning,
        description: "Base images are pinned by digest, so a rebuild uses the same base.",
        hint: "pin the base: FROM name:tag@sha256:<digest> (kiln inspect or skopeo inspect shows the digest)",
    },
    RuleInfo {
        id: "base-latest",
        default: Severity::Warning,
        description: "Base images name a version, not :latest (or no tag).",
        hint: "name the base's version tag (FROM registry.access.redhat.com/ubi9/python-311:1-52)",
    },
    RuleInfo {
        id: "python-version",
        default: Severity::Error,
        description: "Python in the image is 3.8 or newer.",
        hint: "use a Python 3.8+ base (ubi9/python-39, ubi9/python-311) or install python3.11 and drop the old one",
    },
    RuleInfo {
        id: "jdk-version",
        default: Severity::Error,
        description: "JDKs in the image are 11 or newer.",
        hint: "use ubi9/openjdk-17 or ubi9/openjdk-21 (or install java-17-openjdk) and drop the old JDK",
    },
    RuleInfo {
        id: "jdk-not-lts",
        default: Severity::Error,
        description: "JDKs in the image are on a long-term-support line.",
        hint: "use an LTS JDK (11, 17, 21)",
    },
    RuleInfo {
        id: "go-version",
        default: Severity::Error,
        description: "Go toolchains in the image are 1.17 or newer.",
        hint: "use a current go-toolset base (ubi9/go-toolset) or install a newer Go",
    },
    RuleInfo {
        id: "go-binary-version",
        default: Severity::Error,
        description: "Go programs in the image were built with Go 1.17 or newer.",
        hint: "rebuild the program with a current Go toolchain",
    },
    RuleInfo {
        id: "add-url-checksum",
        default: Severity::Error,
        description: "ADD of a URL pins the content with --checksum.",
        hint: "add --checksum=sha256:<digest of the file> to the ADD",
    },
    RuleInfo {
        id: "pipe-to-shell",
        default: Severity::Error,
        description: "No script is downloaded and run in one go (curl ... | sh).",
        hint: "download the script (through Nexus), check its digest, then run it",
    },
    RuleInfo {
        id: "download-not-nexus",
        default: Severity::Error,
        description: "Dependencies are downloaded from the Nexus repository manager only.",
        hint: "point the download at the Nexus repository (kiln build --nexus configures pip, npm, Maven, Go, dnf and apt)",
    },
    RuleInfo {
        id: "secret-in-arg-env",
        default: Severity::Error,
        description: "No secret is passed as a build argument or environment variable.",
        hint: "pass secrets with RUN --mount=type=secret and kiln build --secret id=NAME,src=FILE; they never enter the image",
    },
    RuleInfo {
        id: "user-root",
        default: Severity::Error,
        description: "The image does not run as root.",
        hint: "end the final stage with USER <uid> (UBI images use 1001)",
    },
    RuleInfo {
        id: "fetch-not-nexus",
        default: Severity::Error,
        description: "Every request the build made went to Nexus (fetch log).",
        hint: "route the download through Nexus, or build with --network proxy-only to refuse it",
    },
    RuleInfo {
        id: "ca-layer-missing",
        default: Severity::Error,
        description: "The image carries the company CA as its own layer (kiln build --ca-persist).",
        hint: "build with --ca-persist (or run kiln ca-update on the image)",
    },
];

/// The facts of rule `id` (which is always one of [`RULES`]).
pub fn info(id: &str) -> &'static RuleInfo {
    RULES.iter().find(|r| r.id == id).unwrap_or(&RULES[0])
}

/// A finding of rule `id` with its default severity and hint.
pub fn finding(id: &'static str, message: String, location: super::Location) -> super::Finding {
    let rule = info(id);
    super::Finding { rule: rule.id, severity: rule.default, message, location, hint: rule.hint.to_string() }
}
