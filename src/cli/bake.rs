//! `kiln bake`: flags → inputs, graph, and either the plan (`--dry-run`), manifests for a cluster
//! (`--emit`), or the builds themselves. Each build runs in a worker: kiln re-executed with the same
//! arguments plus `--worker NAME`, so every `kiln build` flag flattened into [`BakeArgs::build`] reaches
//! every build without code here.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

use super::args::BuildArgs;
use super::progress::{Mode, Progress};
use super::{Failure, env, output, runtime};
use crate::bake::scheduler::{self, Launcher, WorkerResult};
use crate::bake::{self, BakeSet, Dockerfile, LoadOptions, graph::Graph};
use crate::build::events::{Event, Reporter};

/// `kiln bake` flags.
#[derive(Debug, Args)]
pub struct BakeArgs {
    /// BuildConfig YAML files, directories (with a kustomization.yaml, a kiln-bake.toml, or *.yaml files)
    /// or kiln-bake.toml files (default: the current directory).
    #[arg(value_name = "PATH")]
    pub inputs: Vec<PathBuf>,
    /// Build only this build and what it needs (repeatable).
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// Build just this build (repeatable), taking what it needs as built already (how the emitted
    /// pipeline's tasks run; their dependencies ran in earlier tasks).
    #[arg(long = "only", value_name = "NAME", conflicts_with = "targets")]
    pub only: Vec<String>,
    /// Print the graph and the order, and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Builds at once (default: the number of cores).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Retries of a build whose failure looks transient (registry 5xx, connection reset, timeout).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub retries: u32,
    /// Seconds before the first retry (doubled for each next one).
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    pub retry_backoff: f64,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Directory for the per-build logs (default: STORE/kiln/bake/logs).
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Registry for ImageStreamTags: `HOST[/NAMESPACE]` (default `localhost`).
    #[arg(long, value_name = "HOST[/NAMESPACE]")]
    pub image_registry: Option<String>,
    /// A local checkout for a BuildConfig git source (repeatable).
    #[arg(long = "git-source", value_name = "URI=DIR")]
    pub git_sources: Vec<String>,
    /// Write cluster manifests instead of building: a Tekton Pipeline + Task, or one Job per build.
    #[arg(long, value_enum, value_name = "KIND")]
    pub emit: Option<EmitArg>,
    /// With --emit: write to FILE instead of stdout.
    #[arg(short = 'o', long = "emit-file", value_name = "FILE")]
    pub emit_file: Option<PathBuf>,
    /// With --emit: the image holding kiln that the build pods run (`make pod-image` builds it; default:
    /// kiln:VERSION in the --image-registry the pods push to).
    #[arg(long, value_name = "IMAGE")]
    pub kiln_image: Option<String>,
    /// With --emit: what the build pods are allowed (README, "In a build pod").
    #[arg(long, value_enum, value_name = "PROFILE", default_value_t = PodSecurityArg::Openshift)]
    pub pod_security: PodSecurityArg,
    /// With --emit: the namespace of the emitted objects.
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Run one build and report on stdout (how bake runs each build; not for people).
    #[arg(long, hide = true, value_name = "NAME")]
    pub worker: Option<String>,
    /// Every `kiln build` flag, passed to each build.
    #[command(flatten)]
    pub build: BuildArgs,
}

/// What `--emit` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmitArg {
    /// A Tekton Task running kiln, a Pipeline with one task per build, and a PipelineRun with the limits.
    Tekton,
    /// One Kubernetes Job per build.
    Job,
}

/// `--pod-security`: the tested pod settings to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PodSecurityArg {
    /// OpenShift's restricted-v2 SCC (seccomp RuntimeDefault, which is CRI-O's and allows user namespaces).
    Openshift,
    /// Kubernetes' restricted Pod Security Standard, with the containers-common seccomp profile installed
    /// on the nodes as Localhost kiln/seccomp.json (containerd's RuntimeDefault refuses user namespaces).
    Kubernetes,
    /// Kubernetes' privileged Pod Security Standard: seccomp and AppArmor unconfined, still non-root.
    KubernetesUnconfined,
}

impl From<PodSecurityArg> for bake::emit::pod::PodSecurity {
    fn from(arg: PodSecurityArg) -> Self {
        match arg {
            PodSecurityArg::Openshift => Self::Openshift,
            PodSecurityArg::Kubernetes => Self::Kubernetes,
            PodSecurityArg::KubernetesUnconfined => Self::KubernetesUnconfined,
        }
    }
}

/// Runs `kiln bake`.
pub fn run(root: Option<&Path>, args: &BakeArgs) -> Result<(), Failure> {
    let set = load(args)?;
    if let Some(name) = &args.worker {
        return worker(root, args, &set, name);
    }
    for line in set.ignored.lines() {
        eprintln!("warning: {line}");
    }
    let graph = Graph::new(&set)?;
    let selection = if args.only.is_empty() {
        graph.selection(&args.targets)?
    } else {
        args.only.iter().map(|n| graph.index(n)).collect::<Result<Vec<_>, _>>()?
    };
    if args.dry_run {
        write!(output::stdout(), "{}", graph.render(&selection))?;
        return Ok(());
    }
    if let Some(kind) = args.emit {
        return emit(args, &graph, &selection, kind);
    }
    let store = env::open_store(root)?;
    let log_dir = match &args.log_dir {
        Some(d) => d.clone(),
        None => store.kiln_dir().join("bake").join("logs"),
    };
    fs_err::create_dir_all(&log_dir).context("cannot create the log directory")?;
    let options = scheduler::Options {
        jobs: args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        retries: args.retries,
        backoff: std::time::Duration::from_secs_f64(args.retry_backoff.max(0.0)),
        log_dir: log_dir.clone(),
        grace: std::time::Duration::from_secs(5),
    };
    let launcher = SelfLauncher::new(store.root())?;
    let render = super::bake_progress::Renderer::new(Mode::detect(false), selection.len());
    eprintln!("{} builds, up to {} at once; logs in {}", selection.len(), options.jobs, log_dir.display());
    let cgroups = if graph.builds.iter().any(|b| b.limits.is_set()) {
        match bake::cgroup::Cgroups::setup() {
            Ok(c) => Some(c),
            Err(why) => {
                eprintln!("warning: builds run without their cpu/memory limits: {why}");
                None
            }
        }
    } else {
        None
    };
    let results =
        scheduler::run(&graph, &selection, &options, &launcher, cgroups.as_ref(), &|event| render.event(event));
    render.finish();
    write!(output::stdout(), "{}", bake::report::table(&results))?;
    if let Some(path) = &args.report {
        fs_err::write(path, bake::report::json(&results)).context("cannot write --report")?;
    }
    if results.iter().any(|r| !r.status.ok()) {
        return Err(Failure { code: 1, error: anyhow::anyhow!("some builds failed") });
    }
    Ok(())
}

fn load(args: &BakeArgs) -> anyhow::Result<BakeSet> {
    let git_sources = args
        .git_sources
        .iter()
        .map(|m| match m.rsplit_once('=') {
            Some((uri, dir)) if !uri.is_empty() && !dir.is_empty() => Ok((uri.to_string(), PathBuf::from(dir))),
            _ => bail!("--git-source {m:?}: expected URI=DIR"),
        })
        .collect::<anyhow::Result<_>>()?;
    let options = LoadOptions { image_registry: args.image_registry.clone(), git_sources };
    let inputs = if args.inputs.is_empty() { vec![PathBuf::from(".")] } else { args.inputs.clone() };
    Ok(bake::load(&inputs, &options)?)
}

/// `--emit`: the manifests, to stdout or `-o FILE`.
fn emit(args: &BakeArgs, graph: &Graph, selection: &[usize], kind: EmitArg) -> Result<(), Failure> {
    let options = bake::emit::Options {
        kiln_image: kiln_image(args)?,
        namespace: args.namespace.clone(),
        retries: args.retries,
        security: args.pod_security.into(),
    };
    let pass = pod_args(args, graph)?;
    let text = match kind {
        EmitArg::Tekton => bake::emit::tekton::render(graph, selection, &options, &pass)?,
        EmitArg::Job => bake::emit::job::render(graph, selection, &options, &pass)?,
    };
    match &args.emit_file {
        Some(path) => fs_err::write(path, text).context("cannot write the manifests")?,
        None => write!(output::stdout(), "{text}")?,
    }
    Ok(())
}

/// `--kiln-image`, else kiln:VERSION beside the images the pods push (a registry they can pull from).
fn kiln_image(args: &BakeArgs) -> Result<String, Failure> {
    if let Some(image) = &args.kiln_image {
        return Ok(image.clone());
    }
    match &args.image_registry {
        Some(registry) => Ok(format!("{}/kiln:{}", registry.trim_end_matches('/'), env!("CARGO_PKG_VERSION"))),
        None => Err(Failure {
            code: 2,
            error: anyhow::anyhow!(
                "--emit needs the image the pods run kiln from: build it with `make pod-image POD_IMAGE=REGISTRY/kiln:{v}`, \
                 push it with `kiln push REGISTRY/kiln:{v} docker://REGISTRY/kiln:{v}`, and pass --kiln-image REGISTRY/kiln:{v} \
                 (or --image-registry REGISTRY, whose kiln:{v} is the default)",
                v = env!("CARGO_PKG_VERSION")
            ),
        }),
    }
}

/// The inputs and flags the build pods pass to `kiln bake --only NAME`, with paths relative to the
/// current directory, which is taken to be the root of the source the pods get as their workspace.
fn pod_args(args: &BakeArgs, graph: &Graph) -> anyhow::Result<Vec<String>> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let relative = |path: &Path| -> anyhow::Result<String> {
        let absolute = if path.is_absolute() { path.to_path_buf() } else { cwd.join(path) };
        let inside = absolute.strip_prefix(&cwd).with_context(|| {
            format!("{} is outside the current directory, which the pods get as their source", path.display())
        })?;
        let text = inside.display().to_string();
        Ok(if text.is_empty() { ".".to_string() } else { text })
    };
    let mut pass = Vec::new();
    let inputs = if args.inputs.is_empty() { vec![PathBuf::from(".")] } else { args.inputs.clone() };
    for input in &inputs {
        pass.push(relative(input)?);
    }
    if let Some(registry) = &args.image_registry {
        pass.extend(["--image-registry".to_string(), registry.clone()]);
    }
    let mut sources: Vec<(String, String)> = Vec::new();
    for (uri, root) in graph.builds.iter().filter_map(|b| b.git.as_ref()) {
        if !sources.iter().any(|(u, _)| u == uri) {
            sources.push((uri.clone(), relative(root)?));
        }
    }
    for (uri, dir) in sources {
        pass.extend(["--git-source".to_string(), format!("{uri}={dir}")]);
    }
    let repos = args.build.cache_to.iter().chain(args.build.cache_from.iter().take(1));
    if let Some(repo) = repos.clone().next() {
        pass.extend(["--cache-from".to_string(), repo.clone(), "--cache-to".to_string(), repo.clone()]);
    }
    if !args.build.registry.tls_verify {
        pass.push("--tls-verify=false".to_string());
    }
    for arg in &args.build.build_args {
        let value = match arg.split_once('=') {
            Some(_) => arg.clone(),
            None => match env::var(arg) {
                Some(v) => format!("{arg}={v}"),
                None => continue,
            },
        };
        pass.extend(["--build-arg".to_string(), value]);
    }
    for label in &args.build.labels {
        pass.extend(["--label".to_string(), label.clone()]);
    }
    pass.extend(["--retries".to_string(), "0".to_string()]);
    Ok(pass)
}

/// Starts workers: this same kiln, with this command's arguments and `--worker NAME`, on the same store.
struct SelfLauncher {
    args: Vec<OsString>,
    store: PathBuf,
}

impl SelfLauncher {
    fn new(store: &Path) -> anyhow::Result<SelfLauncher> {
        Ok(SelfLauncher { args: std::env::args_os().skip(1).collect(), store: store.to_path_buf() })
    }
}

impl Launcher for SelfLauncher {
    fn command(&self, build: &str) -> Command {
        let mut command = Command::new("/proc/self/exe");
        // `--worker` must come before a `--` that ends the options.
        let split = self.args.iter().position(|a| a == "--").unwrap_or(self.args.len());
        command.args(&self.args[..split]).arg("--worker").arg(build).args(&self.args[split..]);
        // The worker may not resolve the default store as this process did (it starts inside kiln's
        // user namespace): name it. An explicit --root is in the arguments already and wins.
        command.env("KILN_ROOT", &self.store);
        command
    }
}

/// One build, for the scheduler: progress as plain lines on stderr, the result as JSON on stdout; exit 1
/// when the build failed.
fn worker(root: Option<&Path>, args: &BakeArgs, set: &BakeSet, name: &str) -> Result<(), Failure> {
    let result = match run_one(root, args, set, name) {
        Ok(r) => r,
        Err(error) => {
            super::output::print_error(&error);
            let message = error.chain().map(|e| e.to_string()).collect::<Vec<_>>();
            WorkerResult {
                error: Some(dedup_chain(&message)),
                transient: bake::classify::transient(&error),
                ..Default::default()
            }
        }
    };
    writeln!(output::stdout(), "{}", serde_json::to_string(&result).unwrap_or_default())?;
    if result.error.is_some() {
        return Err(Failure { code: 1, error: anyhow::anyhow!("build {name} failed") });
    }
    Ok(())
}

fn run_one(root: Option<&Path>, args: &BakeArgs, set: &BakeSet, name: &str) -> anyhow::Result<WorkerResult> {
    let spec = set.builds.iter().find(|b| b.name == name).with_context(|| format!("no build named {name}"))?;
    let shared = super::build::shared_options(&args.build)?;
    let store = env::open_store(root)?;
    let client = env::registry_client(&super::build::registry_flags(&args.build, &shared))?;
    // An inline Dockerfile becomes a file for this build only.
    let scratch = store.temp_dir()?;
    let dockerfile = match &spec.dockerfile {
        Dockerfile::Path(p) => p.clone(),
        Dockerfile::Inline(text) => {
            let path = scratch.path().join("Dockerfile");
            fs_err::write(&path, text)?;
            path
        }
    };
    let mut options = spec.options(&shared, dockerfile);
    // The set's own images come from this store: `--pull=always` refreshes only the bases made elsewhere.
    options.local_bases = set.images();
    // Under a policy, the set's own images are allowed bases (the policy's "built by the same bake"): each
    // one passes the same gate where it is built.
    let mut build = args.build.clone();
    build.evidence.policy_allow_base.extend(set.repositories());
    let before = store.resolve_tag(&spec.tags[0]).ok().flatten().map(|d| d.digest().to_string());
    let counting = Counting::new(Progress::new(Mode::Plain));
    let outcome = runtime()
        .map_err(|f| f.error)?
        .block_on(super::build::build_and_push(&store, &client, &options, &build, &counting))?;
    let digest = outcome.manifest.digest().to_string();
    let (steps, cached) = counting.counts();
    Ok(WorkerResult {
        image_id: Some(outcome.image_id),
        // Builds are deterministic: an unchanged build gives the image its first tag already named.
        up_to_date: before.as_deref() == Some(digest.as_str()),
        digest: Some(digest),
        steps,
        cached,
        error: None,
        transient: None,
    })
}

/// The error chain on one line, each message once (thiserror messages often embed their source).
fn dedup_chain(messages: &[String]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for m in messages {
        if !out.iter().any(|o| o.contains(m.as_str())) {
            out.push(m);
        }
    }
    out.join(": ")
}

/// Passes events on and counts the steps that have cache keys (RUN, COPY, ADD, WORKDIR) and how many of
/// them came from the cache, for the worker's result.
struct Counting {
    inner: Progress,
    steps: std::sync::atomic::AtomicUsize,
    cached: std::sync::atomic::AtomicUsize,
    keyed: std::sync::atomic::AtomicBool,
}

impl Counting {
    fn new(inner: Progress) -> Counting {
        Counting { inner, steps: Default::default(), cached: Default::default(), keyed: Default::default() }
    }

    fn counts(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.steps.load(Relaxed), self.cached.load(Relaxed))
    }
}

impl Reporter for Counting {
    fn report(&self, event: Event) {
        use std::sync::atomic::Ordering::Relaxed;
        match &event {
            Event::StepStarted { text, .. } => {
                let keyword = text.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
                self.keyed.store(matches!(keyword.as_str(), "RUN" | "COPY" | "ADD" | "WORKDIR"), Relaxed);
            }
            Event::StepDone { cached, .. } if self.keyed.load(Relaxed) => {
                self.steps.fetch_add(1, Relaxed);
                if *cached {
                    self.cached.fetch_add(1, Relaxed);
                }
            }
            _ => {}
        }
        self.inner.report(event);
    }
}
