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
    if !with_dockerfile && let Some(base) = image.annotations.get(BASE_NAME) {
        super::dockerfile::base_rules(policy, base, at(&format!("annotation:{BASE_NAME}")), out);
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
