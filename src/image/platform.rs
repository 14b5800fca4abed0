//! The platform images are built for (the host's), in OCI's words: `linux/amd64`, `linux/arm64/v8`.

use std::fmt;

/// An OS/architecture/variant triple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// GOARCH naming: `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v8` for arm64, `v7` for arm, none elsewhere.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of the machine kiln runs on.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform { os: "linux".into(), architecture: architecture.into(), variant: variant.map(str::to_string) }
    }

    /// Whether `os/arch[/variant]` names this platform (a missing variant matches any).
    pub fn matches_text(&self, text: &str) -> bool {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [os, arch] => *os == self.os && *arch == self.architecture,
            [os, arch, variant] => {
                *os == self.os && *arch == self.architecture && self.variant.as_deref().is_none_or(|v| v == *variant)
            }
            _ => false,
        }
    }

    /// Whether an index entry's platform fits this one (arm64 entries without a variant count as v8).
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        os == self.os
            && architecture == self.architecture
            && match (self.variant.as_deref(), variant) {
                (_, None) | (None, _) => true,
                (Some(a), Some(b)) => a == b,
            }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_rules() {
        let arm = Platform { os: "linux".into(), architecture: "arm64".into(), variant: Some("v8".into()) };
        assert!(arm.matches("linux", "arm64", None));
        assert!(arm.matches("linux", "arm64", Some("v8")));
        assert!(!arm.matches("linux", "arm64", Some("v9")));
        assert!(!arm.matches("linux", "amd64", None));
        assert!(arm.matches_text("linux/arm64"));
        assert!(!arm.matches_text("windows/arm64"));
    }
}
