//! The build pod, in one place: its security settings, its volumes and the kiln command it runs. Both
//! emitters use these, so the assumptions below are changed here only.
//!
//! Assumption (to be confirmed by the build-pod work, issue 10): kiln builds in a pod admitted by the
//! Kubernetes *restricted* Pod Security Standard and OpenShift's `restricted-v2` SCC — non-root (the uid
//! the platform assigns, gid 0), no privilege escalation, every capability dropped, seccomp
//! `RuntimeDefault` — with `--isolation auto`, which picks rootless user namespaces where the node allows
//! them and falls back to chroot isolation otherwise. `runAsUser` is left to the platform (OpenShift
//! assigns one from the namespace's range; on plain Kubernetes the image's numeric USER applies).

use serde_json::{Value, json};

/// Where the pod keeps kiln's store (an emptyDir: pods share steps through the registry cache).
pub const STORE: &str = "/kiln-store";

/// The container's `securityContext`.
pub fn container_security_context() -> Value {
    json!({
        "runAsNonRoot": true,
        "allowPrivilegeEscalation": false,
        "capabilities": { "drop": ["ALL"] },
        "seccompProfile": { "type": "RuntimeDefault" }
    })
}

/// The pod's `securityContext`.
pub fn pod_security_context() -> Value {
    json!({
        "runAsNonRoot": true,
        "seccompProfile": { "type": "RuntimeDefault" }
    })
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
    fn the_pod_is_restricted() {
        let c = container_security_context();
        assert_eq!(c["allowPrivilegeEscalation"], false);
        assert_eq!(c["capabilities"]["drop"][0], "ALL");
        assert_eq!(c["seccompProfile"]["type"], "RuntimeDefault");
        assert!(kiln_args("x", &[]).windows(2).any(|w| w == ["--isolation", "auto"]));
    }
}
