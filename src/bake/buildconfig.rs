//! OpenShift BuildConfig YAML → [`BuildSpec`]s. Reads single documents, multi-document files and
//! `kind: List`; `ImageStream` objects tell which ImageStreamTags are imported from elsewhere. Of a
//! BuildConfig it reads the Docker strategy (`from`, `buildArgs`, `dockerfilePath`, `env`, `noCache`),
//! the source (`contextDir`, inline `dockerfile`, `git.uri` mapped to a local checkout), `output.to`
//! (and `imageLabels`), `resources.limits`, `completionDeadlineSeconds` and ImageChange triggers.
//! Every other field and kind is noted in [`Ignored`] — reported once, never dropped silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use yaml_serde::Value;

use super::limits::{parse_cpu, parse_memory};
use super::{BakeError, BakeSet, BuildSpec, Dockerfile, Ignored, ImageRef, Limits, LoadOptions, git};
use crate::plan::FromRule;

type Rest = BTreeMap<String, Value>;

#[derive(Deserialize)]
struct BuildConfig {
    metadata: Meta,
    spec: Spec,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    strategy: Strategy,
    #[serde(default)]
    source: Source,
    #[serde(default)]
    output: Output,
    #[serde(default)]
    resources: Resources,
    completion_deadline_seconds: Option<u64>,
    #[serde(default)]
    triggers: Vec<Trigger>,
    #[serde(flatten)]
    rest: Rest,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Strategy {
    #[serde(rename = "type")]
    kind: Option<String>,
    docker_strategy: Option<DockerStrategy>,
    #[serde(flatten)]
    rest: Rest,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DockerStrategy {
    from: Option<ObjRef>,
    #[serde(default)]
    build_args: Vec<NameValue>,
    dockerfile_path: Option<String>,
    #[serde(default)]
    env: Vec<NameValue>,
    #[serde(default)]
    no_cache: bool,
    #[serde(flatten)]
    rest: Rest,
}

#[derive(Deserialize)]
struct NameValue {
    name: String,
    value: Option<String>,
    #[serde(flatten)]
    rest: Rest,
}

#[derive(Deserialize, Clone)]
struct ObjRef {
    kind: String,
    name: String,
    namespace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Source {
    #[serde(rename = "type")]
    kind: Option<String>,
    context_dir: Option<String>,
    dockerfile: Option<String>,
    git: Option<Git>,
    #[serde(flatten)]
    rest: Rest,
}

#[derive(Deserialize)]
struct Git {
    uri: String,
    #[serde(rename = "ref")]
    reference: Option<String>,
    #[serde(flatten)]
    rest: Rest,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Output {
    to: Option<ObjRef>,
    #[serde(default)]
    image_labels: Vec<NameValue>,
    #[serde(flatten)]
    rest: Rest,
}

#[derive(Deserialize, Default)]
struct Resources {
    #[serde(default)]
    limits: BTreeMap<String, Value>,
    #[serde(flatten)]
    rest: Rest,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Trigger {
    #[serde(rename = "type")]
    kind: String,
    image_change: Option<ImageChange>,
}

#[derive(Deserialize)]
struct ImageChange {
    from: Option<ObjRef>,
}

#[derive(Deserialize)]
struct ImageStream {
    metadata: Meta,
    #[serde(default)]
    spec: StreamSpec,
}

#[derive(Deserialize, Default)]
struct StreamSpec {
    #[serde(default)]
    tags: Vec<StreamTag>,
}

#[derive(Deserialize)]
struct StreamTag {
    name: String,
    from: Option<ObjRef>,
}

/// Reads the BuildConfigs (and ImageStreams) of `files`.
pub fn load(files: &[PathBuf], options: &LoadOptions) -> Result<BakeSet, BakeError> {
    let mut configs: Vec<(PathBuf, BuildConfig)> = Vec::new();
    let mut streams: BTreeMap<String, String> = BTreeMap::new();
    let mut ignored = Ignored::default();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|source| BakeError::Read { path: file.clone(), source })?;
        for document in yaml_serde::Deserializer::from_str(&text) {
            let value = Value::deserialize(document).map_err(|e| syntax(file, e))?;
            objects(file, value, &mut configs, &mut streams, &mut ignored)?;
        }
    }
    let mut builds = Vec::new();
    for (file, config) in configs {
        builds.push(to_spec(&file, config, &streams, options, &mut ignored)?);
    }
    Ok(BakeSet { builds, ignored })
}

fn syntax(path: &Path, e: yaml_serde::Error) -> BakeError {
    BakeError::Syntax { path: path.to_path_buf(), message: e.to_string() }
}

/// Sorts one document (or a List's items) into BuildConfigs, ImageStream imports and ignored kinds.
fn objects(
    file: &Path,
    value: Value,
    configs: &mut Vec<(PathBuf, BuildConfig)>,
    streams: &mut BTreeMap<String, String>,
    ignored: &mut Ignored,
) -> Result<(), BakeError> {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    let place = file.display().to_string();
    match kind.as_str() {
        "" if value.is_null() => {}
        "BuildConfig" => {
            let config: BuildConfig = yaml_serde::from_value(value)
                .map_err(|e| BakeError::Syntax { path: file.to_path_buf(), message: format!("BuildConfig: {e}") })?;
            configs.push((file.to_path_buf(), config));
        }
        "List" | "BuildConfigList" => {
            let items = value.get("items").and_then(Value::as_sequence).cloned().unwrap_or_default();
            for item in items {
                objects(file, item, configs, streams, ignored)?;
            }
        }
        "ImageStream" => {
            let stream: ImageStream = yaml_serde::from_value(value)
                .map_err(|e| BakeError::Syntax { path: file.to_path_buf(), message: format!("ImageStream: {e}") })?;
            for tag in stream.spec.tags {
                if let Some(from) = tag.from.filter(|f| f.kind == "DockerImage") {
                    let ns = stream.metadata.namespace.clone().unwrap_or_default();
                    streams.insert(stream_key(&ns, &format!("{}:{}", stream.metadata.name, tag.name)), from.name);
                }
            }
        }
        "" => ignored.note("a document without kind", place),
        other => ignored.note(format!("kind {other}"), place),
    }
    Ok(())
}

fn stream_key(namespace: &str, name_tag: &str) -> String {
    format!("{namespace}/{name_tag}")
}

/// One BuildConfig → one build.
fn to_spec(
    file: &Path,
    config: BuildConfig,
    streams: &BTreeMap<String, String>,
    options: &LoadOptions,
    ignored: &mut Ignored,
) -> Result<BuildSpec, BakeError> {
    let name = config.metadata.name.clone();
    let namespace = config.metadata.namespace.clone();
    let invalid = |message: String| BakeError::Invalid { path: file.to_path_buf(), build: name.clone(), message };
    let spec = config.spec;
    let mut note = |what: String| ignored.note(what, name.clone());
    for key in spec.rest.keys() {
        note(format!("spec.{key}"));
    }
    for key in spec.strategy.rest.keys().filter(|k| *k != "dockerStrategy") {
        note(format!("spec.strategy.{key}"));
    }
    match spec.strategy.kind.as_deref() {
        None | Some("Docker") => {}
        Some(other) => return Err(invalid(format!("strategy type {other} is not supported (only Docker)"))),
    }
    let docker = spec.strategy.docker_strategy.unwrap_or_default();
    for key in docker.rest.keys() {
        note(format!("spec.strategy.dockerStrategy.{key}"));
    }
    let resolve = |r: &ObjRef| resolve_ref(r, namespace.as_deref(), streams, options).map_err(&invalid);
    let from = docker.from.as_ref().map(resolve).transpose()?;
    let source = spec.source;
    for key in source.rest.keys() {
        note(format!("spec.source.{key}"));
    }
    if let Some(kind) = source.kind.as_deref().filter(|k| !matches!(*k, "Git" | "Dockerfile" | "Binary")) {
        note(format!("spec.source.type {kind}"));
    }
    let mut git_source = None;
    let root = match &source.git {
        Some(g) => {
            for key in g.rest.keys() {
                note(format!("spec.source.git.{key}"));
            }
            if g.reference.is_some() {
                note("spec.source.git.ref (the local checkout is built as it is)".to_string());
            }
            let near = file.parent().unwrap_or(Path::new("."));
            let root = git::checkout(&g.uri, near, &options.git_sources).ok_or_else(|| {
                invalid(format!("source git {} has no local checkout here: pass --git-source {}=DIR", g.uri, g.uri))
            })?;
            git_source = Some((g.uri.clone(), root.clone()));
            root
        }
        None => file.parent().unwrap_or(Path::new(".")).to_path_buf(),
    };
    let context = match &source.context_dir {
        Some(dir) => root.join(
            super::relative_inside(dir)
                .ok_or_else(|| invalid(format!("contextDir {dir:?} must be a relative path inside the source")))?,
        ),
        None => root,
    };
    let dockerfile =
        match (&source.dockerfile, &docker.dockerfile_path) {
            (Some(text), _) => Dockerfile::Inline(text.clone()),
            (None, Some(path)) => Dockerfile::Path(context.join(super::relative_inside(path).ok_or_else(|| {
                invalid(format!("dockerfilePath {path:?} must be a relative path inside the context"))
            })?)),
            (None, None) => Dockerfile::Path(context.join("Dockerfile")),
        };
    let output = spec.output;
    for key in output.rest.keys() {
        note(format!("spec.output.{key}"));
    }
    let tag = match &output.to {
        Some(to) => resolve(to)?.image,
        None => format!("localhost/{name}:latest"),
    };
    let tags = vec![crate::build::local_name(&tag).map_err(|e| invalid(format!("output.to: {e}")))?];
    let mut pairs = |list: Vec<NameValue>, field: &str| -> Vec<(String, String)> {
        list.into_iter()
            .filter_map(|nv| {
                if !nv.rest.is_empty() || nv.value.is_none() {
                    note(format!("{field} {} (valueFrom is cluster-only)", nv.name));
                }
                nv.value.map(|v| (nv.name, v))
            })
            .collect()
    };
    let build_args = pairs(docker.build_args, "spec.strategy.dockerStrategy.buildArgs").into_iter().collect();
    let env = pairs(docker.env, "spec.strategy.dockerStrategy.env");
    let labels = pairs(output.image_labels, "spec.output.imageLabels");
    for key in spec.resources.rest.keys() {
        note(format!("spec.resources.{key}"));
    }
    let limits = limits(&spec.resources.limits, &mut note).map_err(&invalid)?;
    let mut triggers = Vec::new();
    for trigger in &spec.triggers {
        match (trigger.kind.as_str(), &trigger.image_change) {
            ("ImageChange", change) => match change.as_ref().and_then(|c| c.from.as_ref()) {
                Some(f) => triggers.push(resolve(f)?),
                None => match &from {
                    Some(f) => triggers.push(f.clone()),
                    None => note("spec.triggers ImageChange without from (no strategy from either)".to_string()),
                },
            },
            (other, _) => note(format!("spec.triggers type {other}")),
        }
    }
    Ok(BuildSpec {
        name: name.clone(),
        origin: file.to_path_buf(),
        context,
        dockerfile,
        target: None,
        from,
        from_rule: FromRule::Last,
        build_args,
        env,
        labels,
        no_cache: docker.no_cache,
        tags,
        limits,
        deadline: spec.completion_deadline_seconds.map(Duration::from_secs),
        triggers,
        depends: Vec::new(),
        git: git_source,
    })
}

/// `resources.limits` → numbers; other resources (ephemeral-storage, ...) are noted as ignored.
fn limits(values: &BTreeMap<String, Value>, note: &mut impl FnMut(String)) -> Result<Limits, String> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => format!("{other:?}"),
    };
    let mut limits = Limits::default();
    for (key, value) in values {
        match key.as_str() {
            "cpu" => limits.cpu_millis = Some(parse_cpu(&text(value))?),
            "memory" => limits.memory_bytes = Some(parse_memory(&text(value))?),
            other => note(format!("spec.resources.limits.{other}")),
        }
    }
    Ok(limits)
}

/// An object reference → the image it means. ImageStreamTags imported by an ImageStream of the inputs
/// resolve to the imported image; others to `--image-registry` (default `localhost`), where a build of the
/// set must produce them.
fn resolve_ref(
    r: &ObjRef,
    namespace: Option<&str>,
    streams: &BTreeMap<String, String>,
    options: &LoadOptions,
) -> Result<ImageRef, String> {
    match r.kind.as_str() {
        "DockerImage" => Ok(ImageRef::image(r.name.clone())),
        "ImageStreamTag" | "ImageStreamImage" => {
            let ns = r.namespace.as_deref().or(namespace);
            let by_digest = r.kind == "ImageStreamImage";
            let name_tag =
                if by_digest || r.name.contains(':') { r.name.clone() } else { format!("{}:latest", r.name) };
            if let Some(image) = streams.get(&stream_key(ns.unwrap_or_default(), &name_tag)) {
                return Ok(ImageRef::image(image.clone()));
            }
            let image = registry_name(options.image_registry.as_deref(), ns, &name_tag);
            // An image by digest is fixed: nothing in the set needs to produce it.
            let written = (!by_digest)
                .then(|| format!("ImageStreamTag {}{name_tag}", ns.map(|n| format!("{n}/")).unwrap_or_default()));
            Ok(ImageRef { image, written, build: None })
        }
        other => Err(format!("reference kind {other} ({}) is not supported (DockerImage, ImageStreamTag)", r.name)),
    }
}

/// `HOST/NAMESPACE/NAME:TAG` for an image stream: `--image-registry HOST[/NAMESPACE]`, whose namespace
/// (when given) wins over the object's, so a whole set can be sent to one local registry repository.
fn registry_name(registry: Option<&str>, namespace: Option<&str>, name_tag: &str) -> String {
    let registry = registry.unwrap_or("localhost").trim_end_matches('/');
    let (host, flag_ns) = match registry.split_once('/') {
        Some((h, ns)) => (h, Some(ns)),
        None => (registry, None),
    };
    match flag_ns.or(namespace) {
        Some(ns) => format!("{host}/{ns}/{name_tag}"),
        None => format!("{host}/{name_tag}"),
    }
}

#[cfg(test)]
mod tests;
