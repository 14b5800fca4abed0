//! JDKs and JREs: the `release` file at the top of every OpenJDK build (`JAVA_VERSION="11.0.20"`,
//! `IMPLEMENTOR="Red Hat, Inc."`). Java 8's versions are written `1.8.0_392`; [`feature_version`] maps
//! them to 8.

use super::scan::Fact;

/// Parses a `release` file; `None` when it has no `JAVA_VERSION` (a file of the same name elsewhere).
pub fn parse_release(text: &str) -> Option<Fact> {
    let fields = super::os::parse_os_release(text);
    let version = fields.get("JAVA_VERSION")?.clone();
    if version.is_empty() {
        return None;
    }
    Some(Fact::JavaRelease { version, implementor: fields.get("IMPLEMENTOR").cloned() })
}

/// The feature release of a Java version: `11.0.20` → 11, `1.8.0_392` → 8, `17` → 17.
pub fn feature_version(version: &str) -> Option<u32> {
    let mut parts = version.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty());
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 { parts.next()?.parse().ok() } else { Some(first) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_old_and_new() {
        let fact = parse_release("IMPLEMENTOR=\"Red Hat, Inc.\"\nJAVA_VERSION=\"1.8.0_392\"\n").unwrap();
        let Fact::JavaRelease { version, implementor } = fact else { panic!() };
        assert_eq!(feature_version(&version), Some(8));
        assert_eq!(implementor.as_deref(), Some("Red Hat, Inc."));
        assert_eq!(feature_version("11.0.20"), Some(11));
        assert_eq!(feature_version("21"), Some(21));
        assert!(parse_release("VERSION=1\n").is_none());
    }
}
