//! `kiln build`: flags → `BuildOptions`, run the build (or print its plan), name and optionally push it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::args::{BuildArgs, CompressionArg, FormatArg, PullArg};
use super::progress::{Mode, Progress};
use super::{Failure, env, runtime};
use crate::build::{self, BuildOptions, ImageFormat, PullPolicy};
use crate::layer::Compression;

/// Runs `kiln build`.
pub fn run(root: Option<&Path>, args: &BuildArgs) -> Result<(), Failure> {
    let options = options(args)?;
    if args.dry_run {
        let (plan, _) = build::load_plan(&options)?;
        print!("{}", crate::plan::render_dry_run(&plan)?);
        return Ok(());
    }
    let store = env::open_store(root)?;
    let client = env::registry_client(&args.registry)?;
    let progress = Progress::new(Mode::detect(args.quiet));
    let outcome = runtime()?.block_on(async {
        let outcome = build::build(&store, &client, &options, &progress).await?;
        if args.push {
            for tag in &outcome.tags {
                super::transfer::push_one(&store, &client, &outcome.manifest, tag, None, &progress).await?;
            }
        }
        anyhow::Ok(outcome)
    })?;
    let id = outcome.image_id;
    if let Some(path) = &args.iidfile {
        fs_err::write(path, format!("sha256:{id}")).context("cannot write --iidfile")?;
    }
    println!("{id}");
    Ok(())
}

/// Turns the flags into library options; every check on flag values happens here.
fn options(args: &BuildArgs) -> anyhow::Result<BuildOptions> {
    if let Some(platform) = &args.platform {
        let host = crate::image::Platform::host();
        if !host.matches_text(platform) {
            bail!("--platform {platform}: only the host platform ({host}) can be built");
        }
    }
    if args.network != "host" && args.network != "none" {
        bail!("--network {}: expected host or none", args.network);
    }
    let dockerfile = match &args.file {
        Some(f) => f.clone(),
        None => default_dockerfile(&args.context),
    };
    let tags = args.tags.iter().map(|t| build::local_name(t)).collect::<Result<Vec<_>, _>>()?;
    Ok(BuildOptions {
        context: args.context.clone(),
        dockerfile,
        tags,
        build_args: build_args(&args.build_args),
        target: args.target.clone(),
        from_override: args.from.clone(),
        labels: args.labels.iter().map(|l| split_pair(l, "--label")).collect::<anyhow::Result<_>>()?,
        no_cache: args.no_cache || !args.layers,
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
    })
}

/// `CONTEXT/Dockerfile`, else `CONTEXT/Containerfile` (podman's order).
fn default_dockerfile(context: &Path) -> PathBuf {
    let dockerfile = context.join("Dockerfile");
    let containerfile = context.join("Containerfile");
    if !dockerfile.exists() && containerfile.exists() { containerfile } else { dockerfile }
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
