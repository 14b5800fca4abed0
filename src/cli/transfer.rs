//! `kiln push` and `kiln pull`.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use oci_spec::image::Descriptor;

use super::args::{FormatArg, PullArgs, PushArgs};
use super::progress::{Mode, Progress};
use super::{Failure, env, images, output, runtime};
use crate::build::events::{Event, Reporter};
use crate::image::{Platform, Reference};
use crate::registry::Client;
use crate::store::Store;
use crate::transfer::destination::Destination;
use crate::transfer::{export, pull, push};

/// Pushes one stored image to the registry reference `dest`; returns the pushed manifest digest.
pub async fn push_one(
    store: &Store,
    client: &Client,
    manifest: &Descriptor,
    dest: &str,
    docker_format: Option<bool>,
    extra_mounts: &[Reference],
    reporter: &dyn Reporter,
) -> anyhow::Result<String> {
    let reference = Reference::parse(dest).with_context(|| format!("invalid destination {dest:?}"))?;
    reporter.report(Event::Info(format!("pushing {reference}")));
    let mut mount_from: Vec<Reference> = store
        .list_tags()?
        .into_iter()
        .filter(|(_, d)| d.digest() == manifest.digest())
        .filter_map(|(name, _)| Reference::parse(&name).ok())
        .collect();
    mount_from.extend(extra_mounts.iter().cloned());
    let digest = push::push(store, client, manifest, &reference, docker_format, &mount_from).await?;
    reporter.report(Event::Info(format!("pushed {reference}@{digest}")));
    Ok(digest.to_string())
}

/// Runs `kiln push`.
pub fn push(root: Option<&Path>, args: &PushArgs) -> Result<(), Failure> {
    let store = env::open_store(root)?;
    // Prune waits while the image's blobs are being read.
    let _lock = store.lock_shared()?;
    let (name, manifest) = images::resolve(&store, &args.name)?;
    let destination = Destination::parse(args.destination.as_deref().unwrap_or(&name));
    let docker_format = args.format.map(|f| f == FormatArg::Docker);
    let progress = Progress::new(Mode::detect(args.quiet));
    let digest = match destination {
        Destination::Registry(dest) => {
            let client = env::registry_client(&args.registry)?;
            runtime()?.block_on(async {
                let digest = push_one(&store, &client, &manifest, &dest, docker_format, &[], &progress).await?;
                // Attestations refer to the stored manifest: they follow only when it is pushed unchanged.
                if docker_format.is_none() {
                    super::attest::push_attestations(&store, &client, &manifest, &dest, &progress).await?;
                }
                anyhow::Ok(digest)
            })?
        }
        Destination::OciDir { path, tag } => {
            export::to_oci_dir(&store, &manifest, &path, tag.as_deref())?;
            manifest.digest().to_string()
        }
        Destination::OciArchive { path, tag } => {
            export::to_oci_archive(&store, &manifest, &path, tag.as_deref())?;
            manifest.digest().to_string()
        }
        Destination::DockerArchive { path, reference } => {
            let tags: Vec<String> = reference.into_iter().chain(std::iter::once(name)).take(1).collect();
            export::to_docker_archive(&store, &manifest, &path, &tags)?;
            manifest.digest().to_string()
        }
    };
    if let Some(file) = &args.digestfile {
        fs_err::write(file, &digest).context("cannot write --digestfile")?;
    }
    writeln!(output::stdout(), "{digest}")?;
    Ok(())
}

/// Runs `kiln pull`.
pub fn pull(root: Option<&Path>, args: &PullArgs) -> Result<(), Failure> {
    let store = env::open_store(root)?;
    // Prune waits until the pulled blobs are named, or it would collect them in between.
    let _lock = store.lock_shared()?;
    let client = env::registry_client(&args.registry)?;
    let reference =
        Reference::parse(&args.reference).with_context(|| format!("invalid reference {:?}", args.reference))?;
    let progress = Progress::new(Mode::detect(args.quiet));
    progress.report(Event::Info(format!("pulling {reference}")));
    let manifest = runtime()?.block_on(pull::pull(&store, &client, &reference, &Platform::host()))?;
    let bytes = store.read_blob(manifest.digest())?;
    let parsed = oci_spec::image::ImageManifest::from_reader(bytes.as_slice())?;
    writeln!(output::stdout(), "{}", parsed.config().digest().digest())?;
    Ok(())
}
