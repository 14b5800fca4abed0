//! `kiln-bake.toml`: the same graph without OpenShift. One table per build under `[target.NAME]`:
//!
//! ```toml
//! [target.python-base]
//! context = "bases/python"                 # relative to this file
//! tags = ["registry.example.com/team/python-base:3.11"]
//!
//! [target.app]
//! context = "apps/app"
//! dockerfile = "Containerfile"             # relative to the context (default Dockerfile)
//! target = "runtime"                       # the stage to build
//! args = { VERSION = "1.2" }
//! from = "target:python-base"              # base override: an image, or another target's image
//! from-stage = "first"                     # which stage it replaces: first (podman --from) or last (OpenShift)
//! depends = ["assets"]                     # more ordering edges
//! cpu = "500m"
//! memory = "1Gi"
//! deadline = 3600                          # seconds
//! no-cache = false
//! ```
//!
//! Unknown keys are errors (this format is ours: a typo should not pass silently).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::limits::{parse_cpu, parse_memory};
use super::{BakeError, BuildSpec, Dockerfile, ImageRef, Limits};
use crate::plan::FromRule;

/// The file a directory input is looked for under.
pub const FILE_NAME: &str = "kiln-bake.toml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    target: BTreeMap<String, Target>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Target {
    context: Option<String>,
    dockerfile: Option<String>,
    target: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    args: BTreeMap<String, String>,
    from: Option<String>,
    from_stage: Option<String>,
    #[serde(default)]
    depends: Vec<String>,
    cpu: Option<String>,
    memory: Option<String>,
    deadline: Option<u64>,
    #[serde(default)]
    no_cache: bool,
}

/// Reads the builds of one native file.
pub fn load(path: &Path) -> Result<Vec<BuildSpec>, BakeError> {
    let text = std::fs::read_to_string(path).map_err(|source| BakeError::Read { path: path.to_path_buf(), source })?;
    let file: File =
        toml::from_str(&text).map_err(|e| BakeError::Syntax { path: path.to_path_buf(), message: e.to_string() })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut builds = Vec::new();
    for (name, t) in &file.target {
        builds.push(to_spec(path, dir, name, t)?);
    }
    // `target:NAME` bases take the first tag of that target, now that all are known.
    let first_tags: BTreeMap<String, String> =
        builds.iter().map(|b: &BuildSpec| (b.name.clone(), b.tags[0].clone())).collect();
    for b in &mut builds {
        if let Some(from) = &mut b.from
            && let Some(name) = &from.build
            && let Some(tag) = first_tags.get(name)
        {
            from.image = tag.clone();
        }
    }
    Ok(builds)
}

fn to_spec(path: &Path, dir: &Path, name: &str, t: &Target) -> Result<BuildSpec, BakeError> {
    let invalid = |message: String| BakeError::Invalid { path: path.to_path_buf(), build: name.to_string(), message };
    let context = dir.join(t.context.as_deref().unwrap_or("."));
    let dockerfile = context.join(t.dockerfile.as_deref().unwrap_or("Dockerfile"));
    let raw_tags = if t.tags.is_empty() { vec![format!("{name}:latest")] } else { t.tags.clone() };
    let tags = raw_tags
        .iter()
        .map(|tag| crate::build::local_name(tag).map_err(|e| invalid(format!("tags: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let from = t.from.as_ref().map(|f| match f.strip_prefix("target:") {
        Some(other) => ImageRef { image: String::new(), written: Some(f.clone()), build: Some(other.to_string()) },
        None => ImageRef::image(f.clone()),
    });
    let from_rule = match t.from_stage.as_deref() {
        None | Some("first") => FromRule::First,
        Some("last") => FromRule::Last,
        Some(other) => return Err(invalid(format!("from-stage {other:?}: expected first or last"))),
    };
    let limits = Limits {
        cpu_millis: t.cpu.as_deref().map(parse_cpu).transpose().map_err(&invalid)?,
        memory_bytes: t.memory.as_deref().map(parse_memory).transpose().map_err(&invalid)?,
    };
    Ok(BuildSpec {
        name: name.to_string(),
        origin: path.to_path_buf(),
        context,
        dockerfile: Dockerfile::Path(dockerfile),
        target: t.target.clone(),
        from,
        from_rule,
        build_args: t.args.clone(),
        env: Vec::new(),
        labels: Vec::new(),
        no_cache: t.no_cache,
        tags,
        limits,
        deadline: t.deadline.map(Duration::from_secs),
        triggers: Vec::new(),
        depends: t.depends.clone(),
        git: None,
    })
}

/// The path of a native file in `dir`.
pub fn in_dir(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Vec<BuildSpec>, BakeError> {
        let dir = tempfile::tempdir().unwrap();
        let file = in_dir(dir.path());
        std::fs::write(&file, text).unwrap();
        load(&file)
    }

    #[test]
    fn targets_become_builds() {
        let builds = load_text(
            "[target.base]\ncontext = \"b\"\ntags = [\"reg.example.com/t/base:1\"]\n\
             [target.app]\ncontext = \"a\"\ndockerfile = \"Containerfile\"\ntarget = \"run\"\n\
             args = { V = \"2\" }\nfrom = \"target:base\"\nfrom-stage = \"last\"\ncpu = \"1\"\nmemory = \"1Gi\"\n\
             deadline = 60\ndepends = [\"base\"]\n",
        )
        .unwrap();
        let app = builds.iter().find(|b| b.name == "app").unwrap();
        assert!(app.dockerfile == Dockerfile::Path(app.context.join("Containerfile")));
        assert_eq!(app.target.as_deref(), Some("run"));
        assert_eq!(app.tags, ["localhost/app:latest"]);
        let from = app.from.as_ref().unwrap();
        assert_eq!((from.image.as_str(), from.build.as_deref()), ("reg.example.com/t/base:1", Some("base")));
        assert_eq!(app.from_rule, FromRule::Last);
        assert_eq!(app.limits, Limits { cpu_millis: Some(1000), memory_bytes: Some(1 << 30) });
        assert_eq!(app.deadline, Some(Duration::from_secs(60)));
    }

    #[test]
    fn the_sets_repositories_are_its_builds_tags_without_tag() {
        let builds = load_text(
            "[target.base]\ncontext = \"b\"\ntags = [\"reg.example.com/t/base:1\", \"reg.example.com/t/base:2\"]\n\
             [target.app]\ncontext = \"a\"\ntags = [\"app:1\", \"reg.example.com/t/app@sha256:{}\"]\n"
                .replace("{}", &"0".repeat(64))
                .as_str(),
        )
        .unwrap();
        let set = crate::bake::BakeSet { builds, ignored: Default::default() };
        assert_eq!(set.repositories(), ["localhost/app", "reg.example.com/t/app", "reg.example.com/t/base"]);
    }

    #[test]
    fn unknown_keys_are_errors_with_their_line() {
        let e = load_text("[target.a]\ncontext = \".\"\ncontxt = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("kiln-bake.toml") && e.contains("contxt") && e.contains("line 3"), "{e}");
    }
}
