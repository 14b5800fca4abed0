//! Rules over an image: its runtimes (Python, JDKs, Go toolchains) and the Go its programs were built with,
//! the user it runs as, its base (from the `org.opencontainers.image.base.name` annotation when no
//! Dockerfile is checked alongside) and the packaged CA layer.

use super::finding;
use crate::inventory::{RuntimeKind, feature_version};
use crate::policy::Finding;
use crate::policy::version::older;
use crate::policy::{ImageInput, Location, Policy};

/// The OCI annotation naming an image's base.
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";

/// Runs the image rules; `with_dockerfile` leaves the base and user to the Dockerfile's findings when they
/// can decide.
pub fn check(policy: &Policy, image: &ImageInput<'_>, with_dockerfile: bool, out: &mut Vec<Finding>) {
    let at = |path: &str| Location::Image { image: image.name.clone(), path: path.to_string() };
    let r = &policy.runtimes;
    for rt in &image.inventory.runtimes {
        match rt.kind {
            RuntimeKind::Python if older(&rt.version, &r.python_min) => {
                let mut f = finding(
                    "python-version",
                    format!("Python {} is older than {}", rt.version, r.python_min),
                    at(&rt.path),
                );
                if rt.platform {
                    f.message.push_str(" (RHEL 8's platform-python, which dnf itself runs on)");
                    f.severity = crate::policy::Severity::Note;
                }
                out.push(f);
            }
            RuntimeKind::Jdk => match feature_version(&rt.version) {
                Some(v) if v < r.jdk_min => out.push(finding(
                    "jdk-version",
                    format!("JDK {} (Java {v}) is older than Java {}", rt.version, r.jdk_min),
                    at(&rt.path),
                )),
                Some(v) if !r.jdk_lts.contains(&v) => out.push(finding(
                    "jdk-not-lts",
                    format!("JDK {} (Java {v}) is not a long-term-support release", rt.version),
                    at(&rt.path),
                )),
                _ => {}
            },
            RuntimeKind::Go if older(&rt.version, &r.go_min) => out.push(finding(
                "go-version",
                format!("Go toolchain {} is older than {}", rt.version, r.go_min),
                at(&rt.path),
            )),
            _ => {}
        }
    }
    for bin in &image.inventory.go_binaries {
        if older(bin.info.version_number(), &r.go_min) {
            let message = format!("built with {}, older than Go {}", bin.info.go_version, r.go_min);
            out.push(finding("go-binary-version", message, at(&bin.path)));
        }
    }
    let dockerfile_decided_user = out.iter().any(|f| f.rule == "user-root");
    let user = image.config.config.user.clone().unwrap_or_default();
    if !dockerfile_decided_user && super::dockerfile::is_root(&user) {
        let shown = if user.is_empty() { "no user set".to_string() } else { format!("User {user}") };
        out.push(finding("user-root", format!("the image runs as root ({shown})"), at("config:User")));
    }
    if !with_dockerfile {
        if let Some(base) = image.annotations.get(BASE_NAME) {
            super::dockerfile::base_rules(policy, base, at(&format!("annotation:{BASE_NAME}")), out);
        }
        for (base, place) in &image.bases {
            super::dockerfile::base_rules(policy, base, at(place), out);
        }
    }
    if policy.ca.require_layer {
        let labels = image.config.config.labels.clone().unwrap_or_default();
        let present = labels
            .get(&policy.ca.label)
            .is_some_and(|diff_id| image.config.rootfs.diff_ids.iter().any(|d| d.to_string() == *diff_id));
        if !present {
            let message =
                format!("the image has no company CA layer (label {} naming one of its layers)", policy.ca.label);
            out.push(finding("ca-layer-missing", message, at("config:Labels")));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::image::ImageConfig;
    use crate::inventory::{BuildInfo, GoBinary, Inventory, Runtime, RuntimeKind};
    use crate::policy::{ImageInput, Input, Policy, Severity, check};

    fn runtime(kind: RuntimeKind, version: &str, platform: bool) -> Runtime {
        Runtime {
            kind,
            version: version.into(),
            path: format!("/{}", kind.name()),
            also_at: Vec::new(),
            vendor: None,
            platform,
            java_home: false,
        }
    }

    fn findings(inv: &Inventory, user: &str, annotations: &[(&str, &str)], policy: &Policy) -> Vec<(String, Severity)> {
        let mut config = ImageConfig::default();
        config.config.user = Some(user.to_string());
        let annotations: BTreeMap<String, String> =
            annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let input = Input {
            image: Some(ImageInput {
                name: "app".into(),
                config: &config,
                inventory: inv,
                annotations,
                bases: Vec::new(),
            }),
            ..Default::default()
        };
        check(policy, &input).into_iter().map(|f| (f.rule.to_string(), f.severity)).collect()
    }

    #[test]
    fn runtimes_and_go_binaries() {
        let p = Policy::default();
        let ok = Inventory {
            runtimes: vec![
                runtime(RuntimeKind::Python, "3.11", false),
                runtime(RuntimeKind::Jdk, "21.0.2", false),
                runtime(RuntimeKind::Go, "1.22.1", false),
            ],
            ..Default::default()
        };
        assert!(findings(&ok, "1001", &[], &p).is_empty());
        let old = Inventory {
            runtimes: vec![
                runtime(RuntimeKind::Python, "2.7", false),
                runtime(RuntimeKind::Python, "3.6", true),
                runtime(RuntimeKind::Jdk, "1.8.0_402", false),
                runtime(RuntimeKind::Go, "1.16", false),
            ],
            go_binaries: vec![GoBinary {
                path: "/bin/app".into(),
                info: BuildInfo { go_version: "go1.15.2".into(), path: None, main: None, deps: Vec::new() },
            }],
            ..Default::default()
        };
        let mut got = findings(&old, "1001", &[], &p);
        got.sort();
        assert_eq!(
            got,
            [
                ("go-binary-version".to_string(), Severity::Error),
                ("go-version".to_string(), Severity::Error),
                ("jdk-version".to_string(), Severity::Error),
                ("python-version".to_string(), Severity::Note),
                ("python-version".to_string(), Severity::Error),
            ]
        );
    }

    #[test]
    fn user_and_base_annotation() {
        let p = Policy::default();
        let inv = Inventory::default();
        assert_eq!(findings(&inv, "", &[], &p), [("user-root".to_string(), Severity::Error)]);
        assert_eq!(findings(&inv, "0:0", &[], &p), [("user-root".to_string(), Severity::Error)]);
        let base = [(super::BASE_NAME, "docker.io/library/python:3.12")];
        let got: Vec<String> = findings(&inv, "1001", &base, &p).into_iter().map(|f| f.0).collect();
        assert_eq!(got, ["base-not-allowed", "base-unpinned"]);
        let ubi = [(super::BASE_NAME, "registry.access.redhat.com/ubi9/ubi-minimal:9.4")];
        let got: Vec<String> = findings(&inv, "1001", &ubi, &p).into_iter().map(|f| f.0).collect();
        assert_eq!(got, ["base-unpinned"]);
    }
}
