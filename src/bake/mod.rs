//! `kiln bake`: many builds as one graph. Inputs (OpenShift BuildConfigs, kustomizations of them, or a
//! native `kiln-bake.toml`) become [`BuildSpec`]s; `graph` orders them by the images they make and use;
//! `scheduler` runs them on one store (`-j`, retries, deadlines, limits); `emit` hands the same graph to a
//! cluster's own engine (a Tekton Pipeline, or one Job per build).
//!
//! ```text
//!  load(paths) ─┬─ buildconfig.rs  YAML: BuildConfig, List, ImageStream (imports), multi-document files
//!               ├─ kustomize.rs    kustomization.yaml → its resources (files, directories, nested)
//!               └─ native.rs       kiln-bake.toml
//!       │
//!   BakeSet ── graph.rs  edges (from, ImageChange triggers, FROM lines, depends) → levels, order, errors
//!       │
//!   scheduler.rs  one worker process per build attempt, -j at a time; classify.rs decides retries;
//!       │         cgroup.rs applies cpu/memory limits where the cgroup is delegated
//!   report.rs     results → final table, JSON report
//!   emit/         tekton.rs, job.rs; pod.rs holds the build pod's securityContext (one place)
//! ```
//!
//! This module knows builds only as options for `build::build`: it never looks inside a step. It must not
//! know the terminal (the CLI renders [`scheduler::Event`]s) or clap.

pub mod buildconfig;
pub mod cgroup;
pub mod classify;
pub mod emit;
pub mod graph;
pub mod kustomize;
pub mod limits;
pub mod native;
pub mod report;
pub mod scheduler;

mod error;
mod git;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::BakeError;
pub use limits::Limits;

use crate::plan::FromRule;

/// One build of the set, as every input format describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildSpec {
    /// Unique name (a BuildConfig's `metadata.name`, a native target's key).
    pub name: String,
    /// The file that defined it, for messages.
    pub origin: PathBuf,
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile.
    pub dockerfile: Dockerfile,
    /// The stage to build (native files only; BuildConfigs build the last stage).
    pub target: Option<String>,
    /// The base override (a BuildConfig's `strategy.dockerStrategy.from`).
    pub from: Option<ImageRef>,
    /// Which stage `from` replaces (BuildConfigs: the last, as OpenShift does).
    pub from_rule: FromRule,
    /// Build arguments.
    pub build_args: BTreeMap<String, String>,
    /// ENV set after every FROM (a BuildConfig's `dockerStrategy.env`).
    pub env: Vec<(String, String)>,
    /// Labels added to the image (`output.imageLabels`).
    pub labels: Vec<(String, String)>,
    /// Never use the step cache for this build.
    pub no_cache: bool,
    /// The names the image gets; the first is its identity in the graph.
    pub tags: Vec<String>,
    /// cpu/memory limits.
    pub limits: Limits,
    /// Stop the build (and fail it) after this long.
    pub deadline: Option<Duration>,
    /// ImageChange triggers: images whose change rebuilds this one.
    pub triggers: Vec<ImageRef>,
    /// Builds named as dependencies (native `depends`).
    pub depends: Vec<String>,
    /// The git source (`source.git.uri`) and the local checkout it was mapped to.
    pub git: Option<(String, PathBuf)>,
}

impl BuildSpec {
    /// The options of this build: `shared` (the command line's build flags, which `kiln bake` takes from
    /// `kiln build`) with this build's own fields. Build args and labels given on the command line win over
    /// the input's, as `oc start-build --build-arg` does.
    pub fn options(&self, shared: &crate::build::BuildOptions, dockerfile: PathBuf) -> crate::build::BuildOptions {
        let mut build_args = self.build_args.clone();
        build_args.extend(shared.build_args.clone());
        let mut labels = self.labels.clone();
        labels.extend(shared.labels.iter().cloned());
        crate::build::BuildOptions {
            context: self.context.clone(),
            dockerfile,
            tags: self.tags.clone(),
            build_args,
            target: self.target.clone(),
            from_override: self.from.as_ref().map(|f| f.image.clone()),
            from_rule: self.from_rule,
            stage_env: self.env.clone(),
            labels,
            no_cache: shared.no_cache || self.no_cache,
            ..shared.clone()
        }
    }
}

/// Where a build's Dockerfile comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dockerfile {
    /// A file.
    Path(PathBuf),
    /// Text given inline (a BuildConfig's `source.dockerfile`).
    Inline(String),
}

/// An image a build uses, as written and as resolved to a registry reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The reference builds and registries use.
    pub image: String,
    /// What the input said, when that was not a plain image name (`ImageStreamTag python-base:latest`,
    /// `target:NAME`): only such names must have a producer in the set.
    pub written: Option<String>,
    /// A build named directly (native `from = "target:NAME"`).
    pub build: Option<String>,
}

impl ImageRef {
    /// A plain image reference.
    pub fn image(image: impl Into<String>) -> ImageRef {
        ImageRef { image: image.into(), written: None, build: None }
    }
}

/// Every build found, and what was left out.
#[derive(Debug, Default)]
pub struct BakeSet {
    /// The builds, in the order they were read.
    pub builds: Vec<BuildSpec>,
    /// Fields and objects that have no meaning here, each with where it was seen; reported once.
    pub ignored: Ignored,
}

impl BakeSet {
    /// Every image the set's builds tag, normalised: a build uses these from the store, never pulled.
    pub fn images(&self) -> Vec<String> {
        let names = self.builds.iter().flat_map(|b| &b.tags);
        names.filter_map(|t| crate::image::Reference::parse(t).ok()).map(|r| r.to_string()).collect()
    }

    /// The repositories (`registry/path`, no tag) the set's builds write to, sorted, each once: the images
    /// a build of the set may use as its base under a policy, since each is checked where it is built.
    pub fn repositories(&self) -> Vec<String> {
        let names = self.builds.iter().flat_map(|b| &b.tags);
        let repos: BTreeSet<String> =
            names.filter_map(|t| crate::image::Reference::parse(t).ok()).map(|r| r.name()).collect();
        repos.into_iter().collect()
    }
}

/// Input that was read and deliberately not used, grouped by what it was.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ignored(pub BTreeMap<String, BTreeSet<String>>);

impl Ignored {
    /// Notes that `what` (a field path or an object kind) was ignored in `place`.
    pub fn note(&mut self, what: impl Into<String>, place: impl Into<String>) {
        self.0.entry(what.into()).or_default().insert(place.into());
    }

    /// One line per ignored thing: `spec.runPolicy (ignored in: a, b)`.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(what, places)| {
                let places: Vec<&str> = places.iter().map(String::as_str).collect();
                format!("{what} (ignored in: {})", places.join(", "))
            })
            .collect()
    }
}

/// How input names map to things on this machine.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--image-registry HOST[/NAMESPACE]`: where ImageStreamTags live (default `localhost`).
    pub image_registry: Option<String>,
    /// `--git-source URI=DIR`: local checkouts of the BuildConfigs' git sources.
    pub git_sources: Vec<(String, PathBuf)>,
}

/// Reads every input: BuildConfig YAML files, directories (a `kustomization.yaml`, a `kiln-bake.toml`,
/// or every `*.yaml`/`*.yml` in it) and native files. Names must be unique across the set.
pub fn load(paths: &[PathBuf], options: &LoadOptions) -> Result<BakeSet, BakeError> {
    let mut yaml_files = Vec::new();
    let mut native_files = Vec::new();
    let mut set = BakeSet::default();
    for path in paths {
        collect(path, &mut yaml_files, &mut native_files, &mut set.ignored)?;
    }
    if !yaml_files.is_empty() {
        let found = buildconfig::load(&yaml_files, options)?;
        set.builds.extend(found.builds);
        for (what, places) in found.ignored.0 {
            for place in places {
                set.ignored.note(what.clone(), place);
            }
        }
    }
    for file in &native_files {
        set.builds.extend(native::load(file)?);
    }
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for build in &set.builds {
        if let Some(first) = seen.insert(&build.name, &build.origin) {
            return Err(BakeError::Duplicate {
                name: build.name.clone(),
                first: first.to_path_buf(),
                second: build.origin.clone(),
            });
        }
    }
    if set.builds.is_empty() {
        let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(BakeError::Empty(list.join(", ")));
    }
    Ok(set)
}

/// Sorts one input path into YAML and native files.
fn collect(
    path: &Path,
    yaml: &mut Vec<PathBuf>,
    native: &mut Vec<PathBuf>,
    ignored: &mut Ignored,
) -> Result<(), BakeError> {
    let meta = std::fs::metadata(path).map_err(|source| BakeError::Read { path: path.to_path_buf(), source })?;
    if !meta.is_dir() {
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => native.push(path.to_path_buf()),
            _ => yaml.push(path.to_path_buf()),
        }
        return Ok(());
    }
    if let Some(k) = kustomize::find(path) {
        yaml.extend(kustomize::resources(&k, ignored)?);
        return Ok(());
    }
    let bake_file = path.join(native::FILE_NAME);
    if bake_file.is_file() {
        native.push(bake_file);
        return Ok(());
    }
    let read = |source| BakeError::Read { path: path.to_path_buf(), source };
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(read)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    yaml.extend(files);
    Ok(())
}

/// A relative path inside a root: no absolute paths, no `..` (OpenShift's validation says the same of
/// `contextDir` and `dockerfilePath`).
pub(crate) fn relative_inside(text: &str) -> Option<PathBuf> {
    let path = Path::new(text);
    let ok = path.components().all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir));
    ok.then(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_stay_inside() {
        assert_eq!(relative_inside("a/b"), Some(PathBuf::from("a/b")));
        assert_eq!(relative_inside("./a"), Some(PathBuf::from("./a")));
        assert_eq!(relative_inside("../a"), None);
        assert_eq!(relative_inside("a/../../b"), None);
        assert_eq!(relative_inside("/etc"), None);
    }

    #[test]
    fn ignored_things_are_grouped() {
        let mut i = Ignored::default();
        i.note("spec.runPolicy", "b");
        i.note("spec.runPolicy", "a");
        i.note("kind Service", "x.yaml");
        assert_eq!(i.lines(), ["kind Service (ignored in: x.yaml)", "spec.runPolicy (ignored in: a, b)"]);
    }
}
