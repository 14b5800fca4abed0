//! The supply-chain side of the command line: the flags `kiln build` (and `kiln bake`) flatten in,
//! `kiln config`, and `kiln ca-update`. Finds the configuration files (the only place that reads
//! `XDG_CONFIG_HOME` and `HOME` for them) and turns flags into [`Settings`].

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use oci_spec::image::{Descriptor, Digest, MediaType};

use super::args::RegistryFlags;
use super::{Failure, env, images, runtime};
use crate::image::Reference;
use crate::registry::Client;
use crate::supply::config::{Overrides, Settings};
use crate::supply::routing::Ecosystem;
use crate::supply::trust::{certs, update};

/// The system-wide configuration file.
pub const SYSTEM_CONFIG: &str = "/etc/kiln/kiln.toml";

/// Supply-chain flags: company CAs, Nexus routing, the proxy-only network. One struct, flattened into
/// every command that builds.
#[derive(Debug, Args, Clone, Default)]
pub struct SupplyArgs {
    /// Configuration file read instead of $XDG_CONFIG_HOME/kiln/kiln.toml (after /etc/kiln/kiln.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A company CA certificate (PEM) every RUN step and kiln's own downloads trust; repeatable (replaces
    /// trust.ca-certs of kiln.toml).
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// Also package the CAs into the image, as one top layer `kiln ca-update` can replace.
    #[arg(long = "ca-persist")]
    pub ca_persist: bool,
    /// Nexus base URL: RUN steps fetch pip, npm, Maven, Gradle, Go, dnf and apt packages through it.
    #[arg(long, value_name = "URL")]
    pub nexus: Option<String>,
    /// Repository path (or URL) of one ecosystem under the Nexus URL, `ECOSYSTEM=PATH`; repeatable.
    #[arg(long = "nexus-path", value_name = "ECO=PATH")]
    pub nexus_paths: Vec<String>,
    /// Leave one ecosystem's own configuration alone (pip, npm, maven, gradle, go, dnf, apt); repeatable.
    #[arg(long = "no-nexus", value_name = "ECO")]
    pub no_nexus: Vec<String>,
    /// A host RUN steps may reach with --network proxy-only (HOST, HOST:PORT, *.DOMAIN); repeatable.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
    /// Write every request of --network proxy-only as a JSON line to FILE.
    #[arg(long = "fetch-log", value_name = "FILE")]
    pub fetch_log: Option<PathBuf>,
}

/// `kiln config` flags.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Network for RUN steps, as `kiln build --network` takes it.
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// The supply-chain flags to show the effect of.
    #[command(flatten)]
    pub supply: SupplyArgs,
}

/// `kiln ca-update` flags.
#[derive(Debug, Args)]
pub struct CaUpdateArgs {
    /// The image: a name in the store, or with --push a registry reference.
    pub image: String,
    /// Work on the image in its registry (only its manifest, config and CA layer are read; the new CA
    /// layer, config and manifest are uploaded under the same tag).
    #[arg(long)]
    pub push: bool,
    /// The new CAs (--ca-cert, repeatable) and the configuration.
    #[command(flatten)]
    pub supply: SupplyArgs,
    /// Registry connection flags.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// The effective settings: configuration files, then `args` and `network`.
pub fn settings(args: &SupplyArgs, network: Option<&str>) -> anyhow::Result<Settings> {
    let mut files = vec![(PathBuf::from(SYSTEM_CONFIG), false)];
    match &args.config {
        Some(path) => files.push((path.clone(), true)),
        None => {
            let base = env::var("XDG_CONFIG_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| env::var("HOME").map(|h| Path::new(&h).join(".config")));
            if let Some(base) = base {
                files.push((base.join("kiln/kiln.toml"), false));
            }
        }
    }
    let mut overrides = Overrides {
        ca_certs: args.ca_certs.clone(),
        ca_persist: args.ca_persist,
        nexus: args.nexus.clone(),
        network: network.map(str::to_string),
        allow_hosts: args.allow_hosts.clone(),
        fetch_log: args.fetch_log.clone(),
        ..Default::default()
    };
    for text in &args.nexus_paths {
        let (eco, path) = text.split_once('=').with_context(|| format!("--nexus-path {text:?}: expected ECO=PATH"))?;
        overrides.nexus_paths.push((ecosystem(eco, "--nexus-path")?, path.to_string()));
    }
    for text in &args.no_nexus {
        for eco in text.split(',').filter(|s| !s.is_empty()) {
            overrides.no_nexus.push(ecosystem(eco, "--no-nexus")?);
        }
    }
    Ok(Settings::load(&files, &overrides)?)
}

fn ecosystem(name: &str, flag: &str) -> anyhow::Result<Ecosystem> {
    Ecosystem::parse(name).with_context(|| {
        let names: Vec<&str> = Ecosystem::ALL.iter().map(|e| e.name()).collect();
        format!("{flag} {name:?}: expected one of {}", names.join(", "))
    })
}

/// Runs `kiln config`.
pub fn config(args: &ConfigArgs) -> Result<(), Failure> {
    let settings = settings(&args.supply, args.network.as_deref())?;
    settings.network_mode()?;
    print!("{}", settings.render());
    Ok(())
}

/// Runs `kiln ca-update`.
pub fn ca_update(root: Option<&Path>, args: &CaUpdateArgs) -> Result<(), Failure> {
    let settings = settings(&args.supply, None)?;
    let options = settings.to_options()?;
    if options.ca_files.is_empty() {
        return Err(anyhow::anyhow!(
            "kiln ca-update: give the new CAs with --ca-cert FILE (or trust.ca-certs in kiln.toml)"
        )
        .into());
    }
    let cas = certs::all_certs(&options.ca_files);
    let (old, new, digest) = if args.push {
        let mut flags = args.registry.clone();
        flags.ca_files.extend(settings.ca_certs.value.iter().cloned());
        let client = env::registry_client(&flags)?;
        let reference = Reference::parse(&args.image).with_context(|| format!("invalid reference {:?}", args.image))?;
        runtime()?.block_on(in_registry(&client, &reference, &cas))?
    } else {
        in_store(root, &args.image, &cas)?
    };
    eprintln!("replaced the CA layer {old} with {new}; every other layer is unchanged");
    println!("{digest}");
    Ok(())
}

/// Replaces the CA layer of an image in the store and gives the new image the same name.
fn in_store(root: Option<&Path>, name: &str, cas: &[Vec<u8>]) -> anyhow::Result<(Digest, Digest, Digest)> {
    let store = env::open_store(root)?;
    let (tag, descriptor) = images::resolve(&store, name)?;
    let manifest = store.read_blob(descriptor.digest())?;
    let config_digest = config_digest(&manifest)?;
    let config = store.read_blob(&config_digest)?;
    let (index, layer) = update::locate(&tag, &manifest, &config)?;
    let old_layer = store.read_blob(&layer)?;
    let new = update::rewrite(&tag, &manifest, &config, index, &old_layer, cas)?;
    store.put_bytes(&new.layer)?;
    store.put_bytes(&new.config)?;
    let (digest, size) = store.put_bytes(&new.manifest)?;
    let media_type = MediaType::from(new.manifest_media_type.as_str());
    store.set_tag(&tag, &Descriptor::new(media_type, size, digest.clone()))?;
    Ok((new.old_layer_digest, new.layer_digest, digest))
}

/// Replaces the CA layer of an image in its registry: reads the manifest, the config and that layer only;
/// uploads the new layer, config and manifest (under the same tag).
async fn in_registry(
    client: &Client,
    reference: &Reference,
    cas: &[Vec<u8>],
) -> anyhow::Result<(Digest, Digest, Digest)> {
    let name = reference.to_string();
    let (manifest, _, _) = client.get_manifest(reference, reference.reference_part()).await?;
    let config_digest = config_digest(&manifest)?;
    let mut config = Vec::new();
    client.get_blob(reference, &config_digest, &mut config).await?;
    let (index, layer) = update::locate(&name, &manifest, &config)?;
    let mut old_layer = Vec::new();
    client.get_blob(reference, &layer, &mut old_layer).await?;
    let new = update::rewrite(&name, &manifest, &config, index, &old_layer, cas)?;
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    for (bytes, file) in [(&new.layer, "layer"), (&new.config, "config")] {
        let path = dir.path().join(file);
        fs_err::write(&path, bytes)?;
        let digest = crate::store::digest_of(bytes);
        if !client.blob_exists(reference, &digest).await? {
            client.push_blob(reference, &digest, bytes.len() as u64, &path).await?;
        }
    }
    // A digest reference cannot name the new manifest; push it under its own digest then.
    let part = match reference.tag() {
        Some(tag) if reference.digest().is_none() => tag.to_string(),
        _ => crate::store::digest_of(&new.manifest).to_string(),
    };
    let digest = client.put_manifest(reference, &part, &new.manifest, &new.manifest_media_type).await?;
    Ok((new.old_layer_digest, new.layer_digest, digest))
}

fn config_digest(manifest: &[u8]) -> anyhow::Result<Digest> {
    let value: serde_json::Value = serde_json::from_slice(manifest).context("the manifest is not JSON")?;
    value["config"]["digest"].as_str().and_then(|d| d.parse().ok()).context("the manifest names no config")
}
