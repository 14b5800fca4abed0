//! Reading one layer: a single pass over its (decompressed) tar stream that records what the merge needs —
//! whiteouts, opaque directories, symlinks, directories — and parses the files [`classify`] picks into
//! [`Fact`]s. The result depends on the layer's bytes alone, so it is cached per layer digest.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use serde::{Deserialize, Serialize};

use super::classify::{Want, classify};
use super::{apk, dpkg, golang, jar, jdk, npm, os, python, rpm};
use crate::confine::components as clean_components;
use crate::layer::decompress;

/// The version of the facts format; cache files of another version are read again from the layer.
pub const FACTS_VERSION: u32 = 1;

/// Largest file buffered whole (a Go binary or a jar); bigger ones are noted and skipped.
const MAX_BUFFERED: u64 = 512 << 20;

/// One package of an OS package database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsPackage {
    /// Name.
    pub name: String,
    /// Version (upstream part).
    pub version: String,
    /// RPM release or none (dpkg and apk keep it inside `version`).
    pub release: Option<String>,
    /// RPM epoch, when set.
    pub epoch: Option<u32>,
    /// Architecture.
    pub arch: Option<String>,
    /// License text.
    pub license: Option<String>,
    /// Source package.
    pub source: Option<String>,
}

/// A Maven artifact found in a jar (possibly nested).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MavenArtifact {
    /// `groupId`.
    pub group: String,
    /// `artifactId`.
    pub artifact: String,
    /// `version`.
    pub version: String,
    /// The path inside the image, with `!/` separating nested archives.
    pub location: String,
}

/// What a file of interest says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fact {
    /// `os-release` fields.
    OsRelease {
        /// KEY → unquoted value.
        fields: BTreeMap<String, String>,
    },
    /// `/etc/redhat-release`'s first line.
    RedhatRelease {
        /// The line.
        text: String,
    },
    /// `/etc/yum.repos.d/ubi.repo` exists.
    UbiRepo,
    /// An RPM database's packages.
    Rpm {
        /// The packages.
        packages: Vec<OsPackage>,
    },
    /// dpkg's installed packages.
    Dpkg {
        /// The packages.
        packages: Vec<OsPackage>,
    },
    /// apk's installed packages.
    Apk {
        /// The packages.
        packages: Vec<OsPackage>,
    },
    /// A Python interpreter of this `major.minor`.
    PythonBin {
        /// `3.9`.
        version: String,
    },
    /// A Python standard library of this `major.minor`.
    PythonStdlib {
        /// `3.9`.
        version: String,
    },
    /// A Python distribution.
    PythonDist {
        /// `Name`.
        name: String,
        /// `Version`.
        version: String,
        /// `License`, when given.
        license: Option<String>,
    },
    /// A JDK's `release` file.
    JavaRelease {
        /// `JAVA_VERSION` (`11.0.20`, `1.8.0_392`).
        version: String,
        /// `IMPLEMENTOR`.
        implementor: Option<String>,
    },
    /// A Go toolchain's `VERSION` file.
    GoToolchain {
        /// `1.21.5` (without the `go` prefix).
        version: String,
    },
    /// A Go program's build information.
    GoBinary {
        /// What the linker embedded.
        info: golang::BuildInfo,
    },
    /// The Maven artifacts a jar holds.
    Maven {
        /// The artifacts.
        artifacts: Vec<MavenArtifact>,
    },
    /// An npm package.
    Npm {
        /// `name` (with its `@scope/`).
        name: String,
        /// `version`.
        version: String,
        /// `license`.
        license: Option<String>,
    },
    /// A file that should have held facts but could not be parsed.
    Unreadable {
        /// Why.
        reason: String,
    },
}

/// One thing a layer does to the image's tree, in tar order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Event {
    /// `.wh.<name>`: removes `path` of lower layers.
    Whiteout {
        /// The removed path.
        path: String,
    },
    /// `.wh..wh..opq`: hides lower layers' content of the directory.
    Opaque {
        /// The directory.
        path: String,
    },
    /// A symlink.
    Symlink {
        /// Where it is.
        path: String,
        /// Its target as written.
        target: String,
    },
    /// A directory (it replaces a lower layer's symlink of the same name).
    Dir {
        /// Where it is.
        path: String,
    },
    /// A file that holds facts.
    Fact {
        /// Where it is.
        path: String,
        /// What it says.
        fact: Fact,
    },
}

/// Everything the inventory needs from one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerFacts {
    /// [`FACTS_VERSION`].
    pub version: u32,
    /// The layer's events, in tar order.
    pub events: Vec<Event>,
}

/// Reads a (possibly compressed) layer tar and returns its facts.
pub fn scan_layer<R: Read>(reader: R) -> std::io::Result<LayerFacts> {
    let stream = decompress(reader)?;
    let mut archive = tar::Archive::new(stream);
    let mut events = Vec::new();
    let mut rpm_sqlite: HashMap<String, (Vec<u8>, Option<Vec<u8>>)> = HashMap::new();
    let mut file_facts: HashMap<String, Fact> = HashMap::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let parts = clean_components(&raw);
        let Some(base) = parts.last() else { continue };
        let path = parts.join("/");
        if let Some(name) = base.strip_prefix(".wh.") {
            let dir = parts[..parts.len() - 1].join("/");
            if name == ".wh..opq" {
                events.push(Event::Opaque { path: dir });
            } else if !name.is_empty() && name != "." && name != ".." {
                let removed = if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") };
                events.push(Event::Whiteout { path: removed });
            }
            continue;
        }
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0);
        let size = header.size().unwrap_or(0);
        match kind {
            tar::EntryType::Directory => events.push(Event::Dir { path }),
            tar::EntryType::Symlink => {
                let target = entry.link_name()?.map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
                events.push(Event::Symlink { path, target });
            }
            tar::EntryType::Link => {
                // A hard link shares its target's content: same facts, or facts from its own name.
                let target = entry.link_name()?.map(|t| clean_components(&t.to_string_lossy()).join("/"));
                let fact =
                    target.and_then(|t| file_facts.get(&t).cloned()).or_else(|| match classify(&path, mode, 0) {
                        Some(Want::PythonBin(version)) => Some(Fact::PythonBin { version }),
                        _ => None,
                    });
                if let Some(fact) = fact {
                    events.push(Event::Fact { path, fact });
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let Some(want) = classify(&path, mode, size) else { continue };
                let fact = match want {
                    Want::RpmSqlite | Want::RpmSqliteWal => {
                        let bytes = read_all(&mut entry, size)?;
                        let key = path.trim_end_matches("-wal").to_string();
                        let slot = rpm_sqlite.entry(key).or_insert_with(|| (Vec::new(), None));
                        if want == Want::RpmSqlite {
                            slot.0 = bytes
                        } else {
                            slot.1 = Some(bytes)
                        }
                        continue;
                    }
                    other => read_fact(&mut entry, &path, other, size)?,
                };
                if let Some(fact) = fact {
                    file_facts.insert(path.clone(), fact.clone());
                    events.push(Event::Fact { path, fact });
                }
            }
            _ => {}
        }
    }
    let mut dbs: Vec<_> = rpm_sqlite.into_iter().filter(|(_, (db, _))| !db.is_empty()).collect();
    dbs.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, (db, wal)) in dbs {
        let fact = match rpm::sqlite::packages(&db, wal.as_deref()) {
            Ok(packages) => Fact::Rpm { packages },
            Err(reason) => Fact::Unreadable { reason: format!("RPM database (SQLite): {reason}") },
        };
        events.push(Event::Fact { path, fact });
    }
    Ok(LayerFacts { version: FACTS_VERSION, events })
}

fn read_all(entry: &mut impl Read, size: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(size.min(MAX_BUFFERED) as usize);
    entry.take(MAX_BUFFERED).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// Reads and parses one classified file; `None` when it turned out to hold nothing of interest.
fn read_fact(entry: &mut impl Read, path: &str, want: Want, size: u64) -> std::io::Result<Option<Fact>> {
    if want == Want::Executable {
        let mut magic = [0u8; 4];
        if size < 4 || entry.read_exact(&mut magic).is_err() || &magic != b"\x7fELF" {
            return Ok(None);
        }
        if size > MAX_BUFFERED {
            return Ok(Some(Fact::Unreadable { reason: format!("executable of {size} bytes is too large to read") }));
        }
        let mut bytes = magic.to_vec();
        bytes.reserve(size as usize);
        entry.read_to_end(&mut bytes)?;
        return Ok(golang::parse_buildinfo(&bytes).map(|info| Fact::GoBinary { info }));
    }
    if matches!(want, Want::Jar) && size > MAX_BUFFERED {
        return Ok(Some(Fact::Unreadable { reason: format!("archive of {size} bytes is too large to read") }));
    }
    let bytes = match want {
        Want::UbiRepo | Want::PythonBin(_) | Want::PythonStdlib(_) => Vec::new(),
        _ => read_all(entry, size)?,
    };
    Ok(match want {
        Want::OsRelease => Some(Fact::OsRelease { fields: os::parse_os_release(&text(&bytes)) }),
        Want::RedhatRelease => {
            Some(Fact::RedhatRelease { text: text(&bytes).lines().next().unwrap_or_default().trim().to_string() })
        }
        Want::UbiRepo => Some(Fact::UbiRepo),
        Want::RpmBdb => Some(match rpm::bdb::packages(&bytes) {
            Ok(packages) => Fact::Rpm { packages },
            Err(reason) => Fact::Unreadable { reason: format!("RPM database (Berkeley DB): {reason}") },
        }),
        Want::Dpkg => Some(Fact::Dpkg { packages: dpkg::parse_status(&text(&bytes)) }),
        Want::Apk => Some(Fact::Apk { packages: apk::parse_installed(&text(&bytes)) }),
        Want::PythonBin(version) => Some(Fact::PythonBin { version }),
        Want::PythonStdlib(version) => Some(Fact::PythonStdlib { version }),
        Want::PythonDist => python::parse_metadata(&text(&bytes)),
        Want::JavaRelease => jdk::parse_release(&text(&bytes)),
        Want::GoVersion => golang::parse_version_file(&text(&bytes)).map(|version| Fact::GoToolchain { version }),
        Want::Jar => Some(match jar::artifacts(&bytes, path) {
            Ok(artifacts) if artifacts.is_empty() => return Ok(None),
            Ok(artifacts) => Fact::Maven { artifacts },
            Err(reason) => Fact::Unreadable { reason: format!("Java archive: {reason}") },
        }),
        Want::NpmPackage => npm::parse_package_json(&bytes),
        Want::Executable | Want::RpmSqlite | Want::RpmSqliteWal => None,
    })
}
