//! Where `kiln push` sends an image: the transport prefixes podman and skopeo use.

use std::path::PathBuf;

/// A push or export destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `docker://REF` or a plain reference: an OCI distribution registry.
    Registry(String),
    /// `oci:DIR[:TAG]`: an OCI image layout directory.
    OciDir {
        /// The layout directory.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name` to record, if any.
        tag: Option<String>,
    },
    /// `oci-archive:FILE[:TAG]`: a tar of an OCI image layout.
    OciArchive {
        /// The archive file.
        path: PathBuf,
        /// The ref name to record, if any.
        tag: Option<String>,
    },
    /// `docker-archive:FILE[:REF]`: `docker save` format, loadable by `podman load`.
    DockerArchive {
        /// The archive file.
        path: PathBuf,
        /// The repository tag to record, if any.
        reference: Option<String>,
    },
}

impl Destination {
    /// Parses a destination argument; anything without a known transport prefix is a registry reference.
    pub fn parse(text: &str) -> Destination {
        if let Some(rest) = text.strip_prefix("docker://") {
            return Destination::Registry(rest.to_string());
        }
        if let Some(rest) = text.strip_prefix("oci:") {
            let (path, tag) = split_path_and_tag(rest);
            return Destination::OciDir { path, tag };
        }
        if let Some(rest) = text.strip_prefix("oci-archive:") {
            let (path, tag) = split_path_and_tag(rest);
            return Destination::OciArchive { path, tag };
        }
        if let Some(rest) = text.strip_prefix("docker-archive:") {
            let (path, reference) = split_path_and_tag(rest);
            return Destination::DockerArchive { path, reference };
        }
        Destination::Registry(text.to_string())
    }
}

/// Splits `PATH[:TAG]` at the first `:` — as containers/image does, so paths cannot contain a colon.
fn split_path_and_tag(text: &str) -> (PathBuf, Option<String>) {
    match text.split_once(':') {
        Some((path, tag)) if !tag.is_empty() => (PathBuf::from(path), Some(tag.to_string())),
        Some((path, _)) => (PathBuf::from(path), None),
        None => (PathBuf::from(text), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_are_recognised() {
        let cases = [
            ("docker://r:5000/a:1", Destination::Registry("r:5000/a:1".into())),
            ("r:5000/a:1", Destination::Registry("r:5000/a:1".into())),
            ("oci:/tmp/x:v1", Destination::OciDir { path: "/tmp/x".into(), tag: Some("v1".into()) }),
            ("oci:/tmp/x", Destination::OciDir { path: "/tmp/x".into(), tag: None }),
            ("oci-archive:a.tar:t", Destination::OciArchive { path: "a.tar".into(), tag: Some("t".into()) }),
            (
                "docker-archive:a.tar:app:1",
                Destination::DockerArchive { path: "a.tar".into(), reference: Some("app:1".into()) },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Destination::parse(text), want, "{text}");
        }
    }
}
