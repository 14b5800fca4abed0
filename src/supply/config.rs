//! `kiln.toml`: the supply-chain settings laptops, build pods and Makefiles share without new flags.
//!
//! Read in order — `/etc/kiln/kiln.toml`, then `$XDG_CONFIG_HOME/kiln/kiln.toml` (or the file given with
//! `--config`) — each file overriding the one before it value by value, and flags overriding both. Every
//! effective value remembers where it came from, which `kiln config` prints. Paths in a file are relative
//! to that file's directory.
//!
//! ```toml
//! [trust]
//! ca-certs = ["/etc/pki/company/root-ca.pem"]
//! persist = false
//!
//! [nexus]
//! url = "https://nexus.example.com"
//! dnf = false                                  # UBI RPMs straight from Red Hat
//! pip = { path = "repository/pypi-group/simple" }
//!
//! [network]
//! mode = "proxy-only"                          # host | none | proxy-only
//! allow-hosts = ["github.com"]
//! fetch-log = "/var/log/kiln/fetch.jsonl"
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::routing::{Ecosystem, Nexus};
use super::trust::CaFile;
use super::{SupplyOptions, egress};

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A configuration file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A configuration file is not valid TOML or has unknown keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A value cannot be used.
    #[error("{origin}: {message}")]
    Invalid {
        /// Where the value came from.
        origin: Origin,
        /// What is wrong with it.
        message: String,
    },
    /// A CA file is unusable.
    #[error("{origin}: {source}")]
    Ca {
        /// Where the CA list came from.
        origin: Origin,
        /// The cause.
        source: super::trust::TrustError,
    },
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// kiln's default.
    Default,
    /// A configuration file.
    File(PathBuf),
    /// A command-line flag.
    Flag(&'static str),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Flag(flag) => f.write_str(flag),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// Its origin.
    pub origin: Origin,
}

impl<T> Sourced<T> {
    fn default(value: T) -> Self {
        Sourced { value, origin: Origin::Default }
    }

    fn set(&mut self, value: T, origin: Origin) {
        *self = Sourced { value, origin };
    }
}

/// One ecosystem's effective routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcosystemSetting {
    /// Which.
    pub ecosystem: Ecosystem,
    /// Routed through Nexus.
    pub enabled: Sourced<bool>,
    /// The repository path (or URL, or template).
    pub path: Sourced<String>,
}

/// The effective supply-chain configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Files read, in order.
    pub files: Vec<PathBuf>,
    /// Company CA files.
    pub ca_certs: Sourced<Vec<PathBuf>>,
    /// Package the CAs into the image.
    pub ca_persist: Sourced<bool>,
    /// The Nexus base URL.
    pub nexus_url: Sourced<Option<String>>,
    /// Per ecosystem.
    pub ecosystems: Vec<EcosystemSetting>,
    /// `host`, `none` or `proxy-only`.
    pub network: Sourced<String>,
    /// Extra allowed hosts for proxy-only.
    pub allow_hosts: Sourced<Vec<String>>,
    /// Where the fetch log goes.
    pub fetch_log: Sourced<Option<PathBuf>>,
}

/// What the command line says (empty or `None`: not given).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--ca-cert` (replaces the configured list).
    pub ca_certs: Vec<PathBuf>,
    /// `--ca-persist`.
    pub ca_persist: bool,
    /// `--nexus URL`.
    pub nexus: Option<String>,
    /// `--nexus-path ECO=PATH`.
    pub nexus_paths: Vec<(Ecosystem, String)>,
    /// `--no-nexus ECO`.
    pub no_nexus: Vec<Ecosystem>,
    /// `--network MODE`.
    pub network: Option<String>,
    /// `--allow-host` (replaces the configured list).
    pub allow_hosts: Vec<String>,
    /// `--fetch-log FILE`.
    pub fetch_log: Option<PathBuf>,
}

/// The network modes `--network` and `network.mode` accept.
pub const NETWORK_MODES: [&str; 3] = ["host", "none", "proxy-only"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    trust: Option<TrustSection>,
    nexus: Option<NexusSection>,
    network: Option<NetworkSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TrustSection {
    ca_certs: Option<Vec<PathBuf>>,
    persist: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct NexusSection {
    url: Option<String>,
    pip: Option<EcosystemValue>,
    npm: Option<EcosystemValue>,
    maven: Option<EcosystemValue>,
    gradle: Option<EcosystemValue>,
    go: Option<EcosystemValue>,
    dnf: Option<EcosystemValue>,
    apt: Option<EcosystemValue>,
}

/// `pip = false`, or `pip = { enabled = true, path = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EcosystemValue {
    Switch(bool),
    #[serde(rename_all = "kebab-case")]
    Table {
        enabled: Option<bool>,
        path: Option<String>,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct NetworkSection {
    mode: Option<String>,
    allow_hosts: Option<Vec<String>>,
    fetch_log: Option<PathBuf>,
}

impl NexusSection {
    fn get(&self, e: Ecosystem) -> Option<&EcosystemValue> {
        match e {
            Ecosystem::Pip => self.pip.as_ref(),
            Ecosystem::Npm => self.npm.as_ref(),
            Ecosystem::Maven => self.maven.as_ref(),
            Ecosystem::Gradle => self.gradle.as_ref(),
            Ecosystem::Go => self.go.as_ref(),
            Ecosystem::Dnf => self.dnf.as_ref(),
            Ecosystem::Apt => self.apt.as_ref(),
        }
    }
}

impl Settings {
    /// kiln's defaults.
    pub fn defaults() -> Settings {
        Settings {
            files: Vec::new(),
            ca_certs: Sourced::default(Vec::new()),
            ca_persist: Sourced::default(false),
            nexus_url: Sourced::default(None),
            ecosystems: Ecosystem::ALL
                .iter()
                .map(|e| EcosystemSetting {
                    ecosystem: *e,
                    enabled: Sourced::default(true),
                    path: Sourced::default(e.default_path().to_string()),
                })
                .collect(),
            network: Sourced::default("host".to_string()),
            allow_hosts: Sourced::default(Vec::new()),
            fetch_log: Sourced::default(None),
        }
    }

    /// The settings from `files` (in order; `required` ones must exist, others are skipped when missing),
    /// then `flags`.
    pub fn load(files: &[(PathBuf, bool)], flags: &Overrides) -> Result<Settings, ConfigError> {
        let mut settings = Settings::defaults();
        for (path, required) in files {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
                Err(source) => return Err(ConfigError::Read { path: path.clone(), source }),
            };
            let parsed: FileConfig = toml::from_str(&text)
                .map_err(|e| ConfigError::Parse { path: path.clone(), message: e.to_string().trim().to_string() })?;
            settings.apply_file(path, parsed);
            settings.files.push(path.clone());
        }
        settings.apply_flags(flags);
        Ok(settings)
    }

    fn apply_file(&mut self, path: &Path, file: FileConfig) {
        let origin = || Origin::File(path.to_path_buf());
        let dir = path.parent().unwrap_or(Path::new("/"));
        if let Some(trust) = file.trust {
            if let Some(cas) = trust.ca_certs {
                self.ca_certs.set(cas.into_iter().map(|p| dir.join(p)).collect(), origin());
            }
            if let Some(persist) = trust.persist {
                self.ca_persist.set(persist, origin());
            }
        }
        if let Some(nexus) = file.nexus {
            if let Some(url) = &nexus.url {
                self.nexus_url.set(Some(url.clone()), origin());
            }
            for setting in &mut self.ecosystems {
                match nexus.get(setting.ecosystem) {
                    Some(EcosystemValue::Switch(on)) => setting.enabled.set(*on, origin()),
                    Some(EcosystemValue::Table { enabled, path }) => {
                        if let Some(on) = enabled {
                            setting.enabled.set(*on, origin());
                        }
                        if let Some(p) = path {
                            setting.path.set(p.clone(), origin());
                        }
                    }
                    None => {}
                }
            }
        }
        if let Some(network) = file.network {
            if let Some(mode) = network.mode {
                self.network.set(mode, origin());
            }
            if let Some(hosts) = network.allow_hosts {
                self.allow_hosts.set(hosts, origin());
            }
            if let Some(log) = network.fetch_log {
                self.fetch_log.set(Some(dir.join(log)), origin());
            }
        }
    }

    fn apply_flags(&mut self, flags: &Overrides) {
        if !flags.ca_certs.is_empty() {
            self.ca_certs.set(flags.ca_certs.clone(), Origin::Flag("--ca-cert"));
        }
        if flags.ca_persist {
            self.ca_persist.set(true, Origin::Flag("--ca-persist"));
        }
        if let Some(url) = &flags.nexus {
            self.nexus_url.set(Some(url.clone()), Origin::Flag("--nexus"));
        }
        for setting in &mut self.ecosystems {
            if let Some((_, path)) = flags.nexus_paths.iter().rev().find(|(e, _)| *e == setting.ecosystem) {
                setting.path.set(path.clone(), Origin::Flag("--nexus-path"));
                setting.enabled.set(true, Origin::Flag("--nexus-path"));
            }
            if flags.no_nexus.contains(&setting.ecosystem) {
                setting.enabled.set(false, Origin::Flag("--no-nexus"));
            }
        }
        if let Some(mode) = &flags.network {
            self.network.set(mode.clone(), Origin::Flag("--network"));
        }
        if !flags.allow_hosts.is_empty() {
            self.allow_hosts.set(flags.allow_hosts.clone(), Origin::Flag("--allow-host"));
        }
        if let Some(log) = &flags.fetch_log {
            self.fetch_log.set(Some(log.clone()), Origin::Flag("--fetch-log"));
        }
    }

    /// Whether RUN steps get their own network with only loopback (`none` or `proxy-only`).
    pub fn network_mode(&self) -> Result<&str, ConfigError> {
        let mode = self.network.value.as_str();
        if NETWORK_MODES.contains(&mode) {
            Ok(mode)
        } else {
            Err(ConfigError::Invalid {
                origin: self.network.origin.clone(),
                message: format!("network mode {mode:?}: expected host, none or proxy-only"),
            })
        }
    }

    /// The library options these settings ask for: CA files are read now, so that a missing or empty
    /// one is reported before the build starts.
    pub fn to_options(&self) -> Result<SupplyOptions, ConfigError> {
        let mut ca_files = Vec::new();
        for path in &self.ca_certs.value {
            ca_files.push(
                CaFile::read(path)
                    .map_err(|source| ConfigError::Ca { origin: self.ca_certs.origin.clone(), source })?,
            );
        }
        if self.ca_persist.value && ca_files.is_empty() {
            return Err(ConfigError::Invalid {
                origin: self.ca_persist.origin.clone(),
                message: "--ca-persist needs CA certificates (--ca-cert FILE or trust.ca-certs)".to_string(),
            });
        }
        let nexus = match &self.nexus_url.value {
            Some(text) => {
                let url =
                    url::Url::parse(text).ok().filter(|u| matches!(u.scheme(), "http" | "https")).ok_or_else(|| {
                        ConfigError::Invalid {
                            origin: self.nexus_url.origin.clone(),
                            message: format!("Nexus URL {text:?}: expected http(s)://HOST[:PORT][/PATH]"),
                        }
                    })?;
                let mut nexus = Nexus::with_defaults(url);
                nexus.paths.clear();
                for s in self.ecosystems.iter().filter(|s| s.enabled.value) {
                    nexus.paths.insert(s.ecosystem, s.path.value.clone());
                }
                Some(nexus)
            }
            None => None,
        };
        let egress = match self.network_mode()? {
            "proxy-only" => {
                Some(egress::Policy { allow: self.allow_hosts.value.clone(), fetch_log: self.fetch_log.value.clone() })
            }
            _ => None,
        };
        if let Some(list) = egress.as_ref().map(|p| &p.allow) {
            egress::allow::AllowList::new(list)
                .map_err(|message| ConfigError::Invalid { origin: self.allow_hosts.origin.clone(), message })?;
        }
        Ok(SupplyOptions { ca_files, ca_persist: self.ca_persist.value, nexus, egress })
    }

    /// The effective configuration as TOML, each value followed by where it came from.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let files: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
        let read = if files.is_empty() { "none".to_string() } else { files.join(", ") };
        let _ = writeln!(out, "# kiln's effective configuration; files read: {read}");
        let line = |out: &mut String, key: &str, value: String, origin: &Origin| {
            let text = format!("{key} = {value}");
            let _ = writeln!(out, "{text:<60} # {origin}");
        };
        out.push_str("\n[trust]\n");
        line(&mut out, "ca-certs", toml_paths(&self.ca_certs.value), &self.ca_certs.origin);
        line(&mut out, "persist", self.ca_persist.value.to_string(), &self.ca_persist.origin);
        out.push_str("\n[nexus]\n");
        match &self.nexus_url.value {
            Some(url) => line(&mut out, "url", toml_string(url), &self.nexus_url.origin),
            None => {
                let _ = writeln!(out, "{:<60} # {}", "# url = (not set: no routing)", self.nexus_url.origin);
            }
        }
        for s in &self.ecosystems {
            let value = format!("{{ enabled = {}, path = {} }}", s.enabled.value, toml_string(&s.path.value));
            let origin = if s.enabled.origin == s.path.origin {
                s.enabled.origin.to_string()
            } else {
                format!("enabled: {}, path: {}", s.enabled.origin, s.path.origin)
            };
            let _ = writeln!(out, "{:<60} # {origin}", format!("{} = {value}", s.ecosystem.name()));
        }
        out.push_str("\n[network]\n");
        line(&mut out, "mode", toml_string(&self.network.value), &self.network.origin);
        let hosts: Vec<String> = self.allow_hosts.value.iter().map(|h| toml_string(h)).collect();
        line(&mut out, "allow-hosts", format!("[{}]", hosts.join(", ")), &self.allow_hosts.origin);
        match &self.fetch_log.value {
            Some(path) => line(&mut out, "fetch-log", toml_string(&path.display().to_string()), &self.fetch_log.origin),
            None => {
                let _ = writeln!(out, "{:<60} # {}", "# fetch-log = (not set)", self.fetch_log.origin);
            }
        }
        out
    }
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn toml_paths(paths: &[PathBuf]) -> String {
    let items: Vec<String> = paths.iter().map(|p| toml_string(&p.display().to_string())).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn later_files_override_earlier_ones_and_flags_override_both() {
        let t = tempfile::tempdir().unwrap();
        let system = write(
            t.path(),
            "system.toml",
            "[trust]\nca-certs = [\"ca.pem\"]\n[nexus]\nurl = \"https://nexus.corp\"\ndnf = false\n[network]\nmode = \"proxy-only\"\n",
        );
        let user =
            write(t.path(), "user.toml", "[nexus]\nurl = \"https://nexus.team\"\npip = { path = \"pypi/simple\" }\n");
        let flags =
            Overrides { allow_hosts: vec!["github.com".into()], no_nexus: vec![Ecosystem::Apt], ..Default::default() };
        let missing = t.path().join("missing.toml");
        let s = Settings::load(&[(system.clone(), false), (missing, false), (user.clone(), false)], &flags).unwrap();
        assert_eq!(s.files, [system.clone(), user.clone()]);
        assert_eq!(s.ca_certs.value, [t.path().join("ca.pem")], "relative to the file");
        assert_eq!(s.ca_certs.origin, Origin::File(system.clone()));
        assert_eq!(s.nexus_url.value.as_deref(), Some("https://nexus.team"));
        assert_eq!(s.nexus_url.origin, Origin::File(user.clone()));
        let eco = |e: Ecosystem| s.ecosystems.iter().find(|x| x.ecosystem == e).unwrap().clone();
        assert!(!eco(Ecosystem::Dnf).enabled.value);
        assert_eq!(eco(Ecosystem::Pip).path.value, "pypi/simple");
        assert_eq!(eco(Ecosystem::Apt).enabled.origin, Origin::Flag("--no-nexus"));
        assert_eq!(s.network.value, "proxy-only");
        assert_eq!(s.allow_hosts.origin, Origin::Flag("--allow-host"));
        let text = s.render();
        assert!(text.contains(&format!("# {}", user.display())), "{text}");
        assert!(text.contains("# --allow-host"), "{text}");
        assert!(text.contains("dnf = { enabled = false"), "{text}");
    }

    #[test]
    fn errors_name_the_file_and_the_line() {
        let t = tempfile::tempdir().unwrap();
        let bad = write(t.path(), "kiln.toml", "[network]\nmode = \"proxy-only\"\nallow = [\"x\"]\n");
        let err = Settings::load(&[(bad.clone(), false)], &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("kiln.toml") && err.contains("line 3") && err.contains("allow"), "{err}");
        let required = t.path().join("given.toml");
        let err = Settings::load(&[(required, true)], &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("given.toml"), "{err}");
    }

    #[test]
    fn bad_values_name_their_origin() {
        let flags = Overrides { network: Some("proxy".into()), ..Default::default() };
        let err = Settings::load(&[], &flags).unwrap().to_options().unwrap_err().to_string();
        assert!(err.starts_with("--network:") && err.contains("proxy-only"), "{err}");
        let flags = Overrides { nexus: Some("nexus.corp".into()), ..Default::default() };
        let err = Settings::load(&[], &flags).unwrap().to_options().unwrap_err().to_string();
        assert!(err.contains("--nexus") && err.contains("http"), "{err}");
        let flags = Overrides { ca_persist: true, ..Default::default() };
        assert!(Settings::load(&[], &flags).unwrap().to_options().is_err());
    }
}
