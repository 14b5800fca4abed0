//! The build's evidence flags (`--sbom`, `--provenance`, `--policy`, `--policy-mode`) and what they do after
//! the image is committed and before anything is pushed: the policy gate, then the SBOM and provenance
//! attached to the image in the store (and pushed with it as referrers).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use oci_spec::image::{Descriptor, ImageManifest};

use crate::attest::fetched::{FetchRecord, Via};
use crate::attest::{provenance, referrers, sbom};
use crate::build::events::{Event, Reporter};
use crate::build::{BuildOptions, BuildOutcome};
use crate::image::Reference;
use crate::inventory::{Inventory, inventory_of_image};
use crate::policy::{self, Policy};
use crate::store::Store;

/// What the build does when the policy finds errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyMode {
    /// Fail the build before any push (default).
    Enforce,
    /// Report the findings and go on.
    Warn,
}

/// `kiln build` flags for supply-chain evidence.
#[derive(Debug, Clone, Args)]
pub struct EvidenceFlags {
    /// Attach an SPDX SBOM to the image (pushed with it as an OCI referrer).
    #[arg(long)]
    pub sbom: bool,
    /// Attach SLSA v1 provenance to the image (pushed with it as an OCI referrer).
    #[arg(long)]
    pub provenance: bool,
    /// Check the result against this policy file (`default` for the built-in policy) before any push.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<String>,
    /// `enforce` fails the build on error-level findings; `warn` only reports them.
    #[arg(long, value_enum, default_value = "enforce")]
    pub policy_mode: PolicyMode,
    /// Also allow this base repository under the policy (`kiln bake` passes the images it builds); repeatable.
    #[arg(long = "policy-allow-base", value_name = "REPO")]
    pub policy_allow_base: Vec<String>,
}

impl EvidenceFlags {
    /// Whether anything needs the image's layers after the build.
    pub fn any(&self) -> bool {
        self.sbom || self.provenance || self.policy.is_some()
    }
}

/// Loads `--policy FILE` (`default` = the built-in policy).
pub fn load_policy(spec: Option<&str>) -> anyhow::Result<Policy> {
    match spec {
        None | Some("default") => Ok(Policy::default()),
        Some(path) => Ok(Policy::load(Path::new(path))?),
    }
}

/// A policy that names no `[nexus] hosts` takes the hosts of the Nexus the build routes through (`--nexus`
/// or kiln.toml), so the download rules judge a build without the policy repeating its configuration.
pub fn default_nexus_hosts(policy: &mut Policy, nexus: Option<&crate::supply::routing::Nexus>) {
    if let Some(nexus) = nexus
        && policy.nexus.hosts.is_empty()
    {
        policy.nexus.hosts = nexus.hosts();
    }
}

/// An image's manifest annotations.
pub fn manifest_annotations(
    store: &Store,
    manifest: &Descriptor,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let bytes = store.read_blob(manifest.digest())?;
    let parsed = ImageManifest::from_reader(bytes.as_slice()).context("the image manifest is not valid")?;
    Ok(parsed.annotations().clone().unwrap_or_default().into_iter().collect())
}

/// The base images the provenance attached to `manifest` in the store names, with where that was read.
pub fn provenance_bases(store: &Store, manifest: &Descriptor) -> Vec<(String, String)> {
    let Ok(Some(doc)) = referrers::read_local(store, manifest.digest(), provenance::MEDIA_TYPE) else {
        return Vec::new();
    };
    let Ok(statement) = serde_json::from_slice::<serde_json::Value>(&doc) else { return Vec::new() };
    statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["annotations"]["kind"] == "base-image")
        .filter_map(|d| d["name"].as_str())
        .map(|name| (name.to_string(), "provenance:resolvedDependencies".to_string()))
        .collect()
}

/// An RFC 3339 time cut to whole seconds (`2026-01-02T03:04:05Z`), as SPDX wants it; `now` when absent.
pub fn whole_seconds(time: Option<&str>) -> String {
    match time {
        Some(t) if t.len() >= 19 && t.as_bytes()[10] == b'T' => format!("{}Z", &t[..19]),
        _ => crate::build::rfc3339(now()),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The SBOM document of an inventory in `format`.
pub fn sbom_document(inv: &Inventory, subject: &sbom::Subject, cyclonedx: bool) -> Vec<u8> {
    let doc = if cyclonedx { sbom::cyclonedx(inv, subject) } else { sbom::spdx(inv, subject) };
    let mut bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Runs the policy gate and attaches the SBOM and provenance after a build; a failing gate in enforce
/// mode fails the build here, before any push.
pub fn after_build(
    store: &Store,
    options: &BuildOptions,
    flags: &EvidenceFlags,
    outcome: &BuildOutcome,
    times: (String, String),
    reporter: &dyn Reporter,
) -> anyhow::Result<()> {
    if !flags.any() {
        return Ok(());
    }
    if !outcome.local {
        anyhow::bail!("--sbom, --provenance and --policy need the image's layers in the local store");
    }
    let name = outcome.tags.first().cloned().unwrap_or_else(|| format!("sha256:{}", outcome.image_id));
    let (inventory, config) = inventory_of_image(store, &outcome.manifest)?;
    let mut policy = load_policy(flags.policy.as_deref())?;
    policy.extra_bases.extend(flags.policy_allow_base.iter().cloned());
    default_nexus_hosts(&mut policy, options.supply.nexus.as_ref());
    if flags.policy.is_some() {
        let (plan, _) = crate::build::load_plan(options)?;
        // The proxy-only network's requests, numbered as the fetch log's lines would be.
        let requests: Vec<(usize, FetchRecord)> = outcome
            .recorded
            .fetched
            .iter()
            .filter(|r| r.via == Via::Proxy)
            .cloned()
            .enumerate()
            .map(|(i, r)| (i + 1, r))
            .collect();
        let input = policy::Input {
            dockerfile: Some(policy::DockerfileInput { plan: &plan }),
            image: Some(policy::ImageInput {
                name: name.clone(),
                config: &config,
                inventory: &inventory,
                annotations: manifest_annotations(store, &outcome.manifest)?,
                bases: Vec::new(),
            }),
            fetch_log: (!requests.is_empty()).then(|| ("the build's network".to_string(), &requests[..])),
        };
        let findings = policy::check(&policy, &input);
        eprint!("{}", policy::report::text(&findings, &[]));
        let (errors, _, _) = policy::counts(&findings);
        if errors > 0 && flags.policy_mode == PolicyMode::Enforce {
            anyhow::bail!("the image breaks the policy ({errors} error(s)); it was built but not pushed");
        }
    }
    let created = whole_seconds(config.created.as_deref());
    let stamp = |kind: &str| {
        [
            (referrers::KIND_ANNOTATION.to_string(), kind.to_string()),
            (referrers::CREATED_ANNOTATION.to_string(), times.1.clone()),
        ]
        .into_iter()
        .collect::<std::collections::BTreeMap<_, _>>()
    };
    if flags.sbom {
        let subject = sbom::Subject { name: name.clone(), digest: outcome.manifest.digest().to_string(), created };
        let doc = sbom_document(&inventory, &subject, false);
        referrers::attach(store, &outcome.manifest, sbom::SPDX_MEDIA_TYPE, &doc, stamp("sbom"))?;
        reporter.report(Event::Info(format!("SBOM attached: {} packages", inventory.packages.len())));
    }
    if flags.provenance {
        let record = build_record(store, options, outcome, times.clone())?;
        let repo = Reference::parse(&name).map(|r| r.name()).unwrap_or(name.clone());
        let subject = provenance::ProvenanceSubject { name: repo, digest: outcome.manifest.digest().to_string() };
        let statement = provenance::statement(&subject, &record, &|k| policy::secret_looking(&policy, k));
        let mut doc = serde_json::to_vec_pretty(&statement).context("cannot encode the provenance")?;
        doc.push(b'\n');
        let mut annotations = stamp("provenance");
        annotations.insert(referrers::PREDICATE_ANNOTATION.into(), provenance::PREDICATE_TYPE.into());
        referrers::attach(store, &outcome.manifest, provenance::MEDIA_TYPE, &doc, annotations)?;
        reporter.report(Event::Info(format!(
            "provenance attached: {} dependencies",
            record.bases.len() + record.fetched.len() + 2
        )));
    }
    Ok(())
}

/// The provenance record of a finished build: its fetched dependencies are the ADD downloads and, with the
/// proxy-only network, every request the proxy saw.
pub fn build_record(
    store: &Store,
    options: &BuildOptions,
    outcome: &BuildOutcome,
    (started, finished): (String, String),
) -> anyhow::Result<provenance::BuildRecord> {
    let dockerfile = fs_err::read(&options.dockerfile)?;
    let stats = crate::cache::sources::StatCache::load(crate::cache::stat_cache_path(store));
    let context_sha256 = crate::build::evidence::context_digest(&options.context, &options.dockerfile, &stats)
        .with_context(|| format!("cannot digest the build context {}", options.context.display()))?;
    stats.save();
    let fetched = outcome.recorded.fetched.clone();
    Ok(provenance::BuildRecord {
        dockerfile: options.dockerfile.display().to_string(),
        dockerfile_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&dockerfile)),
        context: options.context.display().to_string(),
        context_sha256,
        target: options.target.clone(),
        build_args: options.build_args.clone(),
        from_override: options.from_override.clone(),
        platform: crate::image::Platform::host().to_string(),
        bases: outcome.recorded.bases.clone(),
        fetched,
        network: format!("{:?}", options.network).to_lowercase(),
        started,
        finished,
    })
}

/// Pushes the attestations the store holds for `manifest` next to the image pushed to `dest`.
pub async fn push_attestations(
    store: &Store,
    client: &crate::registry::Client,
    manifest: &Descriptor,
    dest: &str,
    reporter: &dyn Reporter,
) -> anyhow::Result<()> {
    let reference = Reference::parse(dest).with_context(|| format!("invalid destination {dest:?}"))?;
    let pushed = referrers::push(store, client, manifest, &reference).await?;
    if pushed.count > 0 {
        let how = if pushed.referrers_api { "referrers API" } else { "tag fallback" };
        reporter.report(Event::Info(format!("pushed {} attestation(s) for {reference} ({how})", pushed.count)));
    }
    Ok(())
}

/// `FILE`, or stdout when none.
pub fn write_output(path: Option<&PathBuf>, bytes: &[u8]) -> anyhow::Result<()> {
    match path {
        Some(p) => fs_err::write(p, bytes).context("cannot write the output file")?,
        None => std::io::Write::write_all(&mut std::io::stdout().lock(), bytes)?,
    }
    Ok(())
}
