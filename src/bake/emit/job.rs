//! `kiln bake --emit job`: one Kubernetes Job per build, for clusters without Tekton. Jobs cannot wait
//! for each other, so each carries its level (`kiln.dev/level`) and what it needs (`kiln.dev/needs`):
//! apply level 0, wait for completion, then level 1, and so on (the README shows the loop). Retries are
//! the Job's `backoffLimit`, the deadline its `activeDeadlineSeconds`.

use serde_json::{Value, json};

use super::{Options, pod};
use crate::bake::BakeError;
use crate::bake::graph::Graph;

/// The manifests for `selection`, in graph order.
pub fn render(graph: &Graph, selection: &[usize], options: &Options, pass: &[String]) -> Result<String, BakeError> {
    let jobs: Vec<Value> = selection.iter().map(|&i| job(graph, i, selection, options, pass)).collect();
    pod::yaml_stream(&jobs)
}

fn job(graph: &Graph, i: usize, selection: &[usize], options: &Options, pass: &[String]) -> Value {
    let b = &graph.builds[i];
    let needs: Vec<String> =
        graph.needs[i].keys().filter(|d| selection.contains(d)).map(|&d| graph.builds[d].name.clone()).collect();
    let mut container = json!({
        "name": "kiln",
        "image": options.kiln_image,
        "command": ["kiln"],
        "args": pod::kiln_args(&b.name, pass),
        "workingDir": "/workspace/source",
        "env": pod::env(),
        "securityContext": pod::container_security_context(options.security),
        "volumeMounts": [
            { "name": "source", "mountPath": "/workspace/source", "readOnly": true },
            { "name": "kiln-store", "mountPath": pod::STORE }
        ]
    });
    if let Some(r) = pod::resources(&b.limits) {
        container["resources"] = r;
    }
    let mut metadata = json!({
        "name": format!("kiln-bake-{}", pod::label(&b.name)).chars().take(63).collect::<String>(),
        "labels": {
            "app.kubernetes.io/managed-by": "kiln-bake",
            "kiln.dev/build": pod::label(&b.name),
            "kiln.dev/level": graph.level[i].to_string()
        },
        "annotations": { "kiln.dev/needs": needs.join(",") }
    });
    if let Some(ns) = &options.namespace {
        metadata["namespace"] = json!(ns);
    }
    let mut spec = json!({
        "backoffLimit": options.retries,
        "template": {
            "metadata": { "labels": { "kiln.dev/build": pod::label(&b.name) } },
            "spec": {
                "restartPolicy": "Never",
                "securityContext": pod::pod_security_context(options.security),
                "containers": [container],
                "volumes": [
                    { "name": "source", "persistentVolumeClaim": { "claimName": "kiln-bake-source" } },
                    { "name": "kiln-store", "emptyDir": {} }
                ]
            }
        }
    });
    if let Some(d) = b.deadline {
        spec["activeDeadlineSeconds"] = json!(d.as_secs());
    }
    json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec })
}
