//! The store commands: `images`, `inspect`, `tag`, `rmi`, `prune`.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use oci_spec::image::{Descriptor, Digest, ImageManifest};

use super::args::{ImagesArgs, InspectArgs, PruneArgs, RmiArgs, TagArgs};
use super::{Failure, env, output};
use crate::build;
use crate::image::{self, ImageConfig};
use crate::store::Store;

/// Finds an image by name (as stored, as a local name, as a normalised reference) or by ID prefix.
pub fn resolve(store: &Store, name: &str) -> anyhow::Result<(String, Descriptor)> {
    let mut candidates = vec![name.to_string()];
    if let Ok(local) = build::local_name(name) {
        candidates.push(local);
    }
    if let Ok(reference) = image::Reference::parse(name) {
        candidates.push(reference.to_string());
    }
    for candidate in &candidates {
        if let Some(d) = store.resolve_tag(candidate)? {
            return Ok((candidate.clone(), d));
        }
    }
    let id = name.trim_start_matches("sha256:");
    if id.len() >= 3 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        for (tag, d) in store.list_tags()? {
            if let Ok((_, config)) = read_image(store, &d)
                && config.digest().starts_with(id)
            {
                return Ok((tag, d));
            }
        }
    }
    bail!("image {name:?} is not in the store (see `kiln images`)")
}

fn read_image(store: &Store, d: &Descriptor) -> anyhow::Result<(ImageManifest, Digest)> {
    let bytes = store.read_blob(d.digest())?;
    let manifest = ImageManifest::from_reader(bytes.as_slice())
        .with_context(|| format!("manifest {} in the store is not valid", d.digest()))?;
    let config = manifest.config().digest().clone();
    Ok((manifest, config))
}

/// Runs `kiln images`.
pub fn images(root: Option<&Path>, args: &ImagesArgs) -> Result<(), Failure> {
    let store = env::open_store(root)?;
    let mut rows = Vec::new();
    for (name, d) in store.list_tags()? {
        let (manifest, config) = read_image(&store, &d)?;
        let size: u64 = manifest.layers().iter().map(|l| l.size()).sum::<u64>() + manifest.config().size();
        let created = store
            .read_blob(&config)
            .ok()
            .and_then(|b| serde_json::from_slice::<ImageConfig>(&b).ok())
            .and_then(|c| c.created)
            .unwrap_or_default();
        let (repo, tag) = split_name(&name);
        rows.push((repo, tag, config.digest()[..12].to_string(), created, human_size(size)));
    }
    if args.quiet {
        for row in rows {
            writeln!(output::stdout(), "{}", row.2)?;
        }
        return Ok(());
    }
    writeln!(
        output::stdout(),
        "{:<48} {:<16} {:<14} {:<22} {:>10}",
        "REPOSITORY",
        "TAG",
        "IMAGE ID",
        "CREATED",
        "SIZE"
    )?;
    for (repo, tag, id, created, size) in rows {
        writeln!(output::stdout(), "{repo:<48} {tag:<16} {id:<14} {created:<22} {size:>10}")?;
    }
    Ok(())
}

fn split_name(name: &str) -> (String, String) {
    let without_digest = name.split('@').next().unwrap_or(name);
    match without_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (without_digest.to_string(), "<none>".to_string()),
    }
}

/// `10GB`, `512MiB`, `1.5G`, `4096` → bytes (decimal and binary units, as podman accepts them).
fn parse_size(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 =
        number.parse().map_err(|_| anyhow::anyhow!("--keep-storage {text:?}: expected a size like 10GB"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => anyhow::bail!("--keep-storage {text:?}: unknown unit {other:?}"),
    };
    Ok((value * factor) as u64)
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// Runs `kiln inspect`: the manifest and config JSON of one image.
pub fn inspect(root: Option<&Path>, args: &InspectArgs) -> Result<(), Failure> {
    let store = env::open_store(root)?;
    let (name, d) = resolve(&store, &args.name)?;
    let manifest: serde_json::Value = serde_json::from_slice(&store.read_blob(d.digest())?)?;
    let (_, config_digest) = read_image(&store, &d)?;
    let config: serde_json::Value = serde_json::from_slice(&store.read_blob(&config_digest)?)?;
    let out = serde_json::json!({
        "Name": name,
        "Id": config_digest.digest(),
        "Digest": d.digest().to_string(),
        "MediaType": d.media_type().to_string(),
        "Manifest": manifest,
        "Config": config,
    });
    writeln!(output::stdout(), "{}", serde_json::to_string_pretty(&out)?)?;
    Ok(())
}

/// Runs `kiln tag`.
pub fn tag(root: Option<&Path>, args: &TagArgs) -> Result<(), Failure> {
    let store = env::open_store(root)?;
    let (_, d) = resolve(&store, &args.source)?;
    for target in &args.targets {
        store.set_tag(&build::local_name(target)?, &d)?;
    }
    Ok(())
}

/// Runs `kiln rmi`: removes names; the blobs stay until `kiln prune`.
pub fn rmi(root: Option<&Path>, args: &RmiArgs) -> Result<(), Failure> {
    let store = env::open_store(root)?;
    for name in &args.names {
        let (stored, _) = resolve(&store, name)?;
        store.remove_tag(&stored)?;
        writeln!(output::stdout(), "Untagged: {stored}")?;
    }
    Ok(())
}

/// Runs `kiln prune`: frees blobs and snapshots no image needs.
pub fn prune(root: Option<&Path>, args: &PruneArgs) -> Result<(), Failure> {
    let store = env::open_store(root)?;
    let mut keep = HashSet::new();
    for (_, d) in store.list_tags()? {
        let (_, config_digest) = read_image(&store, &d)?;
        let config: ImageConfig = serde_json::from_slice(&store.read_blob(&config_digest)?)?;
        let ids = &config.rootfs.diff_ids;
        for n in 1..=ids.len() {
            keep.insert(image::chain_id(&ids[..n]));
        }
    }
    let cache = crate::cache::Cache::open(&store);
    let (cache_roots, records) = match &args.keep_storage {
        Some(size) => {
            let kept = cache.evict_to(parse_size(size)?);
            keep.extend(kept.chains);
            (kept.layers, kept.removed)
        }
        None => (Vec::new(), cache.clear()),
    };
    let report = store.prune(&cache_roots, &keep)?;
    crate::cache::lineage::Lineage::open(&store).sweep();
    crate::inventory::sweep_cache(&store);
    writeln!(
        output::stdout(),
        "removed {} blobs, {} snapshots and {records} cache records, freed {}",
        report.blobs_removed,
        report.snapshots_removed,
        human_size(report.bytes_freed)
    )?;
    Ok(())
}
