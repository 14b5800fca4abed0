//! From the facts of every layer to one [`Inventory`]: apply the layers bottom to top in a [`View`], then
//! read the OS and its package database from their canonical paths (resolved inside the image) and every
//! runtime and language package from wherever it is.

use std::collections::{BTreeMap, BTreeSet};

use super::scan::{Fact, LayerFacts, OsPackage};
use super::view::View;
use super::{Ecosystem, GoBinary, Inventory, OsInfo, Package, Runtime, RuntimeKind, os, purl};

/// What the image's config contributes: its environment (for `JAVA_HOME`) and its labels (UBI's).
#[derive(Debug, Clone, Default)]
pub struct ImageEnv {
    /// `KEY=VALUE` entries of the config's `Env`.
    pub env: Vec<String>,
    /// The config's labels.
    pub labels: BTreeMap<String, String>,
}

/// Where RPM databases live, SQLite first (a leftover `Packages` beside it is stale).
const RPM_DBS: [&str; 4] = [
    "var/lib/rpm/rpmdb.sqlite",
    "usr/lib/sysimage/rpm/rpmdb.sqlite",
    "var/lib/rpm/Packages",
    "usr/lib/sysimage/rpm/Packages",
];

/// Merges layer facts (bottom layer first) into the image's inventory.
pub fn merge(layers: &[LayerFacts], env: &ImageEnv) -> Inventory {
    let mut view = View::default();
    for (i, layer) in layers.iter().enumerate() {
        view.apply(i, layer);
    }
    let mut inv = Inventory { os: os_of(&view, env), ..Default::default() };
    let os = inv.os.clone();
    os_packages(&view, os.as_ref(), &mut inv);
    let java_home = env
        .env
        .iter()
        .find_map(|e| e.strip_prefix("JAVA_HOME="))
        .map(|home| view.resolve(&format!("{}/release", home.trim_matches('/')), true));
    let mut pythons: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for (path, fact, _) in view.facts() {
        let shown = format!("/{path}");
        match fact {
            Fact::PythonBin { version } => pythons.entry(version.clone()).or_default().0.push(shown),
            Fact::PythonStdlib { version } => {
                let dir = shown.trim_end_matches("/os.py").to_string();
                pythons.entry(version.clone()).or_default().1.push(dir);
            }
            Fact::PythonDist { name, version, license } => inv.packages.push(Package {
                ecosystem: Ecosystem::Python,
                namespace: None,
                name: name.clone(),
                version: version.clone(),
                arch: None,
                license: license.clone(),
                source: None,
                path: shown,
                purl: purl::pypi(name, version),
            }),
            Fact::JavaRelease { version, implementor } => inv.runtimes.push(Runtime {
                kind: RuntimeKind::Jdk,
                version: version.clone(),
                path: shown.trim_end_matches("/release").to_string(),
                also_at: Vec::new(),
                vendor: implementor.clone(),
                platform: false,
                java_home: java_home.as_deref() == Some(path.as_str()),
            }),
            Fact::GoToolchain { version } => inv.runtimes.push(Runtime {
                kind: RuntimeKind::Go,
                version: version.clone(),
                path: shown.trim_end_matches("/VERSION").to_string(),
                also_at: Vec::new(),
                vendor: None,
                platform: false,
                java_home: false,
            }),
            Fact::GoBinary { info } => {
                go_packages(&shown, info, &mut inv.packages);
                inv.go_binaries.push(GoBinary { path: shown, info: info.clone() });
            }
            Fact::Maven { artifacts } => inv.packages.extend(artifacts.iter().map(|a| Package {
                ecosystem: Ecosystem::Maven,
                namespace: Some(a.group.clone()),
                name: a.artifact.clone(),
                version: a.version.clone(),
                arch: None,
                license: None,
                source: None,
                path: format!("/{}", a.location),
                purl: purl::maven(&a.group, &a.artifact, &a.version),
            })),
            Fact::Npm { name, version, license } => inv.packages.push(Package {
                ecosystem: Ecosystem::Npm,
                namespace: name.split_once('/').map(|(s, _)| s.to_string()).filter(|s| s.starts_with('@')),
                name: name
                    .split_once('/')
                    .filter(|(s, _)| s.starts_with('@'))
                    .map_or(name.as_str(), |(_, n)| n)
                    .to_string(),
                version: version.clone(),
                arch: None,
                license: license.clone(),
                source: None,
                path: shown,
                purl: purl::npm(name, version),
            }),
            Fact::Unreadable { reason } => inv.notes.push(format!("{shown}: {reason}")),
            Fact::OsRelease { .. } | Fact::RedhatRelease { .. } | Fact::UbiRepo => {}
            Fact::Rpm { .. } | Fact::Dpkg { .. } | Fact::Apk { .. } => {}
        }
    }
    for (version, (bins, libs)) in pythons {
        let platform =
            !bins.is_empty() && bins.iter().all(|b| b.rsplit('/').next().unwrap_or("").starts_with("platform-"));
        let mut paths = bins.into_iter().chain(libs);
        let Some(path) = paths.next() else { continue };
        inv.runtimes.push(Runtime {
            kind: RuntimeKind::Python,
            version,
            path,
            also_at: paths.collect(),
            vendor: None,
            platform,
            java_home: false,
        });
    }
    inv.runtimes.sort_by(|a, b| a.kind.cmp(&b.kind).then(a.path.cmp(&b.path)));
    inv.packages.sort_by(|a, b| {
        (a.ecosystem, &a.namespace, &a.name, &a.version, &a.path).cmp(&(
            b.ecosystem,
            &b.namespace,
            &b.name,
            &b.version,
            &b.path,
        ))
    });
    inv.packages.dedup();
    inv
}

fn os_of(view: &View, env: &ImageEnv) -> Option<OsInfo> {
    let fields = ["etc/os-release", "usr/lib/os-release"].iter().find_map(|p| match view.lookup(p) {
        Some((_, Fact::OsRelease { fields }, _)) => Some(fields.clone()),
        _ => None,
    });
    let redhat = match view.lookup("etc/redhat-release") {
        Some((_, Fact::RedhatRelease { text }, _)) => Some(text.clone()),
        _ => None,
    };
    let ubi_repo = matches!(view.lookup("etc/yum.repos.d/ubi.repo"), Some((_, Fact::UbiRepo, _)));
    os::os_info(fields.as_ref(), redhat, ubi_repo, &env.labels)
}

fn os_packages(view: &View, os: Option<&OsInfo>, inv: &mut Inventory) {
    let mut seen = BTreeSet::new();
    let rpm_db = RPM_DBS.iter().find_map(|p| view.lookup(p).filter(|(_, f, _)| matches!(f, Fact::Rpm { .. })));
    if let Some((path, Fact::Rpm { packages }, _)) = rpm_db {
        seen.insert(path.clone());
        push_os(inv, Ecosystem::Rpm, &path, packages, os);
    }
    if let Some((path, Fact::Dpkg { packages }, _)) = view.lookup("var/lib/dpkg/status") {
        push_os(inv, Ecosystem::Deb, &path, packages, os);
    }
    let status_d = format!("{}/", view.resolve("var/lib/dpkg/status.d", true));
    let extra: Vec<(String, Vec<OsPackage>)> = view
        .facts()
        .filter(|(p, _, _)| p.starts_with(&status_d))
        .filter_map(|(p, f, _)| match f {
            Fact::Dpkg { packages } => Some((p.clone(), packages.clone())),
            _ => None,
        })
        .collect();
    for (path, packages) in extra {
        push_os(inv, Ecosystem::Deb, &path, &packages, os);
    }
    if let Some((path, Fact::Apk { packages }, _)) = view.lookup("lib/apk/db/installed") {
        push_os(inv, Ecosystem::Apk, &path, packages, os);
    }
    // Databases elsewhere (a backup copy, a chroot inside the image) are not the image's own packages.
    let _ = seen;
}

fn push_os(inv: &mut Inventory, ecosystem: Ecosystem, path: &str, packages: &[OsPackage], os: Option<&OsInfo>) {
    for p in packages {
        let purl = match ecosystem {
            Ecosystem::Rpm => purl::rpm(p, os),
            Ecosystem::Deb => purl::deb(p, os),
            _ => purl::apk(p, os),
        };
        let version = match (&p.epoch, &p.release) {
            (Some(e), Some(r)) => format!("{e}:{}-{r}", p.version),
            (None, Some(r)) => format!("{}-{r}", p.version),
            (Some(e), None) => format!("{e}:{}", p.version),
            (None, None) => p.version.clone(),
        };
        inv.packages.push(Package {
            ecosystem,
            namespace: None,
            name: p.name.clone(),
            version,
            arch: p.arch.clone(),
            license: p.license.clone(),
            source: p.source.clone(),
            path: format!("/{path}"),
            purl,
        });
    }
}

fn go_packages(path: &str, info: &super::BuildInfo, out: &mut Vec<Package>) {
    let module = |name: &str, version: &str| Package {
        ecosystem: Ecosystem::Go,
        namespace: None,
        name: name.to_string(),
        version: version.to_string(),
        arch: None,
        license: None,
        source: None,
        path: path.to_string(),
        purl: purl::golang(name, version),
    };
    out.push(Package {
        purl: purl::golang("stdlib", info.version_number()),
        ..module("stdlib", info.version_number())
    });
    if let Some(main) = &info.main {
        out.push(module(&main.path, &main.version));
    }
    for dep in &info.deps {
        out.push(module(&dep.path, &dep.version));
    }
}
