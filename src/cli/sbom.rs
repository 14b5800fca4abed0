//! `kiln sbom` and `kiln provenance`: an image's SBOM (made from its inventory when the image is in the
//! store, read back from the registry's referrers otherwise or with `--remote`) and its provenance (as
//! attached by `kiln build --provenance`, from the store or the registry).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use super::args::RegistryFlags;
use super::attest::{sbom_document, whole_seconds, write_output};
use super::{Failure, env, runtime};
use crate::attest::{provenance, referrers, sbom};
use crate::image::Reference;
use crate::inventory::inventory_of_image;

/// SBOM formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SbomFormat {
    /// SPDX 2.3 JSON.
    SpdxJson,
    /// CycloneDX 1.5 JSON.
    CyclonedxJson,
    /// A table for people (local images only).
    Table,
}

/// `kiln sbom` flags.
#[derive(Debug, Args)]
pub struct SbomArgs {
    /// The image: a name or ID in the store, or a registry reference.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "spdx-json")]
    pub format: SbomFormat,
    /// Read the SBOM attached in the registry even when the store has the image.
    #[arg(long)]
    pub remote: bool,
    /// Write to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Registry connection flags.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln provenance` flags.
#[derive(Debug, Args)]
pub struct ProvenanceArgs {
    /// The image: a name or ID in the store, or a registry reference.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Read the provenance attached in the registry even when the store has the image.
    #[arg(long)]
    pub remote: bool,
    /// Write to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Registry connection flags.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// Runs `kiln sbom`.
pub fn sbom(root: Option<&std::path::Path>, args: &SbomArgs) -> Result<(), Failure> {
    let store = env::open_store(root)?;
    let local = if args.remote { None } else { super::images::resolve(&store, &args.image).ok() };
    let Some((name, manifest)) = local else {
        let media_type = match args.format {
            SbomFormat::SpdxJson => sbom::SPDX_MEDIA_TYPE,
            SbomFormat::CyclonedxJson => sbom::CYCLONEDX_MEDIA_TYPE,
            SbomFormat::Table => {
                return Err(anyhow::anyhow!("--format table needs the image in the store (kiln pull it first)").into());
            }
        };
        let doc = remote(&args.image, &args.registry, media_type)?;
        write_output(args.output.as_ref(), &doc)?;
        return Ok(());
    };
    let (inventory, config) = inventory_of_image(&store, &manifest)?;
    let subject = sbom::Subject {
        name,
        digest: manifest.digest().to_string(),
        created: whole_seconds(config.created.as_deref()),
    };
    let out = match args.format {
        SbomFormat::SpdxJson => sbom_document(&inventory, &subject, false),
        SbomFormat::CyclonedxJson => sbom_document(&inventory, &subject, true),
        SbomFormat::Table => table(&inventory).into_bytes(),
    };
    write_output(args.output.as_ref(), &out)?;
    Ok(())
}

/// Runs `kiln provenance`.
pub fn provenance(root: Option<&std::path::Path>, args: &ProvenanceArgs) -> Result<(), Failure> {
    let store = env::open_store(root)?;
    if !args.remote
        && let Ok((_, manifest)) = super::images::resolve(&store, &args.image)
    {
        let doc = referrers::read_local(&store, manifest.digest(), provenance::MEDIA_TYPE)?.with_context(|| {
            format!("no provenance is attached to {} in the store (build it with --provenance)", args.image)
        })?;
        write_output(args.output.as_ref(), &doc)?;
        return Ok(());
    }
    let doc = remote(&args.image, &args.registry, provenance::MEDIA_TYPE)?;
    write_output(args.output.as_ref(), &doc)?;
    Ok(())
}

fn remote(image: &str, flags: &RegistryFlags, media_type: &str) -> Result<Vec<u8>, Failure> {
    let reference = Reference::parse(image).with_context(|| format!("invalid image reference {image:?}"))?;
    let client = env::registry_client(flags)?;
    let found = runtime()?.block_on(referrers::fetch(&client, &reference, media_type))?;
    let (doc, _) = found.with_context(|| format!("no {media_type} document is attached to {reference}"))?;
    Ok(doc)
}

fn table(inv: &crate::inventory::Inventory) -> String {
    let mut out = String::new();
    if let Some(os) = &inv.os {
        out.push_str(&format!("OS: {}\n", os.describe()));
    }
    for r in &inv.runtimes {
        let flag = if r.platform { " (platform-python)" } else { "" };
        out.push_str(&format!("runtime {:<7} {:<14} {}{flag}\n", r.kind.name(), r.version, r.path));
    }
    for b in &inv.go_binaries {
        out.push_str(&format!("go binary       {:<14} {}\n", b.info.go_version, b.path));
    }
    out.push_str(&format!("{:<8} {:<40} {:<32} {}\n", "TYPE", "NAME", "VERSION", "FOUND AT"));
    for p in &inv.packages {
        let name = match &p.namespace {
            Some(ns) => format!("{ns}/{}", p.name),
            None => p.name.clone(),
        };
        out.push_str(&format!("{:<8} {:<40} {:<32} {}\n", p.ecosystem.name(), name, p.version, p.path));
    }
    for n in &inv.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}
