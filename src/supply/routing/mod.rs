//! Dependencies through Nexus: during RUN steps only, every package manager kiln knows is pointed at one
//! repository manager, with Nexus's conventional repository paths as defaults and each ecosystem
//! overridable or switched off.
//!
//! | ecosystem | how the step sees it |
//! | --- | --- |
//! | pip, uv | `PIP_INDEX_URL`, `UV_DEFAULT_INDEX`, `UV_INDEX_URL` (and `PIP_TRUSTED_HOST` for plain HTTP) |
//! | npm, yarn | `npm_config_registry`, `YARN_REGISTRY`, `YARN_NPM_REGISTRY_SERVER` |
//! | Maven | a generated `settings.xml` with a `mirrorOf *` mirror, bound at `~/.m2/settings.xml` and named by `MAVEN_ARGS=-s` |
//! | Gradle | an init script bound into `~/.gradle/init.d/` (or `$GRADLE_USER_HOME/init.d/`) |
//! | Go | `GOPROXY` |
//! | dnf, yum | the image's `/etc/yum.repos.d/*.repo` rewritten into a private, read-only overlay of that directory |
//! | apt | the image's `sources.list` and `sources.list.d/` rewritten into private, read-only overlays |
//!
//! Input: the settings, the step's view of the image and its home directory. Output: mounts and variables
//! in the step's [`StepSupply`]; nothing is written into the image.

mod files;
mod repos;

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{ImageView, StepRequest, StepSupply};

/// Where the generated Maven settings are bound besides `~/.m2/settings.xml`.
pub const STEP_MAVEN_SETTINGS: &str = "/run/kiln/supply/maven-settings.xml";

/// A package ecosystem kiln routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ecosystem {
    /// pip and uv.
    Pip,
    /// npm and yarn.
    Npm,
    /// Maven.
    Maven,
    /// Gradle.
    Gradle,
    /// Go modules.
    Go,
    /// dnf and yum.
    Dnf,
    /// apt.
    Apt,
}

impl Ecosystem {
    /// Every ecosystem, in the order `kiln config` prints them.
    pub const ALL: [Ecosystem; 7] = [
        Ecosystem::Pip,
        Ecosystem::Npm,
        Ecosystem::Maven,
        Ecosystem::Gradle,
        Ecosystem::Go,
        Ecosystem::Dnf,
        Ecosystem::Apt,
    ];

    /// The name used in flags and `kiln.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Ecosystem::Pip => "pip",
            Ecosystem::Npm => "npm",
            Ecosystem::Maven => "maven",
            Ecosystem::Gradle => "gradle",
            Ecosystem::Go => "go",
            Ecosystem::Dnf => "dnf",
            Ecosystem::Apt => "apt",
        }
    }

    /// The ecosystem a name (or a common alias) means.
    pub fn parse(name: &str) -> Option<Ecosystem> {
        Some(match name.to_ascii_lowercase().as_str() {
            "pip" | "uv" | "pypi" | "python" => Ecosystem::Pip,
            "npm" | "yarn" | "node" => Ecosystem::Npm,
            "maven" | "mvn" => Ecosystem::Maven,
            "gradle" => Ecosystem::Gradle,
            "go" | "golang" => Ecosystem::Go,
            "dnf" | "yum" | "rpm" => Ecosystem::Dnf,
            "apt" | "deb" | "debian" => Ecosystem::Apt,
            _ => return None,
        })
    }

    /// Nexus's conventional repository path for the ecosystem, relative to the Nexus URL. apt and dnf
    /// paths are templates: `{host}` and `{path}` of the original repository URL, `{last}` its last path
    /// segment, `{repoid}` the dnf repository id.
    pub fn default_path(self) -> &'static str {
        match self {
            Ecosystem::Pip => "repository/pypi/simple",
            Ecosystem::Npm => "repository/npm/",
            Ecosystem::Maven | Ecosystem::Gradle => "repository/maven-public/",
            Ecosystem::Go => "repository/go/",
            Ecosystem::Dnf => "repository/{repoid}/",
            Ecosystem::Apt => "repository/{last}/",
        }
    }
}

/// Why routing could not be set up for a step.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// A generated file could not be written.
    #[error("cannot write the step's {what}: {source}")]
    Write {
        /// What was being written.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The Nexus settings of a build: the base URL and, per ecosystem, the repository path (absent = off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nexus {
    /// The base URL (ends with `/`).
    pub url: url::Url,
    /// Routed ecosystems and their repository paths (or full URLs, `{...}` templates for apt and dnf).
    pub paths: BTreeMap<Ecosystem, String>,
}

impl Nexus {
    /// Every ecosystem on, with its conventional path.
    pub fn with_defaults(mut url: url::Url) -> Nexus {
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        let paths = Ecosystem::ALL.iter().map(|e| (*e, e.default_path().to_string())).collect();
        Nexus { url, paths }
    }

    /// The repository URL for `path`: a full URL as given, else relative to the Nexus URL.
    pub fn resolve(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            return path.to_string();
        }
        self.url
            .join(path.trim_start_matches('/'))
            .map(|u| u.to_string())
            .unwrap_or_else(|_| format!("{}{path}", self.url))
    }

    /// `host:port` of every server the routed repositories live on (what proxy-only must let through).
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts = vec![host_port(&self.url)];
        for path in self.paths.values() {
            if let Ok(url) = url::Url::parse(path)
                && !hosts.contains(&host_port(&url))
            {
                hosts.push(host_port(&url));
            }
        }
        hosts
    }
}

/// `host:port` of a URL, the port defaulted by scheme.
pub fn host_port(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    format!("{host}:{}", url.port_or_known_default().unwrap_or(443))
}

/// Routing for the RUN steps of one build.
#[derive(Debug)]
pub struct Routing {
    nexus: Nexus,
    files: PathBuf,
}

impl Routing {
    /// Routing to `nexus`; generated files are kept in `files` by content (written once, not per step).
    pub fn new(nexus: Nexus, files: PathBuf) -> Routing {
        Routing { nexus, files }
    }

    /// What enters RUN cache keys: the URL and every routed ecosystem's path.
    pub fn key_part(&self) -> String {
        let paths: Vec<String> = self.nexus.paths.iter().map(|(e, p)| format!("{}={p}", e.name())).collect();
        format!("nexus={} {}", self.nexus.url, paths.join(","))
    }

    /// Adds the step's routing mounts and variables; `proxy` is the step's egress proxy (`host:port`).
    pub fn for_step(
        &self,
        view: &ImageView,
        request: &StepRequest<'_>,
        proxy: Option<&str>,
        out: &mut StepSupply,
    ) -> Result<(), RoutingError> {
        let url = |e: Ecosystem| self.nexus.paths.get(&e).map(|p| self.nexus.resolve(p));
        if let Some(index) = url(Ecosystem::Pip) {
            out.set("PIP_INDEX_URL", &index);
            out.set("UV_DEFAULT_INDEX", &index);
            out.set("UV_INDEX_URL", &index);
            if let Ok(parsed) = url::Url::parse(&index)
                && parsed.scheme() == "http"
            {
                // pip refuses a plain-HTTP index unless told the host is trusted.
                let host = host_port(&parsed);
                out.set("PIP_TRUSTED_HOST", &host);
                out.set("UV_INSECURE_HOST", &host);
            }
        }
        if let Some(registry) = url(Ecosystem::Npm) {
            for var in ["npm_config_registry", "YARN_REGISTRY", "YARN_NPM_REGISTRY_SERVER"] {
                out.set(var, &registry);
            }
        }
        if let Some(goproxy) = url(Ecosystem::Go) {
            out.set("GOPROXY", &goproxy);
        }
        let home = request.home.trim_end_matches('/');
        if let Some(mirror) = url(Ecosystem::Maven) {
            let path = cached(&self.files, "settings.xml", &files::maven_settings(&mirror, proxy), "Maven settings")?;
            out.bind(&path, STEP_MAVEN_SETTINGS);
            out.bind(&path, &format!("{home}/.m2/settings.xml"));
            out.append("MAVEN_ARGS", &format!("-s {STEP_MAVEN_SETTINGS}"));
        }
        if let Some(mirror) = url(Ecosystem::Gradle) {
            let path = cached(&self.files, "init.gradle", &files::gradle_init(&mirror), "Gradle init script")?;
            let gradle_home = request
                .env
                .iter()
                .find(|(k, _)| k == "GRADLE_USER_HOME")
                .map(|(_, v)| v.trim_end_matches('/').to_string())
                .unwrap_or_else(|| format!("{home}/.gradle"));
            out.bind(&path, &format!("{gradle_home}/init.d/kiln-nexus.gradle"));
        }
        if let Some(template) = self.nexus.paths.get(&Ecosystem::Dnf) {
            repos::dnf(view, &|vars| self.nexus.resolve(&vars.fill(template)), request.scratch, out)?;
        }
        if let Some(template) = self.nexus.paths.get(&Ecosystem::Apt) {
            repos::apt(view, &|vars| self.nexus.resolve(&vars.fill(template)), request.scratch, out)?;
        }
        Ok(())
    }
}

/// `dir/<digest>-<name>` holding `text`, written (atomically) only when missing.
fn cached(dir: &std::path::Path, name: &str, text: &str, what: &'static str) -> Result<PathBuf, RoutingError> {
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(text.as_bytes()));
    let path = dir.join(format!("{}-{name}", &digest[..16]));
    if !path.is_file() {
        crate::supply::trust::write_atomically(&path, text.as_bytes())
            .map_err(|e| RoutingError::Write { what, source: std::io::Error::other(e) })?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nexus() -> Nexus {
        Nexus::with_defaults(url::Url::parse("https://nexus.example.com:8443/base").unwrap())
    }

    #[test]
    fn paths_resolve_under_the_nexus_url_and_full_urls_stand() {
        let n = nexus();
        assert_eq!(n.resolve("repository/pypi/simple"), "https://nexus.example.com:8443/base/repository/pypi/simple");
        assert_eq!(n.resolve("https://other.example.com/npm/"), "https://other.example.com/npm/");
    }

    #[test]
    fn every_host_of_the_routed_repositories_is_named() {
        let mut n = nexus();
        n.paths.insert(Ecosystem::Npm, "https://npm.example.com/registry/".to_string());
        assert_eq!(n.hosts(), ["nexus.example.com:8443", "npm.example.com:443"]);
    }

    #[test]
    fn aliases_name_ecosystems() {
        assert_eq!(Ecosystem::parse("uv"), Some(Ecosystem::Pip));
        assert_eq!(Ecosystem::parse("yum"), Some(Ecosystem::Dnf));
        assert_eq!(Ecosystem::parse("cargo"), None);
        for e in Ecosystem::ALL {
            assert_eq!(Ecosystem::parse(e.name()), Some(e));
        }
    }

    #[test]
    fn a_step_gets_variables_and_generated_files_for_each_routed_ecosystem() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let view = ImageView::new(vec![root]);
        let scratch = t.path().join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let mut n = nexus();
        n.paths.remove(&Ecosystem::Go);
        let request =
            StepRequest { label: "Dockerfile:2", home: "/home/app", env: &[], scratch: &scratch, networked: true };
        let mut out = StepSupply::default();
        Routing::new(n, t.path().join("files")).for_step(&view, &request, None, &mut out).unwrap();
        let var = |k: &str| out.env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(var("PIP_INDEX_URL").unwrap(), "https://nexus.example.com:8443/base/repository/pypi/simple");
        assert_eq!(var("npm_config_registry").unwrap(), "https://nexus.example.com:8443/base/repository/npm/");
        assert_eq!(var("GOPROXY"), None, "a switched-off ecosystem is left alone");
        assert_eq!(var("MAVEN_ARGS").unwrap(), format!("-s {STEP_MAVEN_SETTINGS}"));
        let targets: Vec<&str> = out.mounts.iter().map(|m| m.target()).collect();
        assert!(targets.contains(&"/home/app/.m2/settings.xml"), "{targets:?}");
        assert!(targets.contains(&"/home/app/.gradle/init.d/kiln-nexus.gradle"), "{targets:?}");
    }
}
