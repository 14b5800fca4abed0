//! `kiln build`: flags → `BuildOptions`, run the build (or print its plan), name and optionally push it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::args::{BuildArgs, BuildCommand, CompressionArg, FormatArg, ImageArgs, IsolationArg, PullArg};
use super::progress::{Mode, Progress};
use super::{Failure, env, output, runtime};
use crate::build::options::SecretSource;
use crate::build::{self, BuildOptions, ImageFormat, PullPolicy};
use crate::layer::Compression;
use crate::sandbox::{Isolation, Network, Requested};

/// Runs `kiln build`.
pub fn run(root: Option<&Path>, command: &BuildCommand) -> Result<(), Failure> {
    let (image, args) = (&command.image, &command.args);
    let options = options(image, args)?;
    if image.check {
        return check_only(&options);
    }
    if image.dry_run {
        let (plan, _) = build::load_plan(&options)?;
        write!(output::stdout(), "{}", crate::plan::render_dry_run(&plan)?)?;
        return Ok(());
    }
    let store = env::open_store(root)?;
    let client = env::registry_client(&registry_flags(args, &options))?;
    let progress = Progress::new(Mode::detect(image.quiet));
    let outcome = runtime()?.block_on(build_and_push(&store, &client, &options, args, &progress))?;
    let id = outcome.image_id;
    if let Some(path) = &image.iidfile {
        fs_err::write(path, format!("sha256:{id}")).context("cannot write --iidfile")?;
    }
    writeln!(output::stdout(), "{id}")?;
    Ok(())
}

/// `kiln build --check`: the build checks' findings on stdout, one per line with the rule's description and
/// documentation link, then a summary; exit 1 when anything was found (as `docker build --check`).
fn check_only(options: &BuildOptions) -> Result<(), Failure> {
    // Findings before an instruction that does not parse go to stderr with the error.
    let (parsed, _) = build::parse_dockerfile(options, &Progress::new(Mode::detect(false)))?;
    let report = build::checks::report_without_images(&parsed, options)?;
    let mut out = output::stdout();
    for w in &report.warnings {
        writeln!(out, "{w}\n  {}\n  {}", w.description, w.url)?;
    }
    match report.warnings.len() {
        0 => {
            writeln!(out, "Check complete, no warnings found.")?;
            Ok(())
        }
        n => {
            writeln!(out, "Check complete, {n} warning{} found.", if n == 1 { "" } else { "s" })?;
            Err(Failure {
                code: 1,
                error: anyhow::anyhow!("build checks found {n} warning{}", if n == 1 { "" } else { "s" }),
            })
        }
    }
}

/// The registry flags of a build: kiln's own downloads (base images, caches, pushes) trust the company
/// CAs too.
pub fn registry_flags(args: &BuildArgs, options: &BuildOptions) -> super::args::RegistryFlags {
    let mut flags = args.registry.clone();
    flags.ca_files.extend(options.supply.ca_files.iter().map(|f| f.path.clone()));
    flags
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Builds, runs the policy gate and attaches the SBOM and provenance asked for (after the commit, before any
/// push), then pushes every tag with its attestations when asked (`kiln build --push`, each build of
/// `kiln bake --push`).
pub async fn build_and_push(
    store: &crate::store::Store,
    client: &crate::registry::Client,
    options: &BuildOptions,
    args: &BuildArgs,
    progress: &dyn crate::build::events::Reporter,
) -> anyhow::Result<build::BuildOutcome> {
    let started = build::rfc3339(unix_now());
    let outcome = build::build(store, client, options, progress).await?;
    let times = (started, build::rfc3339(unix_now()));
    super::attest::after_build(store, options, &args.evidence, &outcome, times, progress)?;
    if args.push {
        for tag in &outcome.tags {
            let mounts = &outcome.mount_from;
            super::transfer::push_one(store, client, &outcome.manifest, tag, None, mounts, progress).await?;
            super::attest::push_attestations(store, client, &outcome.manifest, tag, progress).await?;
        }
    }
    Ok(outcome)
}

/// Turns the flags into library options; every check on flag values happens here.
fn options(image: &ImageArgs, args: &BuildArgs) -> anyhow::Result<BuildOptions> {
    let dockerfile = match &image.file {
        Some(f) => f.clone(),
        None => default_dockerfile(&image.context),
    };
    let tags = image.tags.iter().map(|t| build::local_name(t)).collect::<Result<Vec<_>, _>>()?;
    let shared = shared_options(args)?;
    Ok(BuildOptions {
        // Absolute: RUN mounts are resolved by a child that works from other directories.
        context: std::path::absolute(&image.context)
            .with_context(|| format!("build context {}", image.context.display()))?,
        dockerfile,
        tags,
        target: image.target.clone(),
        from_override: image.from.clone(),
        ..shared
    })
}

/// The options every build of a command shares (`kiln build`, each build of `kiln bake`); the fields that
/// name one image (context, Dockerfile, tags, target, base override) are left empty for the caller.
pub fn shared_options(args: &BuildArgs) -> anyhow::Result<BuildOptions> {
    if let Some(platform) = &args.platform {
        let host = crate::image::Platform::host();
        if !host.matches_text(platform) {
            bail!("--platform {platform}: only the host platform ({host}) can be built");
        }
    }
    let settings = super::supply::settings(&args.supply, args.network.as_deref())?;
    let network = match settings.network_mode()? {
        "none" => Network::None,
        // proxy-only: RUN steps with network get their own namespace and the proxy (supply::egress).
        _ => Network::Host,
    };
    let supply = settings.to_options()?;
    Ok(BuildOptions {
        build_args: build_args(&args.build_args),
        labels: args.labels.iter().map(|l| split_pair(l, "--label")).collect::<anyhow::Result<_>>()?,
        no_cache: args.no_cache || !args.layers,
        no_cache_filter: args.no_cache_filter.clone(),
        cache_from: args.cache_from.clone(),
        layers_may_stay_remote: args.push && !args.cache_from.is_empty() && !args.evidence.any(),
        cache_to: args.cache_to.clone(),
        pull: match args.pull {
            PullArg::Missing | PullArg::False => PullPolicy::Missing,
            PullArg::Always | PullArg::True => PullPolicy::Always,
            PullArg::Never => PullPolicy::Never,
        },
        format: match args.format {
            FormatArg::Oci => ImageFormat::Oci,
            FormatArg::Docker => ImageFormat::Docker,
        },
        compression: match args.compression {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
        },
        squash: args.squash,
        source_date_epoch: env::source_date_epoch()?,
        search_registries: vec!["docker.io".to_string()],
        isolation: match args.isolation {
            IsolationArg::Auto => Requested::Auto,
            IsolationArg::Rootless => Requested::Exactly(Isolation::Rootless),
            IsolationArg::Root => Requested::Exactly(Isolation::Root),
            IsolationArg::Chroot => Requested::Exactly(Isolation::Chroot),
        },
        network,
        supply,
        secrets: args.secrets.iter().map(|s| secret(s)).collect::<anyhow::Result<_>>()?,
        fetch_timeouts: env::fetch_timeouts()?,
        ..BuildOptions::default()
    })
}

/// `--secret id=ID,src=FILE` or `id=ID,env=VAR` (podman's and docker's forms; `type=` is accepted).
fn secret(text: &str) -> anyhow::Result<(String, SecretSource)> {
    let (mut id, mut src, mut var) = (None, None, None);
    for field in text.split(',') {
        match field.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
            Some(("env", v)) => var = Some(v.to_string()),
            Some(("type", "file" | "env")) => {}
            _ => bail!("--secret {text:?}: unknown field {field:?} (expected id=, src= or env=)"),
        }
    }
    let id = id.with_context(|| format!("--secret {text:?}: id= is required"))?;
    let source = match (src, var) {
        (Some(path), None) => {
            if !path.is_file() {
                bail!("--secret id={id}: {} is not a readable file", path.display());
            }
            SecretSource::File(std::path::absolute(&path).with_context(|| format!("--secret id={id}"))?)
        }
        (None, Some(var)) => SecretSource::Value(
            env::var(&var)
                .with_context(|| format!("--secret id={id}: environment variable {var} is not set"))?
                .into_bytes(),
        ),
        (None, None) => match env::var(&id) {
            Some(value) => SecretSource::Value(value.into_bytes()),
            None => bail!("--secret id={id}: give src=FILE or env=VAR"),
        },
        (Some(_), Some(_)) => bail!("--secret id={id}: give src= or env=, not both"),
    };
    Ok((id, source))
}

/// `CONTEXT/Dockerfile`, else `CONTEXT/Containerfile` (podman's order), else `CONTEXT/dockerfile` (what
/// Docker accepts, moby/moby#10858).
fn default_dockerfile(context: &Path) -> PathBuf {
    let dockerfile = context.join("Dockerfile");
    ["Containerfile", "dockerfile"]
        .iter()
        .map(|name| context.join(name))
        .find(|p| !dockerfile.exists() && p.exists())
        .unwrap_or(dockerfile)
}

/// `K=V` pairs; a bare `K` takes its value from the environment and is dropped when unset.
fn build_args(raw: &[String]) -> BTreeMap<String, String> {
    raw.iter()
        .filter_map(|a| match a.split_once('=') {
            Some((k, v)) => Some((k.to_string(), v.to_string())),
            None => env::var(a).map(|v| (a.clone(), v)),
        })
        .collect()
}

fn split_pair(text: &str, flag: &str) -> anyhow::Result<(String, String)> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("{flag} {text:?}: expected KEY=VALUE"),
    }
}
