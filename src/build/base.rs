//! Resolving a stage's base: `scratch`, an image from the store or a registry, or an earlier stage.

use oci_spec::image::{Descriptor, ImageManifest};

use crate::build::BuildCtx;
use crate::build::error::BuildError;
use crate::build::options::PullPolicy;
use crate::build::state::{ImageState, LayerRef};
use crate::image::{ImageConfig, Reference};
use crate::store::Store;
use crate::transfer::pull;

/// The image state of `FROM scratch`: an empty config for the host platform, WORKDIR `/` (BuildKit's
/// `emptyImage`; the default PATH is added for every stage, see [`ensure_path`]).
pub fn scratch(ctx: &BuildCtx<'_>) -> ImageState {
    let mut config = ImageConfig::for_platform(&ctx.platform);
    config.config.env = None;
    config.config.working_dir = Some("/".to_string());
    ImageState::from_base(config, Vec::new())
}

/// The PATH every stage's config has when its base sets none (BuildKit: "make sure that PATH is always set").
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Adds `PATH=`[`DEFAULT_PATH`] to a stage's ENV when its base image has no PATH.
pub fn ensure_path(state: &mut ImageState) {
    if !state.config.env_pairs().iter().any(|(k, _)| k == "PATH") {
        state.config.config.env.get_or_insert_with(Vec::new).push(format!("PATH={DEFAULT_PATH}"));
    }
}

/// The image state of `FROM name`: looked up in the store first (as podman does, `localhost/` included),
/// pulled according to the pull policy otherwise.
pub async fn image(ctx: &BuildCtx<'_>, name: &str) -> Result<(ImageState, Reference), BuildError> {
    let reference = Reference::parse_with_search(name, &ctx.options.search_registries)
        .map_err(|e| BuildError::BadReference { name: name.to_string(), message: e.to_string() })?;
    let local = find_local(ctx.store, name, &reference)?;
    let made_here = ctx.options.local_bases.contains(&reference.to_string());
    let descriptor = match (ctx.options.pull, local) {
        (PullPolicy::Missing | PullPolicy::Never, Some(d)) => d,
        (PullPolicy::Always, Some(d)) if made_here => d,
        (PullPolicy::Never, None) => return Err(BuildError::NotInStore(reference.to_string())),
        _ => pull_base(ctx, name, &reference).await?,
    };
    ctx.evidence.base(name, &reference, descriptor.digest());
    Ok((load(ctx.store, &descriptor)?, reference))
}

/// Pulls a base image; on the proxy-only network only from a registry on its allow-list, and logged in its
/// fetch log as kiln's own download (the build's other requests are the steps').
async fn pull_base(ctx: &BuildCtx<'_>, name: &str, reference: &Reference) -> Result<Descriptor, BuildError> {
    let step = format!("FROM {name}");
    let url = format!(
        "https://{}/v2/{}/manifests/{}",
        reference.api_host(),
        reference.repository(),
        reference.reference_part()
    );
    let url = url::Url::parse(&url).ok();
    if let Some(url) = &url {
        ctx.supply
            .admit_download(&step, url)
            .map_err(|message| BuildError::PullRefused { name: name.to_string(), message })?;
    }
    ctx.info(format!("pulling {reference}"));
    let started = std::time::Instant::now();
    let (descriptor, bytes) = pull::pull_counting(ctx.store, ctx.client, reference, &ctx.platform).await?;
    if let Some(url) = &url {
        ctx.supply.record_download(&step, url, 200, bytes, started.elapsed().as_millis() as u64);
    }
    Ok(descriptor)
}

/// The store entry for `name`: its normalised reference, or `localhost/` + name for unqualified names.
fn find_local(store: &Store, written: &str, reference: &Reference) -> Result<Option<Descriptor>, BuildError> {
    if let Some(d) = store.resolve_tag(&reference.to_string())? {
        return Ok(Some(d));
    }
    if !looks_qualified(written) {
        return Ok(store.resolve_tag(&local_name(written)?)?);
    }
    Ok(None)
}

/// Whether the first path component names a registry host (`host.tld/`, `host:port/`, `localhost/`).
pub fn looks_qualified(name: &str) -> bool {
    let first = name.split('/').next().unwrap_or_default();
    name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost")
}

/// The store name for a name given with `-t` or `kiln tag`: unqualified names get `localhost/`, as podman
/// does, so a local build never passes for a Docker Hub image.
pub fn local_name(name: &str) -> Result<String, BuildError> {
    let qualified = if looks_qualified(name) { name.to_string() } else { format!("localhost/{name}") };
    Reference::parse(&qualified)
        .map(|r| r.to_string())
        .map_err(|e| BuildError::BadReference { name: name.to_string(), message: e.to_string() })
}

/// Reads an image's manifest and config from the store into a stage state.
pub fn load(store: &Store, descriptor: &Descriptor) -> Result<ImageState, BuildError> {
    let bad = |message: String| BuildError::BadImage { digest: descriptor.digest().to_string(), message };
    let manifest_bytes = store.read_blob(descriptor.digest())?;
    let manifest = ImageManifest::from_reader(manifest_bytes.as_slice()).map_err(|e| bad(e.to_string()))?;
    let config_bytes = store.read_blob(manifest.config().digest())?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes).map_err(|e| bad(e.to_string()))?;
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers().len() {
        return Err(bad(format!(
            "{} layers in the manifest but {} diff ids in the config",
            manifest.layers().len(),
            diff_ids.len()
        )));
    }
    let layers = manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .map(|(l, diff_id)| LayerRef {
            digest: l.digest().clone(),
            diff_id: diff_id.clone(),
            size: l.size(),
            media_type: l.media_type().to_string(),
            remote: None,
        })
        .collect();
    Ok(ImageState::from_base(config, layers))
}
