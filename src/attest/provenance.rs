//! SLSA v1 provenance as an in-toto v1 statement: the image (by manifest digest) as the subject; the
//! Dockerfile, target, build args (values of secret-looking names redacted; `--secret` values never
//! reach this module) and context as external parameters; base images by digest, the Dockerfile's and the
//! context's digests and every fetched URL (ADD, and the proxy's fetch log) as resolved dependencies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::fetched::FetchRecord;

/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA provenance v1's predicate type.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The media type of an in-toto statement.
pub const MEDIA_TYPE: &str = "application/vnd.in-toto+json";
/// kiln's build type: what `externalParameters` and `internalParameters` mean.
pub const BUILD_TYPE: &str = "urn:kiln:build-type:dockerfile:v1";

/// A base image the build resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseImage {
    /// The reference as the Dockerfile (or `--from`) wrote it, after ARG expansion.
    pub name: String,
    /// The normalised reference.
    pub reference: String,
    /// The manifest digest used.
    pub digest: String,
}

/// Everything the provenance says about one build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRecord {
    /// The Dockerfile as given on the command line.
    pub dockerfile: String,
    /// Its sha256 (hex).
    pub dockerfile_sha256: String,
    /// The context directory as given.
    pub context: String,
    /// The sha256 (hex) over the context's files after `.dockerignore` (paths, types, modes, contents).
    pub context_sha256: String,
    /// `--target`.
    pub target: Option<String>,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--from`.
    pub from_override: Option<String>,
    /// The platform built for.
    pub platform: String,
    /// Base images, in the order the build resolved them.
    pub bases: Vec<BaseImage>,
    /// What the build fetched.
    pub fetched: Vec<FetchRecord>,
    /// `--network` of RUN steps.
    pub network: String,
    /// When the build started and finished (RFC 3339).
    pub started: String,
    /// When the build finished.
    pub finished: String,
}

/// The subject: the image's repository and manifest digest.
#[derive(Debug, Clone)]
pub struct ProvenanceSubject {
    /// `registry/repository` (or a local name).
    pub name: String,
    /// `sha256:<hex>`.
    pub digest: String,
}

/// The provenance statement for `record`; `secret_looking` decides which build-arg values are redacted.
pub fn statement(subject: &ProvenanceSubject, record: &BuildRecord, secret_looking: &dyn Fn(&str) -> bool) -> Value {
    let args: BTreeMap<&String, &str> =
        record.build_args.iter().map(|(k, v)| (k, if secret_looking(k) { "<redacted>" } else { v.as_str() })).collect();
    let mut deps: Vec<Value> = record
        .bases
        .iter()
        .map(|b| {
            json!({
                "uri": format!("pkg:docker/{}?platform={}", b.reference.split('@').next().unwrap_or(&b.reference), record.platform.replace('/', "%2F")),
                "name": b.name,
                "digest": {"sha256": b.digest.trim_start_matches("sha256:")},
                "annotations": {"kind": "base-image"},
            })
        })
        .collect();
    deps.push(json!({"name": record.dockerfile, "digest": {"sha256": record.dockerfile_sha256}, "annotations": {"kind": "dockerfile"}}));
    if !record.context_sha256.is_empty() {
        deps.push(json!({"name": record.context, "digest": {"sha256": record.context_sha256}, "annotations": {"kind": "context"}}));
    }
    for f in &record.fetched {
        let mut d = json!({"uri": f.uri(), "annotations": {
            "kind": "fetched",
            "via": match f.via { super::fetched::Via::Add => "add", super::fetched::Via::Proxy => "proxy" },
            "method": f.method,
        }});
        if let Some(sha) = &f.sha256 {
            d["digest"] = json!({"sha256": sha});
        }
        for (key, value) in [
            ("step", f.step.clone().map(Value::from)),
            ("status", f.status.map(Value::from)),
            ("bytes", f.bytes.map(Value::from)),
            ("time", f.time.clone().map(Value::from)),
        ] {
            if let Some(v) = value {
                d["annotations"][key] = v;
            }
        }
        deps.push(d);
    }
    let subject_digest = subject.digest.trim_start_matches("sha256:");
    json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject.name, "digest": {"sha256": subject_digest}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "dockerfile": record.dockerfile,
                    "context": record.context,
                    "target": record.target,
                    "buildArgs": args,
                    "from": record.from_override,
                    "platform": record.platform,
                },
                "internalParameters": {"network": record.network},
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": "urn:kiln:builder", "version": {"kiln": env!("CARGO_PKG_VERSION")}},
                "metadata": {
                    "invocationId": format!("urn:kiln:build:{subject_digest}:{}", record.started),
                    "startedOn": record.started,
                    "finishedOn": record.finished,
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_names_inputs_and_redacts_secret_args() {
        let record = BuildRecord {
            dockerfile: "Dockerfile".into(),
            dockerfile_sha256: "aa".into(),
            context: ".".into(),
            context_sha256: "bb".into(),
            build_args: [("VERSION".to_string(), "1.2".to_string()), ("NEXUS_TOKEN".to_string(), "s3cret".to_string())]
                .into(),
            platform: "linux/amd64".into(),
            bases: vec![BaseImage {
                name: "registry.access.redhat.com/ubi9/ubi:9.4".into(),
                reference: "registry.access.redhat.com/ubi9/ubi:9.4".into(),
                digest: format!("sha256:{}", "cd".repeat(32)),
            }],
            fetched: vec![FetchRecord::from_add("https://x.example/a.tgz", "Dockerfile:3", 200, 5, "ef")],
            ..Default::default()
        };
        let subject = ProvenanceSubject { name: "r/app".into(), digest: format!("sha256:{}", "01".repeat(32)) };
        let s = statement(&subject, &record, &|k| k.contains("TOKEN"));
        let text = s.to_string();
        assert!(!text.contains("s3cret"));
        assert_eq!(s["predicate"]["buildDefinition"]["externalParameters"]["buildArgs"]["VERSION"], "1.2");
        let deps = s["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
        assert_eq!(deps[0]["digest"]["sha256"], "cd".repeat(32));
        assert_eq!(deps[0]["uri"], "pkg:docker/registry.access.redhat.com/ubi9/ubi:9.4?platform=linux%2Famd64");
        assert_eq!(deps[3]["uri"], "https://x.example/a.tgz");
        assert_eq!(deps[3]["digest"]["sha256"], "ef");
        assert_eq!(s["subject"][0]["digest"]["sha256"], "01".repeat(32));
    }
}
