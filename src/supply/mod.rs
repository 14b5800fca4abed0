//! The build's supply chain: which CAs RUN steps trust ([`trust`]), where their package managers fetch
//! from ([`routing`], a Nexus repository manager), and what they may reach at all ([`egress`]).
//!
//! ```text
//!  SupplyOptions (flags + kiln.toml, see config)
//!        │ Supply::start — once per build: CA files, Nexus settings, the forward proxy
//!        ▼
//!  Supply::step(view of the image, step) ──▶ StepSupply { mounts, env, netns, egress session }
//!        │                                      │ the RUN step puts these in its sandbox spec
//!        ▼                                      ▼
//!  key_part() ── enters every RUN cache key     sandbox: binds, variables, a network namespace
//! ```
//!
//! The sandbox never learns what a mount or a variable is for: it gets one [`StepSupply`] value as plain
//! mounts, environment and a network namespace to join. Nothing here is written into a layer, the
//! history or the config, except the CA layer `--ca-persist` asks for ([`trust::persist`]).

pub mod config;
pub mod egress;
pub mod routing;
mod stubs;
pub mod trust;
pub mod view;

use std::path::{Path, PathBuf};

use crate::sandbox::SandboxMount;
pub use view::ImageView;

/// Variables the supply adds to rather than replaces (the image or an earlier part may have set them).
const APPENDED: [&str; 2] = ["JAVA_TOOL_OPTIONS", "MAVEN_ARGS"];

/// What one build asks of the supply chain (the library form of the flags and `kiln.toml`).
#[derive(Debug, Clone, Default)]
pub struct SupplyOptions {
    /// `--ca-cert`: company CAs, read when the options were made.
    pub ca_files: Vec<trust::CaFile>,
    /// `--ca-persist`: put the CAs into the image as one top layer.
    pub ca_persist: bool,
    /// `--nexus`: where package managers fetch from.
    pub nexus: Option<routing::Nexus>,
    /// `--network proxy-only`: what RUN steps may reach, through kiln's proxy.
    pub egress: Option<egress::Policy>,
}

impl SupplyOptions {
    /// Whether anything is asked at all.
    pub fn is_empty(&self) -> bool {
        self.ca_files.is_empty() && self.nexus.is_none() && self.egress.is_none()
    }
}

/// Why the supply chain could not be set up for a build or a step.
#[derive(Debug, thiserror::Error)]
pub enum SupplyError {
    /// CA trust failed.
    #[error(transparent)]
    Trust(#[from] trust::TrustError),
    /// Nexus routing failed.
    #[error(transparent)]
    Routing(#[from] routing::RoutingError),
    /// The network policy could not be enforced.
    #[error(transparent)]
    Egress(#[from] egress::EgressError),
    /// The mount-point stubs could not be prepared.
    #[error("cannot prepare the step's mount points in {path}: {source}")]
    Stubs {
        /// The stub cache.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The supply chain of one running build.
pub struct Supply {
    trust: Option<trust::Trust>,
    routing: Option<routing::Routing>,
    egress: Option<egress::Egress>,
    persist: bool,
    stubs: PathBuf,
}

/// What a RUN step tells the supply about itself.
pub struct StepRequest<'a> {
    /// `Dockerfile:LINE RUN ...`, for the fetch log and refusals.
    pub label: &'a str,
    /// The step user's home directory inside the image.
    pub home: &'a str,
    /// The step's environment (image ENV and build args).
    pub env: &'a [(String, String)],
    /// A directory for this step's generated files (created when needed), removed with the step.
    pub scratch: &'a Path,
    /// The step's network goes through the egress proxy (not `--network=none`).
    pub networked: bool,
}

/// Everything a RUN step gets from the supply chain: one value, carried into the sandbox spec.
#[derive(Default)]
pub struct StepSupply {
    /// Read-only binds (bundles, generated configuration, repository overlays).
    pub mounts: Vec<SandboxMount>,
    /// Variables for the command (see [`StepSupply::apply_env`]).
    pub env: Vec<(String, String)>,
    /// A network namespace for the step to join instead of its own (proxy-only).
    pub netns: Option<PathBuf>,
    /// The step's egress session: its relay stays open while this lives.
    pub egress: Option<egress::StepSession>,
    /// Files the step sees as the image's own rather than as mounts (the merged CA bundles): the command
    /// may replace them, as `update-ca-certificates` renames a new bundle over its own (a bind mount there
    /// fails with EBUSY). Targets are real paths in the image (its symlinks resolved).
    pub placed: Vec<Placed>,
    /// A directory of mount points the image lacks and of the placed files, for the step's overlay to
    /// stack as its topmost lower dir (see `stubs`); where the rootfs is no overlay, the sandbox creates
    /// the mount points and the step writes the placed files into its private tree instead.
    pub lower: Option<PathBuf>,
}

/// A file the supply puts into a step's tree as if the image had it (see [`StepSupply::placed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The content, a file in the supply's cache.
    pub source: PathBuf,
    /// Where the step sees it: a real path inside the image.
    pub target: String,
}

impl StepSupply {
    /// Where kiln's own files appear in a step: a small tmpfs, so the files bound under it cost no writes
    /// to the step's upper directory (only the mount point `/run/kiln`, if missing, is a stub there).
    pub const RUN_DIR: &'static str = "/run/kiln";

    /// Mounts the tmpfs at [`StepSupply::RUN_DIR`] once, before the first file under it.
    fn run_dir(&mut self) {
        let mounted = self.mounts.iter().any(|m| m.target() == Self::RUN_DIR);
        if !mounted {
            self.mounts.push(SandboxMount::Tmpfs { target: Self::RUN_DIR.to_string(), size: Some(1 << 20) });
        }
    }

    /// Binds the host file or directory `source` read-only at `target`.
    pub fn bind(&mut self, source: &Path, target: &str) {
        if target.starts_with(&format!("{}/", Self::RUN_DIR)) {
            self.run_dir();
        }
        self.mounts.push(SandboxMount::bind_own(source, target));
    }

    /// Shows the host file `source` at `target` as part of the image (see [`StepSupply::placed`]).
    pub fn place(&mut self, source: &Path, target: &str) {
        let placed = Placed { source: source.to_path_buf(), target: target.to_string() };
        if !self.placed.contains(&placed) {
            self.placed.push(placed);
        }
    }

    /// Sets a variable, replacing an earlier value of this supply.
    pub fn set(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Adds words to a variable (`JAVA_TOOL_OPTIONS`, `MAVEN_ARGS`).
    pub fn append(&mut self, key: &str, words: &str) {
        match self.env.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => {
                v.push(' ');
                v.push_str(words);
            }
            None => self.env.push((key.to_string(), words.to_string())),
        }
    }

    /// Puts the supply's variables into a step environment: they win over the image's, except the
    /// option lists, which keep the image's words and add these after them.
    pub fn apply_env(&self, env: &mut Vec<(String, String)>) {
        for (key, value) in &self.env {
            match env.iter_mut().find(|(k, _)| k == key) {
                Some((_, old)) if APPENDED.contains(&key.as_str()) && !old.is_empty() => {
                    *old = format!("{old} {value}");
                }
                Some((_, old)) => *old = value.clone(),
                None => env.push((key.clone(), value.clone())),
            }
        }
    }
}

impl Supply {
    /// Sets up the build's supply chain; generated trust files are kept in `cache_dir` by content.
    pub fn start(options: &SupplyOptions, cache_dir: PathBuf) -> Result<Supply, SupplyError> {
        let trust =
            (!options.ca_files.is_empty()).then(|| trust::Trust::new(&options.ca_files, cache_dir.join("trust")));
        let routing = options.nexus.clone().map(|n| routing::Routing::new(n, cache_dir.join("routing")));
        let egress = match &options.egress {
            Some(policy) => {
                let mut policy = policy.clone();
                if let Some(nexus) = &options.nexus {
                    policy.allow.extend(nexus.hosts());
                }
                Some(egress::Egress::start(policy)?)
            }
            None => None,
        };
        Ok(Supply { trust, routing, egress, persist: options.ca_persist, stubs: cache_dir.join("stubs") })
    }

    /// A supply chain that does nothing (no flags, no configuration).
    pub fn none() -> Supply {
        Supply { trust: None, routing: None, egress: None, persist: false, stubs: PathBuf::new() }
    }

    /// What enters every RUN cache key: the CAs' content and the routing settings; `None` when neither
    /// is asked, so builds without them keep their keys. The network policy does not enter: it can only
    /// make a step fail, never change what a successful step produced.
    pub fn key_part(&self) -> Option<String> {
        let parts: Vec<String> =
            [self.trust.as_ref().map(|t| t.key_part()), self.routing.as_ref().map(|r| r.key_part())]
                .into_iter()
                .flatten()
                .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    /// Whether a RUN step gets anything at all.
    pub fn is_active(&self) -> bool {
        self.trust.is_some() || self.routing.is_some() || self.egress.is_some()
    }

    /// Whether RUN steps with network go through the egress proxy.
    pub fn proxy_only(&self) -> bool {
        self.egress.is_some()
    }

    /// The company CAs (DER), for kiln's own downloads.
    pub fn ca_certs(&self) -> &[Vec<u8>] {
        self.trust.as_ref().map(|t| t.certs()).unwrap_or_default()
    }

    /// Whether the CAs go into the image as a layer.
    pub fn persist(&self) -> bool {
        self.persist && self.trust.is_some()
    }

    /// The mounts, variables and network a RUN step gets.
    pub fn step(&self, request: &StepRequest<'_>, view: &ImageView) -> Result<StepSupply, SupplyError> {
        let mut out = StepSupply::default();
        if let Some(trust) = &self.trust {
            trust.for_step(view, &mut out)?;
        }
        let proxy = match (&self.egress, request.networked) {
            (Some(egress), true) => {
                let session = egress.open_step(request.label)?;
                out.netns = Some(session.netns_path());
                for (key, value) in egress::proxy_env() {
                    out.set(key, &value);
                }
                out.append("JAVA_TOOL_OPTIONS", &egress::java_proxy_options());
                out.egress = Some(session);
                Some(egress::STEP_PROXY)
            }
            _ => None,
        };
        if let Some(routing) = &self.routing {
            routing.for_step(view, request, proxy, &mut out)?;
        }
        let targets: Vec<(String, bool)> = out
            .mounts
            .iter()
            .map(|m| match m {
                SandboxMount::Bind { root, subpath, target, .. } => (target.clone(), root.join(subpath).is_file()),
                SandboxMount::Tmpfs { target, .. } | SandboxMount::Secret { target, .. } => (target.clone(), false),
            })
            .filter(|(t, _)| !t.starts_with(&format!("{}/", StepSupply::RUN_DIR)))
            .collect();
        out.placed = stubs::resolve_placed(view, std::mem::take(&mut out.placed));
        out.lower = stubs::lower_dir(view, &targets, &out.placed, &self.stubs)
            .map_err(|source| SupplyError::Stubs { path: self.stubs.clone(), source })?;
        Ok(out)
    }

    /// One line about the build's network use (proxy-only), for the end of the build.
    pub fn summary(&self) -> Option<String> {
        self.egress.as_ref().map(|e| e.summary())
    }

    /// Every request the proxy-only network saw during the build (empty for other network modes); kiln's
    /// own downloads are left out (the build records those itself).
    pub fn requests(&self) -> Vec<egress::log::Record> {
        let records = self.egress.as_ref().map(|e| e.records()).unwrap_or_default();
        records.into_iter().filter(|r| !r.by_kiln).collect()
    }

    /// On the proxy-only network, checks an ADD URL of `step` against the allow-list (its message when
    /// refused); elsewhere everything is allowed.
    pub fn admit_download(&self, step: &str, url: &url::Url) -> Result<(), String> {
        self.egress.as_ref().map_or(Ok(()), |e| e.admit(step, url))
    }

    /// On the proxy-only network, logs an ADD download of `step` in the fetch log.
    pub fn record_download(&self, step: &str, url: &url::Url, status: u16, bytes: u64, duration_ms: u64) {
        if let Some(egress) = &self.egress {
            egress.record(step, url, status, bytes, duration_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supply_variables_win_except_option_lists_which_grow() {
        let mut out = StepSupply::default();
        out.set("PIP_INDEX_URL", "https://nexus/pypi");
        out.append("JAVA_TOOL_OPTIONS", "-Da=1");
        out.append("JAVA_TOOL_OPTIONS", "-Db=2");
        let mut env = vec![
            ("PIP_INDEX_URL".to_string(), "https://elsewhere".to_string()),
            ("JAVA_TOOL_OPTIONS".to_string(), "-Xmx1g".to_string()),
        ];
        out.apply_env(&mut env);
        assert_eq!(env[0].1, "https://nexus/pypi");
        assert_eq!(env[1].1, "-Xmx1g -Da=1 -Db=2");
    }

    #[test]
    fn without_options_nothing_enters_cache_keys() {
        assert_eq!(Supply::none().key_part(), None);
    }
}
