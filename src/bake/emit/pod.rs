//! The build pod, in one place: its security settings, its volumes and the kiln command it runs. Both
//! emitters use these, so what a pod is allowed is decided here only.
//!
//! The security settings are a choice of [`PodSecurity`] profiles, each the translation of a way of
//! running kiln's image that `tests/it/build_pod.rs` tests (README, "In a build pod"):
//!
//! | profile | emitted | admitted by | tested as (podman) | `RUN isolation` |
//! | --- | --- | --- | --- | --- |
//! | `openshift` (default) | non-root, `allowPrivilegeEscalation: false`, all capabilities dropped, seccomp `RuntimeDefault`; uid left to the platform | `restricted-v2` SCC | `--user 1000680000:0 --security-opt no-new-privileges --cap-drop ALL` under the containers-common seccomp profile, which is CRI-O's default | `rootless`, that uid only |
//! | `kubernetes` | the same with uid 1000680000, gid 0 and seccomp `Localhost` `kiln/seccomp.json` (the containers-common profile, installed on the nodes) | `restricted` Pod Security Standard | the same | the same |
//! | `kubernetes-unconfined` | the same with seccomp and AppArmor `Unconfined` | `privileged` Pod Security Standard | the same with `--security-opt seccomp=unconfined` | the same |
//!
//! On plain Kubernetes, `RuntimeDefault` is containerd's profile, which refuses user namespaces and mounts
//! without CAP_SYS_ADMIN; a non-root pod cannot chroot either, so under it every RUN step fails — hence the
//! two Kubernetes profiles. Every profile runs kiln with `--isolation auto`.

use serde_json::{Value, json};

/// Where the pod keeps kiln's store (an emptyDir: pods share steps through the registry cache).
pub const STORE: &str = "/kiln-store";

/// The uid and gid of the Kubernetes profiles: the tested arbitrary uid of group 0, as OpenShift assigns
/// them (no passwd entry and no sub-id range in kiln's image).
pub const KUBERNETES_IDS: (u32, u32) = (1_000_680_000, 0);

/// The `Localhost` seccomp profile of the `kubernetes` profile, relative to the kubelet's seccomp directory
/// (`/var/lib/kubelet/seccomp/` by default).
pub const SECCOMP_PROFILE: &str = "kiln/seccomp.json";

/// What the emitted pods are allowed (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodSecurity {
    /// OpenShift's `restricted-v2` SCC.
    #[default]
    Openshift,
    /// Kubernetes' `restricted` Pod Security Standard with a `Localhost` seccomp profile on the nodes.
    Kubernetes,
    /// Kubernetes' `privileged` Pod Security Standard: seccomp and AppArmor unconfined.
    KubernetesUnconfined,
}

impl PodSecurity {
    fn seccomp(self) -> Value {
        match self {
            PodSecurity::Openshift => json!({ "type": "RuntimeDefault" }),
            PodSecurity::Kubernetes => json!({ "type": "Localhost", "localhostProfile": SECCOMP_PROFILE }),
            PodSecurity::KubernetesUnconfined => json!({ "type": "Unconfined" }),
        }
    }

    /// The settings both the pod and the container carry.
    fn common(self) -> serde_json::Map<String, Value> {
        let mut map = serde_json::Map::new();
        map.insert("runAsNonRoot".into(), json!(true));
        if self != PodSecurity::Openshift {
            // OpenShift assigns a uid from the namespace's range; plain Kubernetes would run the image's
            // USER, which is root in kiln's image, and refuse it as `runAsNonRoot`.
            map.insert("runAsUser".into(), json!(KUBERNETES_IDS.0));
            map.insert("runAsGroup".into(), json!(KUBERNETES_IDS.1));
        }
        map.insert("seccompProfile".into(), self.seccomp());
        if self == PodSecurity::KubernetesUnconfined {
            // containerd's default AppArmor profile (where AppArmor is enabled) denies mount.
            map.insert("appArmorProfile".into(), json!({ "type": "Unconfined" }));
        }
        map
    }
}

/// The container's `securityContext`.
pub fn container_security_context(security: PodSecurity) -> Value {
    let mut map = security.common();
    map.insert("allowPrivilegeEscalation".into(), json!(false));
    map.insert("capabilities".into(), json!({ "drop": ["ALL"] }));
    Value::Object(map)
}

/// The pod's `securityContext`.
pub fn pod_security_context(security: PodSecurity) -> Value {
    Value::Object(security.common())
}

/// The isolation flag the pods run kiln with.
pub const ISOLATION: &str = "auto";

/// Environment of the kiln container: a writable HOME for an arbitrary uid.
pub fn env() -> Value {
    json!([{ "name": "HOME", "value": "/tmp" }])
}

/// `kiln --root STORE bake --only NAME --push ...`: the pod runs one build of the same inputs, so the
/// cluster builds exactly what `kiln bake` builds here (OpenShift's `from` rule, env, labels included).
pub fn kiln_args(build: &str, pass: &[String]) -> Vec<String> {
    let mut args: Vec<String> =
        ["--root", STORE, "bake", "--only", build, "--push", "--isolation", ISOLATION].map(String::from).to_vec();
    args.extend(pass.iter().cloned());
    args
}

/// `resources` with the build's limits (requests equal to limits, as a build storm should be planned).
pub fn resources(limits: &crate::bake::Limits) -> Option<Value> {
    let (cpu, memory) = limits.quantities();
    if cpu.is_none() && memory.is_none() {
        return None;
    }
    let mut map = serde_json::Map::new();
    if let Some(c) = cpu {
        map.insert("cpu".into(), Value::String(c));
    }
    if let Some(m) = memory {
        map.insert("memory".into(), Value::String(m));
    }
    Some(json!({ "limits": map, "requests": map }))
}

/// A DNS-1123 label from a build name (lower case, `[a-z0-9-]`, at most 63 characters).
pub fn label(name: &str) -> String {
    let mut out: String =
        name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    out.truncate(63);
    out.trim_matches('-').to_string()
}

/// Several objects as one multi-document YAML stream.
pub fn yaml_stream(objects: &[Value]) -> Result<String, crate::bake::BakeError> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&yaml_serde::to_string(object).map_err(|e| crate::bake::BakeError::Syntax {
            path: "(emitted manifests)".into(),
            message: e.to_string(),
        })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_dns_labels() {
        assert_eq!(label("Python.App_1"), "python-app-1");
        assert_eq!(label(&"a".repeat(80)).len(), 63);
    }

    #[test]
    fn every_profile_is_non_root_without_privilege_escalation_or_capabilities() {
        for security in [PodSecurity::Openshift, PodSecurity::Kubernetes, PodSecurity::KubernetesUnconfined] {
            let c = container_security_context(security);
            assert_eq!(c["runAsNonRoot"], true, "{security:?}");
            assert_eq!(c["allowPrivilegeEscalation"], false, "{security:?}");
            assert_eq!(c["capabilities"], json!({ "drop": ["ALL"] }), "{security:?}");
            assert_eq!(pod_security_context(security)["seccompProfile"], c["seccompProfile"], "{security:?}");
        }
        assert!(kiln_args("x", &[]).windows(2).any(|w| w == ["--isolation", "auto"]));
    }

    #[test]
    fn openshift_leaves_the_uid_to_the_platform_and_keeps_its_seccomp_profile() {
        let c = container_security_context(PodSecurity::Openshift);
        assert_eq!(c["seccompProfile"], json!({ "type": "RuntimeDefault" }));
        assert!(c.get("runAsUser").is_none() && c.get("runAsGroup").is_none() && c.get("appArmorProfile").is_none());
    }

    #[test]
    fn kubernetes_names_a_uid_and_a_seccomp_profile_that_allows_user_namespaces() {
        let c = container_security_context(PodSecurity::Kubernetes);
        assert_eq!((c["runAsUser"].as_u64(), c["runAsGroup"].as_u64()), (Some(1_000_680_000), Some(0)));
        assert_eq!(c["seccompProfile"], json!({ "type": "Localhost", "localhostProfile": "kiln/seccomp.json" }));
        assert!(c.get("appArmorProfile").is_none(), "restricted admits no unconfined AppArmor");
        let u = container_security_context(PodSecurity::KubernetesUnconfined);
        assert_eq!(u["seccompProfile"], json!({ "type": "Unconfined" }));
        assert_eq!(u["appArmorProfile"], json!({ "type": "Unconfined" }));
        assert_eq!(u["runAsUser"], c["runAsUser"]);
    }
}
