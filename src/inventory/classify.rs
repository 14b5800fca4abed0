//! Which tar entries the inventory reads, decided from the entry's path, mode and size alone — called for
//! every entry of every layer, so it only looks at names and never allocates.

/// What an entry is worth reading as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// `etc/os-release` or `usr/lib/os-release`.
    OsRelease,
    /// `etc/redhat-release`.
    RedhatRelease,
    /// `etc/yum.repos.d/ubi.repo`: the image is a UBI.
    UbiRepo,
    /// An RPM database in SQLite form (`rpmdb.sqlite`).
    RpmSqlite,
    /// The SQLite write-ahead log beside it.
    RpmSqliteWal,
    /// An RPM database in Berkeley DB hash form (`rpm/Packages`).
    RpmBdb,
    /// dpkg's `status`, or one file of distroless `status.d/`.
    Dpkg,
    /// apk's `installed`.
    Apk,
    /// A Python interpreter named `python3.X` (or `platform-python3.X`) in a `bin`/`libexec` directory.
    PythonBin(String),
    /// A Python standard library: `lib*/python3.X/os.py`.
    PythonStdlib(String),
    /// Python distribution metadata (`*.dist-info/METADATA`, `*.egg-info/PKG-INFO`, `*.egg-info` file).
    PythonDist,
    /// A file named `release` (a JDK's, when it holds `JAVA_VERSION`).
    JavaRelease,
    /// A file named `VERSION` (a Go toolchain's, when it starts with `go1.`).
    GoVersion,
    /// An executable large enough to be a Go program (checked for ELF and Go build info when read).
    Executable,
    /// A Java archive (`.jar`, `.war`, `.ear`).
    Jar,
    /// `node_modules/<name>/package.json` or `node_modules/@scope/<name>/package.json`.
    NpmPackage,
}

/// Go programs are megabytes; smaller executables are not worth buffering.
const MIN_GO_BINARY: u64 = 256 * 1024;

/// Decides what a regular file at `path` (clean, relative) with `mode` and `size` is worth reading as.
pub fn classify(path: &str, mode: u32, size: u64) -> Option<Want> {
    let (parent, base) = path.rsplit_once('/').unwrap_or(("", path));
    let parent_base = parent.rsplit_once('/').map_or(parent, |(_, b)| b);
    match base {
        "os-release" if parent == "etc" || parent == "usr/lib" => return Some(Want::OsRelease),
        "redhat-release" if parent == "etc" => return Some(Want::RedhatRelease),
        "ubi.repo" if parent == "etc/yum.repos.d" => return Some(Want::UbiRepo),
        "rpmdb.sqlite" => return Some(Want::RpmSqlite),
        "rpmdb.sqlite-wal" => return Some(Want::RpmSqliteWal),
        "Packages" if parent_base == "rpm" => return Some(Want::RpmBdb),
        "status" if parent == "var/lib/dpkg" => return Some(Want::Dpkg),
        "installed" if parent == "lib/apk/db" => return Some(Want::Apk),
        "METADATA" if parent_base.ends_with(".dist-info") => return Some(Want::PythonDist),
        "PKG-INFO" if parent_base.ends_with(".egg-info") => return Some(Want::PythonDist),
        "release" if size < 64 * 1024 => return Some(Want::JavaRelease),
        "VERSION" if size < 4096 => return Some(Want::GoVersion),
        "package.json" if is_npm_package_dir(parent) => return Some(Want::NpmPackage),
        "os.py" => {
            if let Some(version) = python_version(parent_base) {
                let grand = parent.rsplit_once('/').map_or("", |(g, _)| g);
                let grand_base = grand.rsplit_once('/').map_or(grand, |(_, b)| b);
                if grand_base == "lib" || grand_base == "lib64" {
                    return Some(Want::PythonStdlib(version));
                }
            }
            return None;
        }
        _ => {}
    }
    if parent == "var/lib/dpkg/status.d" {
        return Some(Want::Dpkg);
    }
    if base.ends_with(".egg-info") && parent_base.ends_with("-packages") {
        return Some(Want::PythonDist);
    }
    if base.ends_with(".jar") || base.ends_with(".war") || base.ends_with(".ear") {
        return Some(Want::Jar);
    }
    let executable = mode & 0o111 != 0;
    if executable && (parent_base == "bin" || parent_base == "libexec" || parent_base == "sbin") {
        let name = base.strip_prefix("platform-").unwrap_or(base);
        if let Some(version) = name.strip_prefix("python").and_then(python_version_suffix) {
            return Some(Want::PythonBin(version));
        }
    }
    if executable && size >= MIN_GO_BINARY && !base.contains(".so") {
        return Some(Want::Executable);
    }
    None
}

/// `python3.9` → `3.9` (the directory form).
fn python_version(name: &str) -> Option<String> {
    name.strip_prefix("python").and_then(python_version_suffix)
}

/// `3.9` / `2.7` → the version; anything else (`3`, `3.9-config`, `3.9m`) → None.
fn python_version_suffix(rest: &str) -> Option<String> {
    let (major, minor) = rest.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(major) && digits(minor)).then(|| rest.to_string())
}

fn is_npm_package_dir(dir: &str) -> bool {
    let Some((up, _name)) = dir.rsplit_once('/') else { return false };
    if up == "node_modules" || up.ends_with("/node_modules") {
        return true;
    }
    // A scoped package: node_modules/@scope/name.
    let (upper, scope) = up.rsplit_once('/').unwrap_or(("", up));
    scope.starts_with('@') && (upper == "node_modules" || upper.ends_with("/node_modules"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_matter_are_recognised() {
        assert_eq!(classify("etc/os-release", 0o644, 100), Some(Want::OsRelease));
        assert_eq!(classify("var/lib/rpm/rpmdb.sqlite", 0o644, 1 << 20), Some(Want::RpmSqlite));
        assert_eq!(classify("var/lib/rpm/Packages", 0o644, 1 << 20), Some(Want::RpmBdb));
        assert_eq!(classify("usr/bin/python3.9", 0o755, 10_000), Some(Want::PythonBin("3.9".into())));
        assert_eq!(classify("usr/libexec/platform-python3.6", 0o755, 10_000), Some(Want::PythonBin("3.6".into())));
        assert_eq!(classify("usr/bin/python3.9-config", 0o755, 10_000), None);
        assert_eq!(classify("usr/lib64/python3.11/os.py", 0o644, 10_000), Some(Want::PythonStdlib("3.11".into())));
        assert_eq!(
            classify("usr/lib/python3.9/site-packages/pip-21.dist-info/METADATA", 0o644, 10),
            Some(Want::PythonDist)
        );
        assert_eq!(classify("app/node_modules/@types/node/package.json", 0o644, 10), Some(Want::NpmPackage));
        assert_eq!(classify("app/node_modules/left-pad/package.json", 0o644, 10), Some(Want::NpmPackage));
        assert_eq!(classify("app/node_modules/left-pad/test/package.json", 0o644, 10), None);
        assert_eq!(classify("app/package.json", 0o644, 10), None);
        assert_eq!(classify("usr/local/bin/app", 0o755, 5 << 20), Some(Want::Executable));
        assert_eq!(classify("usr/local/bin/app", 0o644, 5 << 20), None);
        assert_eq!(classify("opt/app/lib/guava-31.jar", 0o644, 5 << 20), Some(Want::Jar));
        assert_eq!(classify("var/lib/dpkg/status.d/base", 0o644, 10), Some(Want::Dpkg));
    }
}
