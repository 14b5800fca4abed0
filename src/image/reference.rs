//! Image references, parsed and normalised as docker and podman do (distribution/reference):
//! `busybox` → `docker.io/library/busybox:latest`, `localhost/x`, `host:port/path:tag@sha256:...`.

use std::fmt;

/// Why a reference is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reference {input:?}: {reason}")]
pub struct RefError {
    /// The text given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses and normalises with Docker Hub as the registry of unqualified names.
    pub fn parse(input: &str) -> Result<Reference, RefError> {
        Reference::parse_with_search(input, &["docker.io".to_string()])
    }

    /// Parses and normalises; unqualified names get the first registry of `search`.
    pub fn parse_with_search(input: &str, search: &[String]) -> Result<Reference, RefError> {
        let err = |reason: &str| RefError { input: input.to_string(), reason: reason.to_string() };
        if input.is_empty() {
            return Err(err("empty reference"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (input, None),
        };
        if let Some(d) = digest {
            let hex = d.strip_prefix("sha256:").ok_or_else(|| err("digest must be sha256:<64 hex digits>"))?;
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                return Err(err("digest must be sha256:<64 lower-case hex digits>"));
            }
        }
        // The tag is after the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(err("tag must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'"));
        }
        let (registry, path) =
            split_domain(name, search).ok_or_else(|| err("no registry to resolve the name against"))?;
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(err("repository name must be lowercase"));
        }
        if path.is_empty() || !path.split('/').all(valid_component) {
            return Err(err("repository name components must be lower-case letters, digits and separators (. _ __ -)"));
        }
        let repository = if registry == "docker.io" && !path.contains('/') { format!("library/{path}") } else { path };
        let tag = match (tag, digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t.map(str::to_string),
        };
        Ok(Reference { registry, repository, tag, digest: digest.map(str::to_string) })
    }

    /// The registry host (`docker.io`, `quay.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The host to talk HTTP to (Docker Hub's API lives at `registry-1.docker.io`).
    pub fn api_host(&self) -> &str {
        if self.is_docker_hub() { "registry-1.docker.io" } else { &self.registry }
    }

    /// Whether this is a Docker Hub reference.
    pub fn is_docker_hub(&self) -> bool {
        self.registry == "docker.io"
    }

    /// The tag or digest to ask the registry for (the digest when both are present).
    pub fn reference_part(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference { tag: Some(tag.to_string()), digest: None, ..self.clone() }
    }

    /// The same repository pinned to a digest.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference { digest: Some(digest.to_string()), ..self.clone() }
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Splits off the registry: the first component is one when it has a '.', a ':' or is `localhost`.
fn split_domain(name: &str, search: &[String]) -> Option<(String, String)> {
    match name.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            let registry =
                if first == "index.docker.io" || first == "registry-1.docker.io" { "docker.io" } else { first };
            Some((registry.to_string(), rest.to_string()))
        }
        _ => search.first().map(|r| (r.clone(), name.to_string())),
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    if bytes.is_empty() || !bytes[0].is_ascii_alphanumeric() || !bytes[bytes.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && matches!(bytes[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok || i == start {
            return false;
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.as_bytes()[0] != b'.'
        && t.as_bytes()[0] != b'-'
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let d = "sha256:".to_string() + &"a".repeat(64);
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("user/app", "docker.io/user/app:latest"),
            ("index.docker.io/user/app:v1", "docker.io/user/app:v1"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app:1", "localhost:5000/app:1"),
            ("127.0.0.1:5000/a/b/c:tag", "127.0.0.1:5000/a/b/c:tag"),
            ("registry.access.redhat.com/ubi9/ubi-minimal", "registry.access.redhat.com/ubi9/ubi-minimal:latest"),
            ("quay.io/x/y-z__w.v:1.0-rc_1", "quay.io/x/y-z__w.v:1.0-rc_1"),
        ];
        for (input, want) in cases {
            assert_eq!(Reference::parse(input).unwrap().to_string(), want, "{input}");
        }
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!((r.tag(), r.digest()), (None, Some(d.as_str())));
        let r = Reference::parse(&format!("busybox:1@{d}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/busybox:1@{d}"));
        assert_eq!(r.reference_part(), d);
    }

    #[test]
    fn invalid_references() {
        for bad in ["", "Foo", "a//b", "a:", "a:-x", "a@sha256:xyz", "-a", "a/-b", "a..b", "UPPER/case:1"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be invalid");
        }
        assert_eq!(Reference::parse("Foo").unwrap_err().reason, "repository name must be lowercase");
    }

    #[test]
    fn search_list_and_hosts() {
        let r = Reference::parse_with_search("ubi9/ubi", &["registry.access.redhat.com".into()]).unwrap();
        assert_eq!(r.to_string(), "registry.access.redhat.com/ubi9/ubi:latest");
        assert_eq!(Reference::parse("busybox").unwrap().api_host(), "registry-1.docker.io");
        assert_eq!(Reference::parse("127.0.0.1:5000/x").unwrap().api_host(), "127.0.0.1:5000");
    }
}
