//! `kiln check`: the policy over an image, a Dockerfile, a fetch log — any of them, together when given
//! together — reported as text, JSON or SARIF. Exit 0 when no finding is an error, 1 when one is, 2 for
//! usage errors (a missing file, a bad policy).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use super::args::RegistryFlags;
use super::attest::{load_policy, manifest_annotations, provenance_bases, write_output};
use super::progress::{Mode, Progress};
use super::{Failure, env, runtime};
use crate::build::events::{Event, Reporter};
use crate::image::{Platform, Reference};
use crate::inventory::inventory_of_image;
use crate::policy::{self, report};

/// How findings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// One line per finding with a hint.
    Text,
    /// A JSON document.
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
}

/// `kiln check` flags.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The image to check (in the store, else pulled from its registry).
    #[arg(value_name = "IMAGE")]
    pub image: Option<String>,
    /// The Dockerfile to check.
    #[arg(long, value_name = "FILE")]
    pub dockerfile: Option<PathBuf>,
    /// A fetch log (`kiln build --fetch-log`) to check: every request must have gone to Nexus.
    #[arg(long, value_name = "FILE")]
    pub fetch_log: Option<PathBuf>,
    /// The policy file (default: the built-in policy).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: CheckFormat,
    /// Write the report to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Build argument `K=V` for planning the Dockerfile (FROM lines may use them); repeatable.
    #[arg(long = "build-arg", value_name = "K=V")]
    pub build_args: Vec<String>,
    /// The stage the Dockerfile is built to.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Also allow this base repository (images built by the same bake); repeatable.
    #[arg(long = "allow-base", value_name = "REPO")]
    pub allow_base: Vec<String>,
    /// Registry connection flags (for an image that must be pulled).
    #[command(flatten)]
    pub registry: RegistryFlags,
}

fn usage(error: anyhow::Error) -> Failure {
    Failure { code: 2, error }
}

/// Runs `kiln check`.
pub fn run(root: Option<&std::path::Path>, args: &CheckArgs) -> Result<(), Failure> {
    if args.image.is_none() && args.dockerfile.is_none() && args.fetch_log.is_none() {
        return Err(usage(anyhow::anyhow!("give an IMAGE, --dockerfile FILE or --fetch-log FILE to check")));
    }
    let mut policy = load_policy(args.policy.as_deref()).map_err(usage)?;
    policy.extra_bases.extend(args.allow_base.iter().cloned());
    let plan = match &args.dockerfile {
        Some(path) => Some(plan_of(path, args).map_err(usage)?),
        None => None,
    };
    let fetch_log = match &args.fetch_log {
        Some(path) => Some(crate::attest::fetched::read_fetch_log(path).map_err(|e| usage(e.into()))?),
        None => None,
    };
    let image = match &args.image {
        Some(name) => Some(load_image(root, name, args)?),
        None => None,
    };
    let input = policy::Input {
        dockerfile: plan.as_ref().map(|plan| policy::DockerfileInput { plan }),
        image: image.as_ref().map(|(name, inv, config, annotations, bases)| policy::ImageInput {
            name: name.clone(),
            config,
            inventory: inv,
            annotations: annotations.clone(),
            bases: bases.clone(),
        }),
        fetch_log: fetch_log
            .as_ref()
            .zip(args.fetch_log.as_ref())
            .map(|(r, p)| (p.display().to_string(), r.as_slice())),
    };
    let findings = policy::check(&policy, &input);
    let mut skipped = Vec::new();
    if policy.nexus.hosts.is_empty() && (args.dockerfile.is_some() || args.fetch_log.is_some()) {
        skipped.push("download-not-nexus and fetch-not-nexus not checked: the policy names no [nexus] hosts".into());
    }
    if let Some((_, inv, _, _, _)) = &image {
        skipped.extend(inv.notes.iter().map(|n| format!("unreadable: {n}")));
    }
    let out = match args.format {
        CheckFormat::Text => report::text(&findings, &skipped).into_bytes(),
        CheckFormat::Json => pretty(&report::json(&findings, &skipped)),
        CheckFormat::Sarif => pretty(&report::sarif(&findings)),
    };
    write_output(args.output.as_ref(), &out)?;
    let (errors, _, _) = policy::counts(&findings);
    if errors > 0 {
        return Err(Failure { code: 1, error: anyhow::anyhow!("{errors} finding(s) at error level") });
    }
    Ok(())
}

fn pretty(value: &serde_json::Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

fn plan_of(path: &std::path::Path, args: &CheckArgs) -> anyhow::Result<crate::plan::Plan> {
    let text = fs_err::read_to_string(path)?;
    let label = path.display().to_string();
    let parsed = crate::dockerfile::parse(&text, &label)?;
    let build_args = args
        .build_args
        .iter()
        .map(|a| a.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).context("--build-arg must be K=V"))
        .collect::<anyhow::Result<_>>()?;
    let options = crate::plan::PlanOptions { build_args, target: args.target.clone(), ..Default::default() };
    Ok(crate::plan::plan(&parsed.instructions, parsed.escape, &label, &options)?)
}

/// An image to check: name, inventory, config, manifest annotations, bases from its provenance.
type LoadedImage = (
    String,
    crate::inventory::Inventory,
    crate::image::ImageConfig,
    std::collections::BTreeMap<String, String>,
    Vec<(String, String)>,
);

/// The image from the store, or pulled into it when the store does not have it.
fn load_image(root: Option<&std::path::Path>, name: &str, args: &CheckArgs) -> Result<LoadedImage, Failure> {
    let store = env::open_store(root)?;
    let manifest = match super::images::resolve(&store, name) {
        Ok((_, d)) => d,
        Err(local) => {
            let Ok(reference) = Reference::parse(name) else { return Err(local.into()) };
            if !crate::build::looks_qualified(name) {
                return Err(local.into());
            }
            let client = env::registry_client(&args.registry)?;
            let progress = Progress::new(Mode::detect(true));
            progress.report(Event::Info(format!("pulling {reference}")));
            runtime()?.block_on(crate::transfer::pull::pull(&store, &client, &reference, &Platform::host()))?
        }
    };
    let (inventory, config) = inventory_of_image(&store, &manifest)?;
    let annotations = manifest_annotations(&store, &manifest)?;
    let bases = provenance_bases(&store, &manifest);
    Ok((name.to_string(), inventory, config, annotations, bases))
}
