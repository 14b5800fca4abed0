//! Image inventory from the image's files: UBI-shaped fixtures with real RPM databases (SQLite and Berkeley
//! DB), runtimes, Go binaries, language packages; whiteouts; hostile symlinks; the per-layer cache.

use serde_json::Value;

use crate::harness::fixtures::{self, image_workspace};
use crate::harness::{Kiln, busybox_workspace};

/// The CycloneDX BOM kiln makes for `image` (a convenient structured view of the inventory).
pub fn bom(kiln: &Kiln, image: &str) -> Value {
    serde_json::from_str(&kiln.ok(&["sbom", "--format", "cyclonedx-json", image])).expect("CycloneDX JSON")
}

/// `(name, version, purl, kiln:path)` of every component.
pub fn components(bom: &Value) -> Vec<(String, String, String, String)> {
    bom["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (s(&c["name"]), s(&c["version"]), s(&c["purl"]), s(&c["properties"][0]["value"]))
        })
        .collect()
}

fn find<'a>(all: &'a [(String, String, String, String)], name: &str) -> &'a (String, String, String, String) {
    all.iter().find(|c| c.0 == name).unwrap_or_else(|| panic!("{name} not in {all:#?}"))
}

#[test]
fn ubi9_python39_sqlite_rpmdb_and_python_packages() {
    if !fixtures::available() {
        return;
    }
    let (ws, root) = image_workspace("USER 1001\n");
    root.ubi("9.4")
        .rpmdb(false, &["bash", "glibc", "openssl-libs", "python3"])
        .python("usr/bin/python3.9", "3.9")
        .link("usr/bin/python3", "python3.9")
        .file(
            "usr/lib64/python3.9/site-packages/requests-2.31.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nLicense: Apache 2.0\n\nbody\n",
        )
        .file(
            "usr/lib/python3.9/site-packages/six-1.16.0-py3.9.egg-info",
            "Metadata-Version: 1.2\nName: six\nVersion: 1.16.0\n",
        );
    let kiln = Kiln::new();
    kiln.build(&ws, "ubi9/python-39:fixture", &[]);
    let table = kiln.ok(&["sbom", "--format", "table", "ubi9/python-39:fixture"]);
    assert!(table.starts_with("OS: UBI 9 (Red Hat Enterprise Linux 9.4 (Plow))"), "{table}");
    let all = components(&bom(&kiln, "ubi9/python-39:fixture"));
    assert_eq!(find(&all, "rhel").1, "9.4");
    let openssl = find(&all, "openssl-libs");
    assert_eq!(openssl.1, "1:3.0.7-27.el9");
    assert_eq!(openssl.2, "pkg:rpm/redhat/openssl-libs@3.0.7-27.el9?arch=x86_64&distro=rhel-9.4&epoch=1");
    assert_eq!(openssl.3, "/var/lib/rpm/rpmdb.sqlite");
    for name in ["bash", "glibc", "python3"] {
        find(&all, name);
    }
    let python = find(&all, "python");
    assert_eq!((python.1.as_str(), python.3.as_str()), ("3.9", "/usr/bin/python3.9"));
    assert_eq!(find(&all, "requests").2, "pkg:pypi/requests@2.31.0");
    assert_eq!(find(&all, "six").2, "pkg:pypi/six@1.16.0");
    assert_eq!(all.iter().filter(|c| c.2.starts_with("pkg:rpm/")).count(), 4, "exactly the installed RPMs");
}

#[test]
fn ubi8_python38_berkeley_db_rpmdb_and_platform_python() {
    if !fixtures::available() {
        return;
    }
    let (ws, root) = image_workspace("USER 1001\n");
    root.ubi("8.9")
        .rpmdb(true, &["bash", "glibc", "platform-python", "python38"])
        .python("usr/libexec/platform-python3.6", "3.6")
        .python("usr/bin/python3.8", "3.8");
    let kiln = Kiln::new();
    kiln.build(&ws, "ubi8/python-38:fixture", &[]);
    let table = kiln.ok(&["sbom", "--format", "table", "ubi8/python-38:fixture"]);
    assert!(table.starts_with("OS: UBI 8 (Red Hat Enterprise Linux 8.9 (Ootpa))"), "{table}");
    assert!(
        table.contains("runtime python  3.6            /usr/libexec/platform-python3.6 (platform-python)"),
        "{table}"
    );
    let all = components(&bom(&kiln, "ubi8/python-38:fixture"));
    let rpms: Vec<&str> = all.iter().filter(|c| c.3 == "/var/lib/rpm/Packages").map(|c| c.0.as_str()).collect();
    assert_eq!(rpms, ["bash", "glibc", "platform-python", "python38"]);
    assert_eq!(find(&all, "python38").1, "3.8.17-2.module+el8.9.0+19642+a12b4af6");
}

#[test]
fn jdks_go_toolchains_binaries_jars_and_npm() {
    if !fixtures::available() {
        return;
    }
    let jar = {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        w.start_file("META-INF/maven/org.apache.commons/commons-lang3/pom.properties", opts).unwrap();
        std::io::Write::write_all(&mut w, b"groupId=org.apache.commons\nartifactId=commons-lang3\nversion=3.14.0\n")
            .unwrap();
        w.finish().unwrap().into_inner()
    };
    let (ws, root) = image_workspace("ENV JAVA_HOME=/usr/lib/jvm/jre\nUSER 1001\n");
    root.ubi("9.4")
        .rpmdb(false, &["java-17-openjdk-headless", "golang"])
        .jdk("java-17-openjdk-17.0.10.0.7-1.el9.x86_64", "17.0.10")
        .file("usr/lib/golang/VERSION", "go1.21.7\ntime 2024-02-06T00:00:00Z\n")
        .exe("opt/app-root/bin/hello", std::fs::read(fixtures::go_binary()).unwrap())
        .file("deployments/app.jar", jar)
        .file(
            "opt/app-root/src/node_modules/@types/node/package.json",
            r#"{"name":"@types/node","version":"20.11.5","license":"MIT"}"#,
        );
    let kiln = Kiln::new();
    kiln.build(&ws, "ubi9/mixed:fixture", &[]);
    let all = components(&bom(&kiln, "ubi9/mixed:fixture"));
    let jdk = find(&all, "openjdk");
    assert_eq!((jdk.1.as_str(), jdk.3.as_str()), ("17.0.10", "/usr/lib/jvm/java-17-openjdk-17.0.10.0.7-1.el9.x86_64"));
    let go = all.iter().find(|c| c.0 == "go").expect("go toolchain");
    assert_eq!((go.1.as_str(), go.3.as_str()), ("1.21.7", "/usr/lib/golang"));
    let version = fixtures::go_version();
    let stdlib = all.iter().find(|c| c.0 == "stdlib" && c.3 == "/opt/app-root/bin/hello").expect("go binary stdlib");
    assert_eq!(stdlib.1, version.trim_start_matches("go"));
    assert_eq!(find(&all, "example.com/greeting").2, "pkg:golang/example.com/greeting@v1.4.2");
    assert_eq!(find(&all, "commons-lang3").2, "pkg:maven/org.apache.commons/commons-lang3@3.14.0");
    assert_eq!(find(&all, "node").2, "pkg:npm/%40types/node@20.11.5");
    let table = kiln.ok(&["sbom", "--format", "table", "ubi9/mixed:fixture"]);
    assert!(table.contains(&format!("go binary       {version:<14} /opt/app-root/bin/hello")), "{table}");
}

#[test]
fn packages_removed_in_a_later_layer_are_gone() {
    if !fixtures::available() {
        return;
    }
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "localhost/busybox:inv", &[]);
    let ws = crate::harness::Workspace::new();
    let root = fixtures::Rootfs(ws.path().join("rootfs"));
    root.ubi("9.4")
        .rpmdb(false, &["bash", "python3"])
        .python("usr/bin/python3.9", "3.9")
        .file("usr/lib64/python3.9/site-packages/flask-3.0.0.dist-info/METADATA", "Name: Flask\nVersion: 3.0.0\n")
        .file("usr/lib64/python3.9/site-packages/jinja2-3.1.3.dist-info/METADATA", "Name: Jinja2\nVersion: 3.1.3\n")
        .file("usr/lib/golang/VERSION", "go1.20.1\n");
    ws.dockerfile(
        "FROM localhost/busybox:inv\nCOPY rootfs/ /\n\
RUN rm -rf /usr/lib64/python3.9/site-packages/flask-3.0.0.dist-info /usr/bin/python3.9 /usr/lib64/python3.9/os.py\n\
RUN rm -rf /usr/lib/golang && mkdir -p /usr/lib/golang && echo go1.22.0 > /usr/lib/golang/VERSION\nUSER 1000\n",
    );
    kiln.build(&ws, "localhost/removed:1", &[]);
    let all = components(&bom(&kiln, "localhost/removed:1"));
    assert!(all.iter().all(|c| c.0 != "Flask"), "a whiteout removes the dist: {all:#?}");
    assert!(all.iter().all(|c| c.0 != "python"), "the interpreter is gone: {all:#?}");
    find(&all, "Jinja2");
    let go: Vec<&str> = all.iter().filter(|c| c.0 == "go").map(|c| c.1.as_str()).collect();
    assert_eq!(go, ["1.22.0"], "the opaque/replaced directory shows only the new toolchain");
}

#[test]
fn hostile_symlinks_never_reach_the_host() {
    // The host (Debian) has /etc/os-release and /var/lib/dpkg/status; the image only links to those paths.
    let (ws, root) = image_workspace("USER 1001\n");
    root.link("etc/os-release", "/etc/os-release")
        .link("var/lib/dpkg", "../../../../../../var/lib/dpkg")
        .link("usr/lib/jvm/jre", "/../../../usr/lib/jvm/jre")
        .file("opt/marker", "x");
    let kiln = Kiln::new();
    kiln.build(&ws, "localhost/hostile:1", &[]);
    let table = kiln.ok(&["sbom", "--format", "table", "localhost/hostile:1"]);
    assert!(!table.contains("OS:"), "the host's os-release must not be read: {table}");
    assert!(!table.contains("deb "), "the host's dpkg database must not be read: {table}");
    assert_eq!(table.lines().count(), 1, "nothing but the header: {table}");
}

#[test]
fn inventory_is_cached_per_layer() {
    if !fixtures::available() {
        return;
    }
    let (ws, root) = image_workspace("COPY extra/ /opt/\nUSER 1001\n");
    root.ubi("9.4").rpmdb(false, &["bash"]);
    ws.file("extra/app/node_modules/left-pad/package.json", r#"{"name":"left-pad","version":"1.3.0"}"#);
    let kiln = Kiln::new();
    kiln.build(&ws, "localhost/cached:1", &[]);
    kiln.ok(&["sbom", "localhost/cached:1"]);
    let cache_dir = kiln.store().join("kiln/inventory/v1");
    let entries = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    };
    let first = entries(&cache_dir);
    assert_eq!(first.len(), 2, "one entry per layer: {first:?}");
    // A rebuild that changes one layer reads only that layer: one new entry, the other reused.
    ws.file("extra/app/node_modules/left-pad/package.json", r#"{"name":"left-pad","version":"1.3.1"}"#);
    kiln.build(&ws, "localhost/cached:2", &[]);
    let all = components(&bom(&kiln, "localhost/cached:2"));
    assert_eq!(find(&all, "left-pad").1, "1.3.1");
    let second = entries(&cache_dir);
    assert_eq!(second.len(), 3, "{second:?}");
    // The cached facts are what the inventory uses: an edited entry shows (so no layer was read again).
    let bash_layer = first.iter().find(|p| std::fs::read_to_string(p).unwrap().contains("\"bash\"")).unwrap();
    let edited = std::fs::read_to_string(bash_layer).unwrap().replace("\"bash\"", "\"bash-from-cache\"");
    std::fs::write(bash_layer, edited).unwrap();
    let all = components(&bom(&kiln, "localhost/cached:2"));
    find(&all, "bash-from-cache");
    // Cached facts go with their layers.
    kiln.ok(&["rmi", "localhost/cached:1"]);
    kiln.ok(&["prune"]);
    assert_eq!(entries(&cache_dir).len(), 2, "the replaced layer's facts are swept");
    kiln.ok(&["rmi", "localhost/cached:2"]);
    kiln.ok(&["prune"]);
    assert!(entries(&cache_dir).is_empty());
}
