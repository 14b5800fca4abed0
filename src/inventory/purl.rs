//! Package URLs (the purl spec) for what the inventory finds, built with the `packageurl` crate so every
//! part is encoded as the spec says. A part the crate refuses leaves the package without a purl rather than
//! with a wrong one.

use packageurl::PackageUrl;

use super::OsInfo;
use super::scan::OsPackage;

/// The distro namespace of OS package purls (`redhat` for RHEL, as Red Hat's own purls name it).
fn os_namespace(os: Option<&OsInfo>, fallback: &str) -> String {
    match os.map(|o| o.id.as_str()) {
        Some("rhel") => "redhat".to_string(),
        Some(id) if !id.is_empty() => id.to_string(),
        _ => fallback.to_string(),
    }
}

fn distro(os: Option<&OsInfo>) -> Option<String> {
    let os = os?;
    (!os.id.is_empty()).then(|| format!("{}-{}", os.id, os.version_id))
}

fn build(
    ty: &'static str,
    namespace: Option<&str>,
    name: &str,
    version: Option<&str>,
    qualifiers: &[(&'static str, String)],
) -> String {
    let Ok(mut purl) = PackageUrl::new(ty, name.to_string()) else { return String::new() };
    if let Some(ns) = namespace.filter(|n| !n.is_empty())
        && purl.with_namespace(ns.to_string()).is_err()
    {
        return String::new();
    }
    if let Some(v) = version.filter(|v| !v.is_empty())
        && purl.with_version(v.to_string()).is_err()
    {
        return String::new();
    }
    for (k, v) in qualifiers.iter().filter(|(_, v)| !v.is_empty()) {
        if purl.add_qualifier(*k, v.clone()).is_err() {
            return String::new();
        }
    }
    purl.to_string()
}

/// `pkg:rpm/redhat/bash@5.1.8-6.el9?arch=x86_64&distro=rhel-9.4` (epoch as a qualifier).
pub fn rpm(p: &OsPackage, os: Option<&OsInfo>) -> String {
    let version = match &p.release {
        Some(r) => format!("{}-{r}", p.version),
        None => p.version.clone(),
    };
    let mut q = vec![("arch", p.arch.clone().unwrap_or_default())];
    if let Some(e) = p.epoch {
        q.push(("epoch", e.to_string()));
    }
    q.push(("distro", distro(os).unwrap_or_default()));
    build("rpm", Some(&os_namespace(os, "redhat")), &p.name, Some(&version), &q)
}

/// `pkg:deb/debian/bash@5.2.15-2?arch=amd64&distro=debian-12`.
pub fn deb(p: &OsPackage, os: Option<&OsInfo>) -> String {
    let q = [("arch", p.arch.clone().unwrap_or_default()), ("distro", distro(os).unwrap_or_default())];
    build("deb", Some(&os_namespace(os, "debian")), &p.name, Some(&p.version), &q)
}

/// `pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.19.0`.
pub fn apk(p: &OsPackage, os: Option<&OsInfo>) -> String {
    let q = [("arch", p.arch.clone().unwrap_or_default()), ("distro", distro(os).unwrap_or_default())];
    build("apk", Some(&os_namespace(os, "alpine")), &p.name, Some(&p.version), &q)
}

/// `pkg:pypi/flask-login@0.6.3` (name normalised as PyPI does).
pub fn pypi(name: &str, version: &str) -> String {
    build("pypi", None, &super::python::normalise_name(name), Some(version), &[])
}

/// `pkg:maven/com.google.guava/guava@31.1-jre`.
pub fn maven(group: &str, artifact: &str, version: &str) -> String {
    build("maven", Some(group), artifact, Some(version), &[])
}

/// `pkg:npm/%40types/node@20.1.0` (the scope is the namespace).
pub fn npm(name: &str, version: &str) -> String {
    match name.split_once('/') {
        Some((scope, rest)) if scope.starts_with('@') => build("npm", Some(scope), rest, Some(version), &[]),
        _ => build("npm", None, name, Some(version), &[]),
    }
}

/// `pkg:golang/github.com/spf13/cobra@v1.8.0`; `(devel)` versions are left out.
pub fn golang(module: &str, version: &str) -> String {
    let version = (!version.starts_with('(')).then_some(version);
    match module.rsplit_once('/') {
        Some((ns, name)) => build("golang", Some(ns), name, version, &[]),
        None => build("golang", None, module, version, &[]),
    }
}

/// `pkg:generic/NAME@VERSION`, for runtimes that have no package of their own.
pub fn generic(name: &str, version: &str) -> String {
    build("generic", None, name, Some(version), &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_follow_the_spec() {
        let os = OsInfo { id: "rhel".into(), version_id: "9.4".into(), ..Default::default() };
        let p = OsPackage {
            name: "bash".into(),
            version: "5.1.8".into(),
            release: Some("6.el9".into()),
            epoch: Some(1),
            arch: Some("x86_64".into()),
            license: None,
            source: None,
        };
        assert_eq!(rpm(&p, Some(&os)), "pkg:rpm/redhat/bash@5.1.8-6.el9?arch=x86_64&distro=rhel-9.4&epoch=1");
        assert_eq!(npm("@types/node", "20.1.0"), "pkg:npm/%40types/node@20.1.0");
        assert_eq!(pypi("Flask_Login", "0.6.3"), "pkg:pypi/flask-login@0.6.3");
        assert_eq!(maven("com.google.guava", "guava", "31.1-jre"), "pkg:maven/com.google.guava/guava@31.1-jre");
        assert_eq!(golang("github.com/spf13/cobra", "v1.8.0"), "pkg:golang/github.com/spf13/cobra@v1.8.0");
        assert_eq!(golang("example.com/app", "(devel)"), "pkg:golang/example.com/app");
    }
}
