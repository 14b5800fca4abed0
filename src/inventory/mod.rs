//! Inventory: what an image is made of, read from its layers' files — nothing in the image is executed.
//!
//! Input: an image's layers (compressed tar streams, bottom to top) and its config's environment.
//! Output: an [`Inventory`] — the OS, OS packages (RPM, dpkg, apk), language runtimes (Python, JDKs, Go
//! toolchains), Go binaries with the Go version and modules they were built with, and language packages
//! (Python dists, Maven jars, npm packages), each with the path where it was found and a package URL.
//!
//! ```text
//!  layer tar ─ scan (one pass, per layer, in parallel) ─ LayerFacts ─ cache (per layer digest)
//!                                                            │
//!  LayerFacts of every layer ─ merge (whiteouts, opaque dirs, symlinks resolved inside the image) ─ Inventory
//! ```
//!
//! Paths are never resolved on the host: a layer is read as a tar stream, and symlinks are followed in a
//! virtual view of the image (`view.rs`), so a hostile image's `var/lib/rpm -> /var/lib/rpm` names the
//! image's own path, never the builder's. Must not know about registries, Dockerfiles or policies.

mod apk;
mod cache;
mod classify;
mod dpkg;
mod error;
mod golang;
mod jar;
mod jdk;
mod merge;
mod npm;
mod os;
pub mod purl;
mod python;
pub mod rpm;
mod scan;
mod source;
mod view;

use serde::{Deserialize, Serialize};

pub use error::InventoryError;
pub use golang::{BuildInfo, Module, parse_buildinfo};
pub use jdk::feature_version;
pub use merge::ImageEnv;
pub use scan::{Event, Fact, LayerFacts, MavenArtifact, OsPackage, scan_layer};
pub use source::{LayerSource, StoreLayers, inventory, inventory_of_image, sweep_cache};

/// The ecosystem a package belongs to (it decides the package URL type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    /// An RPM from the RPM database.
    Rpm,
    /// A Debian package from dpkg's status.
    Deb,
    /// An Alpine package from apk's database.
    Apk,
    /// A Python distribution (`*.dist-info`, `*.egg-info`).
    Python,
    /// A Java artifact (`META-INF/maven/**/pom.properties` inside a jar).
    Maven,
    /// An npm package (`node_modules/**/package.json`).
    Npm,
    /// A Go module compiled into a binary.
    Go,
}

impl Ecosystem {
    /// The short name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Ecosystem::Rpm => "rpm",
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Python => "python",
            Ecosystem::Maven => "maven",
            Ecosystem::Npm => "npm",
            Ecosystem::Go => "go",
        }
    }

    /// Whether the package belongs to the operating system (as opposed to an application's dependencies).
    pub fn is_os(self) -> bool {
        matches!(self, Ecosystem::Rpm | Ecosystem::Deb | Ecosystem::Apk)
    }
}

/// The operating system, from `/etc/os-release` (and `/etc/redhat-release` on Red Hat systems).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsInfo {
    /// `ID` (`rhel`, `debian`, `alpine`).
    pub id: String,
    /// `VERSION_ID` (`9.4`).
    pub version_id: String,
    /// `PRETTY_NAME`, else `NAME`.
    pub pretty_name: String,
    /// `ID_LIKE`, split.
    pub id_like: Vec<String>,
    /// The first line of `/etc/redhat-release`, when present.
    pub redhat_release: Option<String>,
    /// `UBI 8`, `UBI 9` when the image is a Red Hat Universal Base Image (its `ubi.repo` or its labels say so).
    pub ubi: Option<String>,
}

impl OsInfo {
    /// The major version (`9` of `9.4`).
    pub fn major(&self) -> &str {
        self.version_id.split('.').next().unwrap_or_default()
    }

    /// A one-line description: `UBI 9 (Red Hat Enterprise Linux 9.4 (Plow))`.
    pub fn describe(&self) -> String {
        match &self.ubi {
            Some(ubi) => format!("{ubi} ({})", self.pretty_name),
            None => self.pretty_name.clone(),
        }
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Where it comes from.
    pub ecosystem: Ecosystem,
    /// Maven group id or npm scope (`@scope`), when there is one.
    pub namespace: Option<String>,
    /// Package name.
    pub name: String,
    /// Version as the package manager writes it (RPM: `[epoch:]version-release`).
    pub version: String,
    /// Architecture, when the package manager records one.
    pub arch: Option<String>,
    /// Declared license text, as written by the package.
    pub license: Option<String>,
    /// Source package (RPM `SOURCERPM`, dpkg `Source`, apk origin).
    pub source: Option<String>,
    /// The path in the image where the package was found (database, metadata file, jar, binary).
    pub path: String,
    /// Its package URL (`pkg:rpm/rhel/bash@5.1.8-6.el9?arch=x86_64&distro=rhel-9.4`).
    pub purl: String,
}

/// What kind of language runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// A Python interpreter (or its standard library).
    Python,
    /// A JDK or JRE (its `release` file).
    Jdk,
    /// A Go toolchain (its `VERSION` file).
    Go,
}

impl RuntimeKind {
    /// The short name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Python => "python",
            RuntimeKind::Jdk => "jdk",
            RuntimeKind::Go => "go",
        }
    }
}

/// A language runtime found in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// Which language.
    pub kind: RuntimeKind,
    /// Its version (`3.9`, `11.0.20`, `1.21.5`).
    pub version: String,
    /// Where it was found (the interpreter, `release` or `VERSION` file); more paths in `also_at`.
    pub path: String,
    /// Other paths that are the same runtime (its standard library, its other names).
    pub also_at: Vec<String>,
    /// Vendor or implementor, when recorded.
    pub vendor: Option<String>,
    /// RHEL 8's `platform-python`: the interpreter dnf itself runs on, not one applications should use.
    pub platform: bool,
    /// The runtime `$JAVA_HOME` of the image points to.
    pub java_home: bool,
}

/// A Go program found in the image, with the build information the Go linker embedded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoBinary {
    /// The binary's path.
    pub path: String,
    /// Build information.
    pub info: BuildInfo,
}

/// Everything the inventory found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The operating system, when the image says.
    pub os: Option<OsInfo>,
    /// Packages, OS first, then by ecosystem, name and version.
    pub packages: Vec<Package>,
    /// Language runtimes.
    pub runtimes: Vec<Runtime>,
    /// Go binaries.
    pub go_binaries: Vec<GoBinary>,
    /// Files that looked relevant but could not be read (corrupt databases and the like), with the reason.
    pub notes: Vec<String>,
}
