//! `kiln bake --emit tekton`: a Task that runs one build with kiln's own image, a Pipeline with one task
//! per build (`runAfter` from the graph, `retries`, `timeout` from the deadline) sharing a `source`
//! workspace, and a PipelineRun that carries each build's cpu/memory limits (`taskRunSpecs`, since a
//! Pipeline's tasks cannot set them). Create the Task and Pipeline with `kubectl apply`, the run with
//! `kubectl create` (it has a `generateName`).

use serde_json::{Value, json};

use super::{Options, pod};
use crate::bake::BakeError;
use crate::bake::graph::Graph;

/// The Task's name.
pub const TASK: &str = "kiln-build";

/// The manifests for `selection`.
pub fn render(graph: &Graph, selection: &[usize], options: &Options, pass: &[String]) -> Result<String, BakeError> {
    let mut objects = vec![task(options), pipeline(graph, selection, options, pass)];
    objects.push(pipeline_run(graph, selection, options));
    pod::yaml_stream(&objects)
}

fn metadata(name: &str, options: &Options) -> Value {
    let mut m = json!({ "name": name, "labels": { "app.kubernetes.io/managed-by": "kiln-bake" } });
    if let Some(ns) = &options.namespace {
        m["namespace"] = json!(ns);
    }
    m
}

fn task(options: &Options) -> Value {
    let mut args: Vec<Value> = pod::kiln_args("$(params.build)", &[]).into_iter().map(Value::String).collect();
    args.push(json!("$(params.args[*])"));
    json!({
        "apiVersion": "tekton.dev/v1",
        "kind": "Task",
        "metadata": metadata(TASK, options),
        "spec": {
            "description": "Builds one image of a kiln bake set and pushes it (kiln's own image, no daemon, no privileges).",
            "params": [
                { "name": "build", "type": "string", "description": "The build's name in the set." },
                { "name": "args", "type": "array", "default": [], "description": "The inputs and flags of the bake." }
            ],
            "workspaces": [
                { "name": "source", "description": "The source checkout holding the BuildConfigs and the contexts." },
                { "name": "dockerconfig", "optional": true, "description": "A docker config.json with registry credentials." }
            ],
            "volumes": [ { "name": "kiln-store", "emptyDir": {} } ],
            "stepTemplate": {
                "securityContext": pod::container_security_context(options.security),
                "env": pod::env()
            },
            "steps": [{
                "name": "build",
                "image": options.kiln_image,
                "workingDir": "$(workspaces.source.path)",
                "command": ["kiln"],
                "args": args,
                "env": [{
                    "name": "REGISTRY_AUTH_FILE",
                    "value": "$(workspaces.dockerconfig.path)/config.json"
                }],
                "volumeMounts": [ { "name": "kiln-store", "mountPath": pod::STORE } ]
            }]
        }
    })
}

fn pipeline(graph: &Graph, selection: &[usize], options: &Options, pass: &[String]) -> Value {
    let tasks: Vec<Value> = selection
        .iter()
        .map(|&i| {
            let b = &graph.builds[i];
            let mut t = json!({
                "name": pod::label(&b.name),
                "taskRef": { "name": TASK },
                "params": [
                    { "name": "build", "value": b.name },
                    { "name": "args", "value": pass }
                ],
                "workspaces": [
                    { "name": "source", "workspace": "source" },
                    { "name": "dockerconfig", "workspace": "dockerconfig" }
                ],
                "retries": options.retries
            });
            let after: Vec<String> = graph.needs[i]
                .keys()
                .filter(|d| selection.contains(d))
                .map(|&d| pod::label(&graph.builds[d].name))
                .collect();
            if !after.is_empty() {
                t["runAfter"] = json!(after);
            }
            if let Some(d) = b.deadline {
                t["timeout"] = json!(format!("{}s", d.as_secs()));
            }
            t
        })
        .collect();
    json!({
        "apiVersion": "tekton.dev/v1",
        "kind": "Pipeline",
        "metadata": metadata("kiln-bake", options),
        "spec": {
            "description": "The builds of a kiln bake set in dependency order; steps shared through the registry cache.",
            "workspaces": [ { "name": "source" }, { "name": "dockerconfig", "optional": true } ],
            "tasks": tasks
        }
    })
}

fn pipeline_run(graph: &Graph, selection: &[usize], options: &Options) -> Value {
    let specs: Vec<Value> = selection
        .iter()
        .filter_map(|&i| {
            let b = &graph.builds[i];
            pod::resources(&b.limits).map(|r| json!({ "pipelineTaskName": pod::label(&b.name), "computeResources": r }))
        })
        .collect();
    // The default pipeline timeout (1h) would cut a storm of one-hour builds short: allow every build its
    // deadline on every attempt.
    let total: u64 = selection.iter().filter_map(|&i| graph.builds[i].deadline).map(|d| d.as_secs()).sum::<u64>()
        * u64::from(options.retries + 1);
    let mut metadata =
        json!({ "generateName": "kiln-bake-", "labels": { "app.kubernetes.io/managed-by": "kiln-bake" } });
    if let Some(ns) = &options.namespace {
        metadata["namespace"] = json!(ns);
    }
    let mut spec = json!({
        "pipelineRef": { "name": "kiln-bake" },
        "workspaces": [ { "name": "source", "persistentVolumeClaim": { "claimName": "kiln-bake-source" } } ],
        "taskRunSpecs": specs,
        // The pod-level settings cover the containers Tekton adds to each TaskRun's pod too.
        "taskRunTemplate": { "podTemplate": { "securityContext": pod::pod_security_context(options.security) } }
    });
    if total > 3600 {
        spec["timeouts"] = json!({ "pipeline": format!("{total}s") });
    }
    json!({ "apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": metadata, "spec": spec })
}
