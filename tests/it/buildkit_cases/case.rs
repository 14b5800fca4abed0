//! The case format: `testdata/buildkit-cases/<case>/case.toml`, one BuildKit test's expectations as data.
//!
//! A case directory holds the Dockerfile(s), a `context/` directory with the context's files, and
//! `case.toml`: where the case comes from, what to add to the context that git cannot hold (modes, empty
//! directories, symlinks, sockets, tar archives), loopback HTTP routes, and one or more builds — each with
//! its flags and what the result must be (files, modes, owners, config fields, history, or an error).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One case, as read from `case.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// The BuildKit test it is written from: `file.go testName` (and the subtest, if any).
    pub source: String,
    /// Where kiln deliberately differs from BuildKit in this case (also listed in docs/ARCHITECTURE.md).
    #[serde(default)]
    pub deviation: Option<String>,
    /// Isolation modes to run in; by default all three when a Dockerfile has a RUN, else root only.
    #[serde(default)]
    pub modes: Option<Vec<Mode>>,
    /// Changes to the context after `context/` is copied, in order.
    #[serde(default)]
    pub setup: Vec<Setup>,
    /// Routes of a loopback HTTP server; `{{HTTP}}` in a Dockerfile or build arg is its base URL.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    /// The builds, run in order against one store.
    #[serde(rename = "build")]
    pub builds: Vec<Build>,
}

/// How RUN steps are isolated in a run of the case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// kiln as root: namespaces without a user namespace.
    Root,
    /// kiln as an unprivileged user with a sub-id range.
    Rootless,
    /// kiln as root without CAP_SYS_ADMIN: chroot isolation.
    Chroot,
}

impl Mode {
    /// The name used in messages and `--isolation`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Root => "root",
            Mode::Rootless => "rootless",
            Mode::Chroot => "chroot",
        }
    }
}

/// One change to the context (or, before a later build, to the workspace).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    /// Path relative to the workspace.
    pub path: String,
    /// Write a file with this content.
    #[serde(default)]
    pub content: Option<String>,
    /// Create a directory.
    #[serde(default)]
    pub dir: bool,
    /// Create a symlink pointing here.
    #[serde(default)]
    pub symlink: Option<String>,
    /// Create a Unix socket.
    #[serde(default)]
    pub socket: bool,
    /// Write a tar archive with these entries.
    #[serde(default)]
    pub tar: Option<Vec<TarEntry>>,
    /// Gzip the tar archive.
    #[serde(default)]
    pub gzip: bool,
    /// Remove the path (file or tree).
    #[serde(default)]
    pub remove: bool,
    /// Then set this mode.
    #[serde(default)]
    pub mode: Option<u32>,
}

/// One entry of a generated tar archive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TarEntry {
    /// Name in the archive (a trailing `/` for directories is kept as written).
    pub name: String,
    /// `file` (default), `dir`, `symlink` or `hardlink`.
    #[serde(default)]
    pub kind: Option<String>,
    /// File content.
    #[serde(default)]
    pub content: String,
    /// Mode (default 0644 for files, 0755 for directories, 0777 for links).
    #[serde(default)]
    pub mode: Option<u32>,
    /// Link target for symlinks and hard links.
    #[serde(default)]
    pub link: Option<String>,
    /// Owner.
    #[serde(default)]
    pub uid: u64,
    /// Group.
    #[serde(default)]
    pub gid: u64,
    /// Modification time (seconds).
    #[serde(default)]
    pub mtime: u64,
}

/// A route of the loopback HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRoute {
    /// Request path.
    pub path: String,
    /// Body text.
    #[serde(default)]
    pub body: String,
    /// Or a tar archive as the body.
    #[serde(default)]
    pub tar: Option<Vec<TarEntry>>,
    /// Gzip that archive.
    #[serde(default)]
    pub gzip: bool,
    /// `Last-Modified` header (HTTP date).
    #[serde(default)]
    pub last_modified: Option<String>,
}

/// One `kiln build` and what it must produce.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// The Dockerfile (relative to the case directory; default `Dockerfile`).
    #[serde(default)]
    pub dockerfile: Option<String>,
    /// Tag for the result (default `case`); later builds may use it as a base.
    #[serde(default)]
    pub tag: Option<String>,
    /// `--build-arg`s.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// `--target`.
    #[serde(default)]
    pub target: Option<String>,
    /// `--platform`.
    #[serde(default)]
    pub platform: Option<String>,
    /// `--no-cache`.
    #[serde(default)]
    pub no_cache: bool,
    /// `--no-cache-filter` stages.
    #[serde(default)]
    pub no_cache_filter: Vec<String>,
    /// `--label`s.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Secrets by id (written to files, given as `--secret id=ID,src=FILE`).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Workspace changes before this build.
    #[serde(default)]
    pub write: Vec<Setup>,
    /// The build must fail, its message containing each of these.
    #[serde(default)]
    pub error: Vec<String>,
    /// In these modes (by name) the build must fail instead, with these in its message: where kiln
    /// refuses what a mode cannot do (chroot mode cannot isolate the network).
    #[serde(default)]
    pub error_in: BTreeMap<String, Vec<String>>,
    /// Files of the result.
    #[serde(default, rename = "file")]
    pub files: Vec<FileExpect>,
    /// Config fields by JSON pointer (`/config/User`), exact values.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// Config arrays by JSON pointer that must contain each of these values.
    #[serde(default)]
    pub config_contains: BTreeMap<String, Vec<toml::Value>>,
    /// Config fields by JSON pointer that must be absent (or null).
    #[serde(default)]
    pub config_absent: Vec<String>,
    /// History entries.
    #[serde(default)]
    pub history: Vec<HistoryExpect>,
    /// Number of history entries.
    #[serde(default)]
    pub history_len: Option<usize>,
    /// Number of layers (diff ids).
    #[serde(default)]
    pub layers: Option<usize>,
    /// The image ID must equal that of build N (0-based).
    #[serde(default)]
    pub same_image_as_build: Option<usize>,
}

impl Build {
    /// Whether anything in the image must be looked at.
    pub fn checks_config(&self) -> bool {
        !self.config.is_empty()
            || !self.config_contains.is_empty()
            || !self.config_absent.is_empty()
            || !self.history.is_empty()
            || self.history_len.is_some()
            || self.layers.is_some()
    }
}

/// What one path of the result must be.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileExpect {
    /// Path in the image.
    pub path: String,
    /// Exact content.
    #[serde(default)]
    pub content: Option<String>,
    /// Content contains this.
    #[serde(default)]
    pub contains: Option<String>,
    /// Content does not contain this.
    #[serde(default)]
    pub excludes: Option<String>,
    /// Permission bits (`& 0o7777`).
    #[serde(default)]
    pub mode: Option<u32>,
    /// Owner.
    #[serde(default)]
    pub uid: Option<u32>,
    /// Group.
    #[serde(default)]
    pub gid: Option<u32>,
    /// `file`, `dir`, `symlink`, `socket`, `fifo`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Symlink target.
    #[serde(default)]
    pub link: Option<String>,
    /// The path must not exist.
    #[serde(default)]
    pub absent: bool,
    /// Modification time (seconds since the epoch).
    #[serde(default)]
    pub mtime: Option<i64>,
    /// A directory with nothing in it.
    #[serde(default)]
    pub empty_dir: bool,
    /// The same inode as this other path (a hard link).
    #[serde(default)]
    pub same_file_as: Option<String>,
    /// Same content as this path in the result of build N (0-based).
    #[serde(default)]
    pub equals_build: Option<usize>,
    /// Different content from this path in the result of build N.
    #[serde(default)]
    pub differs_from_build: Option<usize>,
}

/// What one history entry must be.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryExpect {
    /// Index; negative counts from the end (-1 is the last).
    pub index: i64,
    /// Exact `created_by`.
    #[serde(default)]
    pub created_by: Option<String>,
    /// `created_by` contains this.
    #[serde(default)]
    pub created_by_contains: Vec<String>,
    /// `created_by` does not contain this.
    #[serde(default)]
    pub created_by_excludes: Vec<String>,
    /// `empty_layer` (absent means false).
    #[serde(default)]
    pub empty_layer: Option<bool>,
    /// Exact `created`.
    #[serde(default)]
    pub created: Option<String>,
}

/// A case directory and its parsed `case.toml`.
pub struct Loaded {
    /// The directory's name.
    pub name: String,
    /// The directory.
    pub dir: PathBuf,
    /// The case.
    pub case: Case,
}

impl Loaded {
    /// Reads one case directory.
    pub fn read(dir: &Path) -> Result<Loaded, String> {
        let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(dir.join("case.toml")).map_err(|e| format!("{name}: case.toml: {e}"))?;
        let case: Case = toml::from_str(&text).map_err(|e| format!("{name}: case.toml: {e}"))?;
        if case.builds.is_empty() {
            return Err(format!("{name}: no [[build]]"));
        }
        Ok(Loaded { name, dir: dir.to_path_buf(), case })
    }

    /// The Dockerfiles of the case (files in its directory other than `case.toml`).
    pub fn dockerfiles(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> =
            std::fs::read_dir(&self.dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        out.retain(|p| p.is_file() && p.file_name().is_some_and(|n| n != "case.toml"));
        out.sort();
        out
    }

    /// The modes to run: as given, else all three when a Dockerfile has a RUN (ONBUILD RUN included).
    pub fn modes(&self) -> Vec<Mode> {
        if let Some(modes) = &self.case.modes {
            return modes.clone();
        }
        let has_run = self.dockerfiles().iter().any(|f| {
            std::fs::read_to_string(f).unwrap_or_default().lines().any(|line| {
                let words: Vec<String> = line.split_whitespace().take(2).map(str::to_ascii_uppercase).collect();
                words.first().is_some_and(|w| w == "RUN")
                    || (words.first().is_some_and(|w| w == "ONBUILD") && words.get(1).is_some_and(|w| w == "RUN"))
            })
        });
        if has_run { vec![Mode::Root, Mode::Rootless, Mode::Chroot] } else { vec![Mode::Root] }
    }
}
