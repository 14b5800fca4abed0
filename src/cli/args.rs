//! The command line as clap sees it: every subcommand and flag, named as podman/buildah name them so that
//! swapping `podman build` for `kiln build` in a Makefile just works.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

/// kiln — a daemonless, rootless container image builder.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, max_term_width = 100)]
pub struct Cli {
    /// Where images, blobs and snapshots live (default: $KILN_ROOT, else ~/.local/share/kiln, /var/lib/kiln as root).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// kiln's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile.
    #[command(alias = "bud")]
    Build(Box<BuildCommand>),
    /// Build many images: OpenShift BuildConfigs or a kiln-bake.toml, in dependency order.
    Bake(Box<super::bake::BakeArgs>),
    /// Parse a Dockerfile and print its syntax tree.
    Parse(ParseArgs),
    /// List the images in the local store.
    Images(ImagesArgs),
    /// Show an image's manifest and config.
    Inspect(InspectArgs),
    /// Give an image in the store another name.
    Tag(TagArgs),
    /// Remove image names from the store.
    Rmi(RmiArgs),
    /// Remove blobs and snapshots that no image references.
    Prune(PruneArgs),
    /// Check the store (blob digests, image references, snapshots, leftovers); `--repair` fixes what it can.
    Fsck(FsckArgs),
    /// Push an image to a registry or export it (oci:, oci-archive:, docker-archive:).
    Push(PushArgs),
    /// Pull an image from a registry into the store.
    Pull(PullArgs),
    /// Save registry credentials to the auth file.
    Login(LoginArgs),
    /// Remove registry credentials from the auth file.
    Logout(LogoutArgs),
    /// Print the effective supply-chain configuration (kiln.toml and flags) and where each value came from.
    Config(super::supply::ConfigArgs),
    /// Replace the CA layer of an image built with --ca-persist (in the store, or in a registry with --push).
    #[command(name = "ca-update")]
    CaUpdate(super::supply::CaUpdateArgs),
    /// Check an image, a Dockerfile or a fetch log against the supply-chain policy.
    Check(Box<super::check::CheckArgs>),
    /// Print an image's SBOM (SPDX or CycloneDX).
    Sbom(super::sbom::SbomArgs),
    /// Print an image's SLSA provenance.
    Provenance(super::sbom::ProvenanceArgs),
}

/// Registry connection flags shared by build, push, pull and login.
#[derive(Debug, Args, Clone)]
pub struct RegistryFlags {
    /// Require HTTPS and verify certificates (`--tls-verify=false` allows plain HTTP and untrusted certificates).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls_verify: bool,
    /// Credentials file (default: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Directory of CA certificates (`*.crt`) to trust for registries.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// A CA bundle (PEM) to trust for registries; repeatable.
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_files: Vec<PathBuf>,
    /// Credentials `USER:PASSWORD` for this command only.
    #[arg(long, value_name = "USER:PASS")]
    pub creds: Option<String>,
}

/// Image manifest/config format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// OCI image spec (default).
    Oci,
    /// Docker image manifest v2 schema 2.
    Docker,
}

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// gzip (default, readable everywhere).
    Gzip,
    /// zstd (smaller and faster; needs a recent runtime to pull).
    Zstd,
}

/// When to pull the base images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullArg {
    /// Pull when missing from the store (default).
    Missing,
    /// Always ask the registry; a new digest means a cache miss.
    Always,
    /// Never pull; fail when missing.
    Never,
    /// Same as `always` (podman's `--pull` / `--pull=true`).
    True,
    /// Same as `missing` (podman's `--pull=false`).
    False,
}

/// How RUN steps are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IsolationArg {
    /// Pick the first mode that works here.
    Auto,
    /// User namespace (ordinary users).
    Rootless,
    /// Namespaces without a user namespace (root on a host).
    Root,
    /// No namespaces, chroot only (build pods that cannot mount).
    Chroot,
}

/// `kiln build`: what to build (`ImageArgs`) and how (`BuildArgs`, which `kiln bake` shares).
#[derive(Debug, Args)]
pub struct BuildCommand {
    /// The one image this build makes.
    #[command(flatten)]
    pub image: ImageArgs,
    /// Everything else; `kiln bake` flattens the same struct and passes it to every build.
    #[command(flatten)]
    pub args: BuildArgs,
}

/// The flags of `kiln build` that name one image: context, Dockerfile, tags, stage, base override, outputs.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// The build context directory.
    #[arg(value_name = "CONTEXT", default_value = ".")]
    pub context: PathBuf,
    /// The Dockerfile (default: CONTEXT/Dockerfile, else CONTEXT/Containerfile).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Name the image; repeatable.
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// Build up to this stage.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Replace the base image of the first stage.
    #[arg(long, value_name = "IMAGE")]
    pub from: Option<String>,
    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Print the resolved plan and exit without building.
    #[arg(long)]
    pub dry_run: bool,
    /// Run only the build checks (BuildKit's lint rules): print the findings, exit 1 when there are any.
    #[arg(long, conflicts_with = "dry_run")]
    pub check: bool,
    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `kiln build` flags that apply to any build (podman build / buildah bud names). New build flags belong
/// here: `kiln bake` flattens this struct, so they reach every build of a bake without more code.
#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Build argument `K=V`, or `K` to take the value from the environment; repeatable.
    #[arg(long = "build-arg", value_name = "K[=V]")]
    pub build_args: Vec<String>,
    /// Label `K=V` added to the image; repeatable.
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Do not use cached steps.
    #[arg(long)]
    pub no_cache: bool,
    /// Look step results up in this registry repository too (repeatable).
    #[arg(long = "cache-from", value_name = "REPO")]
    pub cache_from: Vec<String>,
    /// Share every step's result through this registry repository.
    #[arg(long = "cache-to", value_name = "REPO")]
    pub cache_to: Option<String>,
    /// Do not use the cache for these stages (by name; repeatable).
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Base image pull policy: `--pull` alone means always; a value needs `=` (`--pull=never`), as with podman.
    #[arg(long, value_enum, value_name = "POLICY", num_args = 0..=1, require_equals = true,
          default_value = "missing", default_missing_value = "always")]
    pub pull: PullArg,
    /// Image format.
    #[arg(long, value_enum, default_value = "oci")]
    pub format: FormatArg,
    /// Layer compression.
    #[arg(long = "compression-format", value_enum, default_value = "gzip")]
    pub compression: CompressionArg,
    /// Squash all of the new image's layers into one on top of the base.
    #[arg(long)]
    pub squash: bool,
    /// Cache intermediate steps (`--layers=false` turns the step cache off).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub layers: bool,
    /// Target platform (only the host platform is supported).
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// Secret for `RUN --mount=type=secret`: `id=NAME,src=FILE` or `id=NAME,env=VAR`; repeatable.
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<String>,
    /// Push every tag after the build.
    #[arg(long)]
    pub push: bool,
    /// Isolation of RUN steps (default from $KILN_ISOLATION, as buildah reads $BUILDAH_ISOLATION).
    #[arg(long, value_enum, default_value = "auto", env = "KILN_ISOLATION")]
    pub isolation: IsolationArg,
    /// Network for RUN steps: `host` (default), `none`, or `proxy-only` (only through kiln's proxy, to the
    /// Nexus hosts and --allow-host).
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// Registry connection flags.
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// Supply-chain flags: CAs, Nexus, proxy-only network.
    #[command(flatten)]
    pub supply: super::supply::SupplyArgs,
    /// Supply-chain evidence: SBOM, provenance, policy gate.
    #[command(flatten)]
    pub evidence: super::attest::EvidenceFlags,
}

/// `kiln parse` flags.
#[derive(Debug, Args)]
pub struct ParseArgs {
    /// Print the tree in BuildKit's dump format.
    #[arg(long)]
    pub dump: bool,
    /// The Dockerfile to parse.
    #[arg(value_name = "DOCKERFILE")]
    pub file: PathBuf,
}

/// `kiln images` flags.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Print only image IDs.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `kiln inspect` flags.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image name or ID.
    pub name: String,
}

/// `kiln tag` flags.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// Existing image name or ID.
    pub source: String,
    /// New names.
    #[arg(required = true)]
    pub targets: Vec<String>,
}

/// `kiln rmi` flags.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Image names to remove.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `kiln prune` flags.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Keep the most recently used build cache up to this size (`10GB`, `512MiB`, bytes); without it the
    /// whole build cache goes.
    #[arg(long = "keep-storage", value_name = "SIZE")]
    pub keep_storage: Option<String>,
}

/// `kiln fsck` flags.
#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Fix what can be fixed: move corrupt blobs out, remove incomplete snapshots, bad cache records and
    /// what killed kiln processes left (waits for running builds first).
    #[arg(long)]
    pub repair: bool,
}

/// `kiln push` flags.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Image in the store.
    pub name: String,
    /// Destination: `docker://REF` (default: the image's own name), `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
    /// `docker-archive:FILE[:REF]`, or a plain reference.
    pub destination: Option<String>,
    /// Format of the pushed manifest (default: as stored).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Write the pushed manifest digest to this file.
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,
    /// Print only the digest.
    #[arg(short, long)]
    pub quiet: bool,
    /// Registry connection flags.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln pull` flags.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference.
    pub reference: String,
    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,
    /// Registry connection flags.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln login` flags.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host (`host[:port]`).
    pub registry_host: String,
    /// User name.
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer `--password-stdin`).
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Registry connection flags.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln logout` flags.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry host (`host[:port]`).
    pub registry_host: String,
    /// Credentials file.
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("kiln").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn podman_style_build_flags_parse() {
        let cli = parse(&[
            "build",
            "-f",
            "Containerfile",
            "-t",
            "a",
            "-t",
            "b:1",
            "--build-arg",
            "X=1",
            "--tls-verify=false",
            "--layers=false",
            "--pull",
            "--format",
            "docker",
            "ctx",
        ]);
        let Command::Build(b) = cli.command else { panic!("not build") };
        assert_eq!(b.image.tags, ["a", "b:1"]);
        assert!(!b.args.registry.tls_verify);
        assert!(!b.args.layers);
        assert_eq!(b.args.pull, PullArg::Always);
        assert_eq!(b.args.format, FormatArg::Docker);
        assert_eq!(b.image.context, PathBuf::from("ctx"));
    }

    #[test]
    fn defaults_match_podman() {
        let Command::Build(b) = parse(&["build"]).command else { panic!("not build") };
        assert!(b.args.registry.tls_verify && b.args.layers);
        assert_eq!(b.args.pull, PullArg::Missing);
        assert_eq!(b.image.context, PathBuf::from("."));
    }

    #[test]
    fn root_is_global() {
        let cli = parse(&["images", "--root", "/x"]);
        assert_eq!(cli.root, Some(PathBuf::from("/x")));
    }
}
