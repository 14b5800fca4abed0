//! The supply chain against real peers: pip against pypiserver over HTTPS signed by a test CA, apt through
//! apt-cacher-ng in front of the Debian mirror, the proxy-only network with its fetch log, the CA layer
//! replaced in a real registry and checked by running the image with podman. Ecosystems whose servers
//! cannot run here (npm and Maven registries, dnf repositories) are checked by reading back, from a RUN
//! step, the configuration the step sees — and by unpacking the image to see none of it stayed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::harness::http::{Server, redirect, route};
use crate::harness::supply::{
    Pki, apt_cacher_ng, apt_cacher_requests, debian_python, free_port, pypi_requests, pypiserver, tls_server, wheel,
};
use crate::harness::{
    Kiln, Registry, Run, Workspace, busybox_rootfs, require, rootless, skopeo_config, tool, umoci_unpack,
};

/// Builds `ws` with `args` and returns the run (for its output), insisting on success.
fn build(kiln: &Kiln, ws: &Workspace, tag: &str, args: &[&str]) -> Run {
    let ctx = ws.path().to_string_lossy().into_owned();
    let mut all = vec!["build", "-t", tag];
    all.extend_from_slice(args);
    all.push(&ctx);
    let run = kiln.run(&all);
    assert_eq!(run.code, 0, "kiln {all:?} failed\n{}", run.stderr);
    run
}

/// The busybox base as `localhost/busybox:test`, with repository files of both package families.
fn busybox_base(kiln: &Kiln) {
    let ws = Workspace::new();
    let rootfs = ws.path().join("rootfs");
    busybox_rootfs(&rootfs);
    for (path, text) in REPO_FILES {
        let p = rootfs.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    ws.dockerfile("FROM scratch\nCOPY rootfs/ /\n");
    rootless::give(ws.path());
    kiln.build(&ws, "busybox:test", &[]);
}

const REPO_FILES: [(&str, &str); 3] = [
    (
        "etc/yum.repos.d/ubi.repo",
        "[ubi-9-baseos-rpms]\nname = UBI 9 BaseOS\nbaseurl = https://cdn-ubi.example.test/ubi9/9/$basearch/baseos/os\nenabled = 1\n",
    ),
    ("etc/apt/sources.list", "deb http://deb.example.test/debian bookworm main\n"),
    (
        "etc/apt/sources.list.d/debian.sources",
        "Types: deb\nURIs: http://deb.example.test/debian-security\nSuites: bookworm-security\nComponents: main\n",
    ),
];

/// Everything kiln may give a step, none of which may stay in the image's config.
const SUPPLY_VARS: [&str; 13] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "JAVA_TOOL_OPTIONS",
    "PIP_INDEX_URL",
    "npm_config_registry",
    "GOPROXY",
    "MAVEN_ARGS",
    "http_proxy",
    "https_proxy",
];

/// Checks that the image's config names nothing of the supply chain (`secrets`: strings that must not appear).
fn config_is_clean(kiln: &Kiln, name: &str, secrets: &[&str]) {
    let config = skopeo_config(&kiln.oci_ref(name));
    let text = config.to_string();
    for var in SUPPLY_VARS {
        assert!(!text.contains(&format!("{var}=")), "{var} stayed in the config: {text}");
    }
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} stayed in the config or history: {text}");
    }
}

/// The body line of a PEM file that identifies it (its second line).
fn pem_marker(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().lines().nth(1).unwrap().to_string()
}

#[test]
fn pip_install_trusts_the_index_only_with_the_company_ca() {
    let kiln = Kiln::new();
    let (Some(base), Some(pki)) = (debian_python(&kiln), Pki::new("kiln-test-company-ca")) else { return };
    let packages = tempfile::tempdir().unwrap();
    wheel(packages.path(), "kilnprobe", "1.0", "trusted");
    let Some(index) = pypiserver(&pki, packages.path()) else { return };
    let ws = Workspace::new();
    ws.dockerfile(&format!(
        "FROM {base}\nRUN pip install --break-system-packages --no-cache-dir kilnprobe==1.0 \
         && python3 -c 'import kilnprobe; print(\"probe=\" + kilnprobe.VALUE)'\n"
    ));
    let nexus = format!("https://127.0.0.1:{}", index.port);
    let ca = pki.ca.to_string_lossy().into_owned();
    let routing = ["--nexus", nexus.as_str(), "--nexus-path", "pip=simple/"];
    let ctx = ws.path().to_string_lossy().into_owned();
    let mut args = vec!["build", "-t", "pip:untrusted"];
    args.extend(routing);
    args.push(&ctx);
    let refused = kiln.fails(&args);
    assert!(refused.stderr.contains("CERTIFICATE_VERIFY_FAILED"), "pip must not trust the index:\n{}", refused.stderr);
    let mut with_ca = routing.to_vec();
    with_ca.extend(["--ca-cert", ca.as_str()]);
    let run = build(&kiln, &ws, "pip:1", &with_ca);
    assert!(run.stderr.contains("probe=trusted"), "{}", run.stderr);
    let served = pypi_requests(&index);
    assert!(served.contains(&"GET /simple/kilnprobe/".to_string()), "{served:?}");
    assert!(served.contains(&"GET /packages/kilnprobe-1.0-py3-none-any.whl".to_string()), "{served:?}");
    // Nothing of the CA, the bundle or the routing stays in the image.
    let (_keep, rootfs) = umoci_unpack(kiln.store(), "localhost/pip:1");
    assert!(rootfs.join("usr/local/lib/python3.11/dist-packages/kilnprobe/__init__.py").is_file());
    let bundle = std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(!bundle.contains(&pem_marker(&pki.ca)), "the company CA stayed in the image's bundle");
    for stub in ["run/kiln", "etc/pki", "etc/ssl/cert.pem", "etc/ssl/ca-bundle.pem", "root/.m2", "root/.gradle"] {
        assert!(rootfs.join(stub).symlink_metadata().is_err(), "{stub} stayed in the image");
    }
    config_is_clean(&kiln, "localhost/pip:1", &[&nexus, &ca, "ca-bundle"]);
}

#[test]
fn ca_trust_changes_cache_keys_by_content_not_by_path() {
    if !require("openssl") {
        return;
    }
    let kiln = Kiln::new();
    busybox_base(&kiln);
    let t = tempfile::tempdir().unwrap();
    let [a, b, other] = ["a.pem", "moved/b.pem", "other.pem"].map(|n| t.path().join(n));
    std::fs::create_dir_all(b.parent().unwrap()).unwrap();
    std::fs::write(&a, include_str!("../../testdata/supply/unit-ca.pem")).unwrap();
    std::fs::write(&b, include_str!("../../testdata/supply/unit-ca.pem")).unwrap();
    std::fs::write(&other, include_str!("../../testdata/supply/unit-ca-2.pem")).unwrap();
    let ws = Workspace::new();
    ws.dockerfile("FROM localhost/busybox:test\nRUN (cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null || true) | grep -c BEGIN > /count; true\n");
    let with = |ca: &Path| build(&kiln, &ws, "keyed", &["--ca-cert", &ca.to_string_lossy()]).stderr;
    assert!(with(&a).contains("1 steps, 0 cached"));
    assert!(with(&b).contains("1 steps, 1 cached"), "the same CA from another path hits the cache");
    assert!(with(&other).contains("1 steps, 0 cached"), "another CA misses");
    assert!(build(&kiln, &ws, "keyed", &[]).stderr.contains("1 steps, 0 cached"), "no CA misses too");
    let (_keep, rootfs) = umoci_unpack(kiln.store(), "localhost/keyed:latest");
    assert_eq!(std::fs::read_to_string(rootfs.join("count")).unwrap().trim(), "0", "built without a CA: none seen");
    assert!(rootfs.join("etc/ssl").symlink_metadata().is_err(), "the bundle's mount stubs never reach a layer");
}

#[test]
fn routing_reaches_every_ecosystem_and_leaves_no_trace() {
    let kiln = Kiln::new();
    busybox_base(&kiln);
    let ws = Workspace::new();
    ws.dockerfile(
        "FROM localhost/busybox:test\nUSER app\n\
         RUN for f in ~/.m2/settings.xml ~/.gradle/init.d/kiln-nexus.gradle /etc/yum.repos.d/ubi.repo \\\n\
         /etc/apt/sources.list /etc/apt/sources.list.d/debian.sources; do cat $f; done; env | sort; echo done > /tmp/ran\n",
    );
    let nexus = "https://nexus.example.test";
    let run = build(&kiln, &ws, "routed", &["--nexus", nexus]);
    let out = &run.stderr;
    for expected in [
        "<mirrorOf>*</mirrorOf>",
        "<url>https://nexus.example.test/repository/maven-public/</url>",
        "def kilnNexus = 'https://nexus.example.test/repository/maven-public/'",
        "baseurl=https://nexus.example.test/repository/ubi-9-baseos-rpms/",
        "deb https://nexus.example.test/repository/debian/ bookworm main",
        "URIs: https://nexus.example.test/repository/debian-security/",
        "PIP_INDEX_URL=https://nexus.example.test/repository/pypi/simple",
        "UV_DEFAULT_INDEX=https://nexus.example.test/repository/pypi/simple",
        "npm_config_registry=https://nexus.example.test/repository/npm/",
        "YARN_REGISTRY=https://nexus.example.test/repository/npm/",
        "GOPROXY=https://nexus.example.test/repository/go/",
        "MAVEN_ARGS=-s /run/kiln/supply/maven-settings.xml",
    ] {
        assert!(out.contains(expected), "the step should see {expected:?}:\n{out}");
    }
    // The image keeps its own files and nothing of kiln's.
    let (_keep, rootfs) = umoci_unpack(kiln.store(), "localhost/routed:latest");
    assert_eq!(std::fs::read_to_string(rootfs.join("tmp/ran")).unwrap(), "done\n");
    for (path, text) in REPO_FILES {
        assert_eq!(std::fs::read_to_string(rootfs.join(path)).unwrap(), text, "{path} is the image's own");
    }
    for stub in ["home/app/.m2", "home/app/.gradle", "run/kiln"] {
        assert!(rootfs.join(stub).symlink_metadata().is_err(), "{stub} stayed in the image");
    }
    config_is_clean(&kiln, "localhost/routed:latest", &["nexus.example.test"]);
    // A switched-off ecosystem keeps the image's own configuration.
    let run = build(&kiln, &ws, "partly", &["--nexus", nexus, "--no-nexus", "dnf", "--no-nexus", "maven,gradle"]);
    assert!(run.stderr.contains("baseurl = https://cdn-ubi.example.test/ubi9/9/$basearch/baseos/os"), "{}", run.stderr);
    assert!(run.stderr.contains("No such file or directory"), "no Maven settings without maven routing");
}

#[test]
fn a_step_cannot_add_repository_files_behind_routing() {
    let kiln = Kiln::new();
    busybox_base(&kiln);
    let ws = Workspace::new();
    ws.dockerfile("FROM localhost/busybox:test\nRUN echo '[extra]' > /etc/yum.repos.d/extra.repo\n");
    let ctx = ws.path().to_string_lossy().into_owned();
    let run = kiln.fails(&["build", "--nexus", "https://nexus.example.test", &ctx]);
    assert!(run.stderr.contains("Read-only file system"), "{}", run.stderr);
}

/// The bundle kiln places is an ordinary file to the command: untouched, it never reaches a layer; renamed
/// over (what `update-ca-certificates` does), the command's file is kept; appended to, the image's own
/// bundle gets the addition, and the company CA stays out. Before, the bundle was a read-only bind: the
/// rename failed with EBUSY.
fn steps_may_replace_or_extend_the_bundle(kiln: &Kiln, args: &[&str]) {
    busybox_base(kiln);
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/supply/unit-ca.pem");
    let own = include_str!("../../testdata/supply/unit-ca-2.pem");
    let first = "FROM localhost/busybox:test\nRUN grep -c BEGIN /etc/ssl/certs/ca-certificates.crt > /seen-first\n";
    let ws = Workspace::new();
    ws.file("own.pem", own).dockerfile(first);
    rootless::give(ws.path());
    let mut with_ca = args.to_vec();
    let ca_arg = ca.to_string_lossy();
    with_ca.extend(["--ca-cert", ca_arg.as_ref()]);
    build(kiln, &ws, "placed:first", &with_ca);
    let (_keep, rootfs) = umoci_unpack(kiln.store(), "localhost/placed:first");
    assert_eq!(std::fs::read_to_string(rootfs.join("seen-first")).unwrap().trim(), "1", "the company CA is seen");
    for path in ["etc/ssl", "etc/pki"] {
        assert!(rootfs.join(path).symlink_metadata().is_err(), "an untouched bundle reached the image: {path}");
    }
    ws.dockerfile(&format!(
        "{first}COPY own.pem /tmp/own.pem\n\
         RUN chmod 444 /tmp/own.pem && mv /tmp/own.pem /etc/ssl/certs/ca-certificates.crt\n\
         RUN grep -c BEGIN /etc/ssl/certs/ca-certificates.crt > /seen-then \\\n\
         && echo extra >> /etc/ssl/certs/ca-certificates.crt\n"
    ));
    build(kiln, &ws, "placed:all", &with_ca);
    let (_keep, rootfs) = umoci_unpack(kiln.store(), "localhost/placed:all");
    let read = |p: &str| std::fs::read_to_string(rootfs.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("seen-then").trim(), "2", "the image's own CA and the company CA");
    assert_eq!(read("etc/ssl/certs/ca-certificates.crt"), format!("{own}extra\n"), "the image's bundle, extended");
    let mode = std::fs::metadata(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o444, "a read-only bundle (RHEL's are) stays as it was");
    for path in ["etc/pki", "etc/ssl/cert.pem", "etc/ssl/ca-bundle.pem", "run/kiln"] {
        assert!(rootfs.join(path).symlink_metadata().is_err(), "{path} stayed in the image");
    }
}

#[test]
fn steps_may_replace_or_extend_the_bundle_as_root() {
    steps_may_replace_or_extend_the_bundle(&Kiln::new(), &[]);
}

#[test]
fn steps_may_replace_or_extend_the_bundle_in_chroot_mode() {
    steps_may_replace_or_extend_the_bundle(&Kiln::new(), &["--isolation", "chroot"]);
}

#[test]
fn steps_may_replace_or_extend_the_bundle_rootless() {
    if let Some(kiln) = rootless::kiln() {
        steps_may_replace_or_extend_the_bundle(&kiln, &[]);
    }
}

/// Debian's own `update-ca-certificates` regenerates the bundle kiln placed (it failed with EBUSY on
/// the bind): the image gets the distro's bundle, without the company CA, while the step trusted it.
#[test]
fn update_ca_certificates_runs_with_the_company_ca() {
    let kiln = Kiln::new();
    let Some(base) = debian_python(&kiln) else { return };
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/supply/unit-ca.pem");
    let ws = Workspace::new();
    ws.dockerfile(&format!(
        "FROM {base}\nRUN grep -c BEGIN /etc/ssl/certs/ca-certificates.crt > /before \\\n\
         && update-ca-certificates --fresh && grep -c BEGIN /etc/ssl/certs/ca-certificates.crt > /after\n"
    ));
    build(&kiln, &ws, "regenerated", &["--ca-cert", &ca.to_string_lossy()]);
    let (_keep, rootfs) = umoci_unpack(kiln.store(), "localhost/regenerated:latest");
    let count = |p: &str| std::fs::read_to_string(rootfs.join(p)).unwrap().trim().parse::<usize>().unwrap();
    assert_eq!(count("before"), count("after") + 1, "kiln's bundle, then the distro's own");
    let bundle = std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), count("after"));
    assert!(!bundle.contains(&pem_marker(&ca)), "the company CA stayed in the image's bundle");
}

/// Proxy-only with busybox's wget: the allowed server answers, another is refused by the proxy, a direct
/// connection fails at once; the fetch log holds exactly the two proxied requests.
fn proxy_only_with_wget(kiln: &Kiln) {
    busybox_base(kiln);
    let server = Server::start(vec![route("/allowed.txt", "text/plain", "allowed-content")]);
    let refused = free_port();
    let ws = Workspace::new();
    ws.dockerfile(&format!(
        "FROM localhost/busybox:test\n\
         RUN wget -q -O - {allowed} && echo \\\n\
         && (wget -q -O - http://127.0.0.1:{refused}/secret || echo proxy-refused) \\\n\
         && (wget -Y off -q -O - {allowed} || echo direct-failed)\n",
        allowed = server.url("/allowed.txt"),
    ));
    let log_dir = tempfile::tempdir().unwrap();
    rootless::give(log_dir.path());
    let log = log_dir.path().join("fetch.jsonl");
    let run = build(
        kiln,
        &ws,
        "proxied",
        &[
            "--network",
            "proxy-only",
            "--allow-host",
            &server.addr,
            "--fetch-log",
            &log.to_string_lossy(),
            "--provenance",
        ],
    );
    let out = &run.stderr;
    assert!(out.contains("allowed-content"), "{out}");
    assert!(out.contains("proxy-refused") && out.contains("403"), "{out}");
    assert!(out.contains("Connection refused") && out.contains("direct-failed"), "{out}");
    assert!(out.contains(&format!("refused 127.0.0.1:{refused}")) && out.contains("Dockerfile:2"), "{out}");
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "exactly the proxied requests: {lines:?}");
    assert_eq!(lines[0]["target"], server.url("/allowed.txt"));
    assert_eq!((lines[0]["method"].as_str(), lines[0]["status"].as_u64()), (Some("GET"), Some(200)));
    assert_eq!(lines[0]["bytes_received"], 15);
    assert_eq!((lines[1]["port"].as_u64(), lines[1]["allowed"].as_bool()), (Some(u64::from(refused)), Some(false)));
    assert_eq!(lines[1]["status"], 403);
    assert!(lines.iter().all(|l| l["step"].as_str().unwrap().contains("Dockerfile:2 RUN wget")));
    assert!(out.contains("network (proxy-only): 2 requests, 1 refused"), "{out}");
    // The provenance lists the same requests as fetched dependencies, refused ones included.
    let prov: serde_json::Value = serde_json::from_str(&kiln.ok(&["provenance", "proxied"])).unwrap();
    let deps = prov["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
    let proxied: Vec<&serde_json::Value> = deps.iter().filter(|d| d["annotations"]["via"] == "proxy").collect();
    assert_eq!(proxied.len(), 2, "{deps:?}");
    assert_eq!(proxied[0]["uri"], server.url("/allowed.txt").as_str());
    assert_eq!(proxied[1]["annotations"]["status"], 403);
}

#[test]
fn proxy_only_as_root() {
    proxy_only_with_wget(&Kiln::new());
}

#[test]
fn proxy_only_rootless() {
    if let Some(kiln) = rootless::kiln() {
        proxy_only_with_wget(&kiln);
    }
}

/// A base image is kiln's own download too: on the proxy-only network it is pulled only from a registry
/// on the allow-list, and the pull is in the fetch log.
#[test]
fn base_pulls_on_the_proxy_only_network_obey_the_allow_list_and_are_logged() {
    let Some(registry) = Registry::start() else { return };
    let pusher = Kiln::new();
    busybox_base(&pusher);
    let base = registry.name("proxy/busybox:1");
    pusher.ok(&["push", "localhost/busybox:test", &format!("docker://{base}"), "--tls-verify=false"]);
    let kiln = Kiln::new();
    let ws = Workspace::new();
    ws.dockerfile(&format!("FROM {base}\nRUN true\n"));
    let ctx = ws.path().to_string_lossy().into_owned();
    let proxy_only = ["build", "--tls-verify=false", "--network", "proxy-only"];
    let refused = kiln.fails(&[&proxy_only[..], &[&ctx]].concat());
    let expected = format!("FROM {base}: --network proxy-only refused {}", registry.addr);
    assert!(refused.stderr.contains(&expected), "{}", refused.stderr);
    assert!(refused.stderr.contains(&format!("--allow-host {}", registry.addr.split(':').next().unwrap())));
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("fetch.jsonl");
    let log_arg = log.to_string_lossy();
    kiln.ok(&[&proxy_only[..], &["--allow-host", &registry.addr, "--fetch-log", &log_arg, &ctx]].concat());
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let pull: Vec<&serde_json::Value> = lines.iter().filter(|l| l["step"] == format!("FROM {base}")).collect();
    assert_eq!(pull.len(), 1, "{lines:?}");
    assert_eq!((pull[0]["by_kiln"].as_bool(), pull[0]["allowed"].as_bool()), (Some(true), Some(true)));
    assert!(pull[0]["bytes_received"].as_u64().unwrap() > 100_000, "busybox's layer: {:?}", pull[0]);
}

/// kiln's own downloads for a step (ADD URLs) obey the same allow-list and go into the same fetch log.
#[test]
fn add_urls_on_the_proxy_only_network_obey_the_allow_list_and_are_logged() {
    let kiln = Kiln::new();
    busybox_base(&kiln);
    let elsewhere = Server::start(vec![route("/other.txt", "text/plain", "other")]);
    let nexus = Server::start(vec![
        route("/tool.txt", "text/plain", "tool"),
        redirect("/bounce.txt", &elsewhere.url("/other.txt")),
    ]);
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("fetch.jsonl");
    let ws = Workspace::new();
    let add = |url: String| {
        ws.dockerfile(&format!("FROM localhost/busybox:test\nADD {url} /x\n"));
        let ctx = ws.path().to_string_lossy().into_owned();
        let log = log.to_string_lossy().into_owned();
        let args = ["build", "--network", "proxy-only", "--allow-host", &nexus.addr, "--fetch-log", &log, &ctx];
        kiln.run(&args)
    };
    let ok = add(nexus.url("/tool.txt"));
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    for url in [elsewhere.url("/other.txt"), nexus.url("/bounce.txt")] {
        let refused = add(url.clone());
        assert_ne!(refused.code, 0, "{url} must be refused");
        let message = format!("Dockerfile:2: ADD {url} /x: --network proxy-only refused {}", elsewhere.addr);
        assert!(refused.stderr.contains(&message) && refused.stderr.contains("--allow-host"), "{}", refused.stderr);
    }
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seen: Vec<(&str, bool, u64)> = lines
        .iter()
        .map(|l| (l["url"].as_str().unwrap(), l["allowed"].as_bool().unwrap(), l["status"].as_u64().unwrap()))
        .collect();
    let (tool, other) = (nexus.url("/tool.txt"), elsewhere.url("/other.txt"));
    assert_eq!(seen, [(tool.as_str(), true, 200), (other.as_str(), false, 403), (other.as_str(), false, 403)]);
    assert!(lines.iter().all(|l| l["by_kiln"] == true && l["step"].as_str().unwrap().contains("Dockerfile:2 ADD")));
}

#[test]
fn chroot_mode_says_it_cannot_enforce_proxy_only() {
    if !require("setpriv") {
        return;
    }
    let kiln = Kiln::without_mount_rights();
    busybox_base(&kiln);
    let ws = Workspace::new();
    ws.dockerfile("FROM localhost/busybox:test\nRUN true\n");
    let ctx = ws.path().to_string_lossy().into_owned();
    let run = kiln.fails(&["build", "--isolation", "chroot", "--network", "proxy-only", &ctx]);
    assert!(run.stderr.contains("proxy-only cannot be enforced in chroot isolation"), "{}", run.stderr);
}

#[test]
fn proxy_only_lets_pip_reach_the_index_and_logs_exactly_the_requests() {
    let kiln = Kiln::new();
    let (Some(base), Some(pki)) = (debian_python(&kiln), Pki::new("kiln-test-proxy-ca")) else { return };
    let packages = tempfile::tempdir().unwrap();
    wheel(packages.path(), "kilnprobe", "1.0", "proxied");
    let Some(index) = pypiserver(&pki, packages.path()) else { return };
    let other = Server::start(vec![route("/allowed.txt", "text/plain", "allowed-content")]);
    let closed = free_port();
    let ws = Workspace::new();
    ws.dockerfile(&format!(
        "FROM {base}\n\
         RUN pip install --break-system-packages --no-cache-dir kilnprobe==1.0\n\
         RUN python3 - <<'EOF'\n\
import socket, time, urllib.error, urllib.request\n\
print('index', urllib.request.urlopen('https://127.0.0.1:{port}/simple/kilnprobe/').status)\n\
print('other', urllib.request.urlopen('http://{other}/allowed.txt').read().decode())\n\
try:\n    urllib.request.urlopen('http://127.0.0.1:{closed}/secret')\nexcept urllib.error.HTTPError as e:\n    print('refused', e.code)\n\
start = time.monotonic()\n\
try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=10)\n    print('direct connected')\n\
except OSError as e:\n    print('direct failed', 'fast' if time.monotonic() - start < 1 else 'slowly', type(e).__name__)\n\
EOF\n",
        port = index.port,
        other = other.addr,
    ));
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("fetch.jsonl");
    let nexus = format!("https://127.0.0.1:{}", index.port);
    let ca = pki.ca.to_string_lossy().into_owned();
    let args = [
        "--nexus",
        &nexus,
        "--nexus-path",
        "pip=simple/",
        "--ca-cert",
        &ca,
        "--network",
        "proxy-only",
        "--allow-host",
        &other.addr,
        "--fetch-log",
        &log.to_string_lossy(),
    ];
    let run = build(&kiln, &ws, "proxied-pip", &args);
    let out = &run.stderr;
    for expected in ["index 200", "other allowed-content", "refused 403", "direct failed fast ConnectionRefusedError"] {
        assert!(out.contains(expected), "{expected:?} in:\n{out}");
    }
    let records: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (pip, probe): (Vec<_>, Vec<_>) =
        records.iter().partition(|r| r["step"].as_str().unwrap().contains(":2 RUN pip"));
    let index_target = format!("127.0.0.1:{}", index.port);
    assert!(!pip.is_empty(), "pip went through the proxy: {records:?}");
    for r in &pip {
        assert_eq!((r["method"].as_str(), r["target"].as_str()), (Some("CONNECT"), Some(index_target.as_str())), "{r}");
        assert_eq!(r["status"], 200);
    }
    let summary: Vec<(String, String, u64)> = probe
        .iter()
        .map(|r| {
            (r["method"].as_str().unwrap().into(), r["target"].as_str().unwrap().into(), r["status"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("CONNECT".to_string(), index_target.clone(), 200),
            ("GET".to_string(), format!("http://{}/allowed.txt", other.addr), 200),
            ("GET".to_string(), format!("http://127.0.0.1:{closed}/secret"), 403),
        ],
        "the fetch log lists exactly the requests the step made through the proxy"
    );
    assert!(out.contains(&format!("refused 127.0.0.1:{closed}")), "{out}");
}

#[test]
fn apt_installs_through_apt_cacher_ng_and_nothing_else() {
    let kiln = Kiln::new();
    let Some(base) = debian_python(&kiln) else { return };
    let Some(acng) = apt_cacher_ng() else { return };
    let ws = Workspace::new();
    ws.dockerfile(&format!(
        "FROM {base}\nRUN apt-get update && apt-get install -y --no-install-recommends jq && jq --version \
         && rm -rf /var/lib/apt/lists/*\n"
    ));
    let nexus = format!("http://127.0.0.1:{}", acng.port);
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("fetch.jsonl");
    // apt-cacher-ng serves a mirror at /HOST/PATH: the template keeps the image's own mirror.
    let args = [
        "--nexus",
        &nexus,
        "--nexus-path",
        "apt={host}/{path}",
        "--network",
        "proxy-only",
        "--fetch-log",
        &log.to_string_lossy(),
    ];
    let run = build(&kiln, &ws, "apt", &args);
    assert!(run.stderr.contains("jq-1."), "{}", run.stderr);
    let served = apt_cacher_requests(&acng);
    assert!(served.iter().any(|p| p.ends_with("/dists/bookworm/InRelease")), "{served:?}");
    assert!(served.iter().any(|p| p.contains("/pool/main/j/jq/jq_")), "{served:?}");
    let records = std::fs::read_to_string(&log).unwrap();
    for line in records.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["port"].as_u64(), Some(u64::from(acng.port)), "apt fetched only from apt-cacher-ng: {r}");
    }
    let (_keep, rootfs) = umoci_unpack(kiln.store(), "localhost/apt:latest");
    assert!(rootfs.join("usr/bin/jq").is_file());
    let sources = std::fs::read_to_string(rootfs.join("etc/apt/sources.list")).unwrap_or_default();
    assert!(!sources.contains("127.0.0.1"), "the image keeps its own sources: {sources}");
    config_is_clean(&kiln, "localhost/apt:latest", &[&nexus]);
}

/// Runs `cmd` in `image` with podman on the host's network (to reach the test's TLS servers).
fn podman_on_host_network(image: &str, cmd: &[&str]) -> std::process::Output {
    let storage = tempfile::tempdir().unwrap();
    Command::new("podman")
        .arg(format!("--root={}", storage.path().join("root").display()))
        .arg(format!("--runroot={}", storage.path().join("run").display()))
        .args(["--storage-driver=vfs", "--runtime", "runc", "run", "--rm", "--tls-verify=false", "--network", "host"])
        .args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", image])
        .args(cmd)
        .output()
        .expect("podman runs")
}

fn fetch_script(port: u16) -> String {
    format!(
        "import urllib.request\ntry:\n    urllib.request.urlopen('https://127.0.0.1:{port}/')\n    print('trusted')\n\
         except Exception as e:\n    print('untrusted', e)\n"
    )
}

fn layer_digests(image: &str) -> Vec<String> {
    let text = tool("skopeo", &["inspect", "--tls-verify=false", image]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect()
}

#[test]
fn ca_update_replaces_exactly_the_ca_layer_in_the_registry() {
    if !require("podman") {
        return;
    }
    let kiln = Kiln::new();
    let Some(base) = debian_python(&kiln) else { return };
    let (Some(registry), Some(old), Some(new)) =
        (Registry::with_access_log(), Pki::new("kiln-test-old-ca"), Pki::new("kiln-test-new-ca"))
    else {
        return;
    };
    let (old_server, new_server) = (tls_server(&old, "old"), tls_server(&new, "new"));
    let ws = Workspace::new();
    ws.dockerfile(&format!("FROM {base}\nRUN echo built > /built\n"));
    let image = registry.name("team/app:1");
    let old_ca = old.ca.to_string_lossy().into_owned();
    build(&kiln, &ws, &image, &["--ca-cert", &old_ca, "--ca-persist", "--push", "--tls-verify=false"]);
    let docker_ref = format!("docker://{image}");
    let before = layer_digests(&docker_ref);
    let config = skopeo_config(&docker_ref);
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["io.kiln.ca.layer"], config["rootfs"]["diff_ids"].as_array().unwrap().last().unwrap().clone());
    let script = |port| fetch_script(port);
    let old_run = podman_on_host_network(&image, &["python3", "-c", &script(old_server.port)]);
    assert!(String::from_utf8_lossy(&old_run.stdout).contains("trusted"), "{old_run:?}");

    let seen = registry.requests().len();
    let updater = Kiln::new();
    let new_ca = new.ca.to_string_lossy().into_owned();
    updater.ok(&["ca-update", &image, "--ca-cert", &new_ca, "--push", "--tls-verify=false"]);
    let after = layer_digests(&docker_ref);
    assert_eq!(after.len(), before.len());
    assert_eq!(after[..after.len() - 1], before[..before.len() - 1], "every other layer keeps its digest");
    assert_ne!(after.last(), before.last(), "the CA layer is new");
    let requests = registry.requests()[seen..].to_vec();
    for (method, uri) in &requests {
        for digest in &before[..before.len() - 1] {
            assert!(!uri.contains(digest.as_str()), "{method} {uri}: another layer was touched");
        }
        if method == "PUT" || method == "POST" || method == "PATCH" {
            assert!(uri.contains("/blobs/uploads/") || uri.contains("/manifests/"), "{method} {uri}");
        }
    }
    assert!(updater.ok(&["images", "-q"]).trim().is_empty(), "nothing was downloaded into the store");

    let new_image = podman_on_host_network(
        &image,
        &["python3", "-c", &format!("{}\n{}", script(new_server.port), script(old_server.port))],
    );
    let text = String::from_utf8_lossy(&new_image.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"trusted"), "the new CA's server is trusted: {new_image:?}");
    assert!(lines.get(1).is_some_and(|l| l.starts_with("untrusted")), "the old CA's is not: {new_image:?}");
    let config = skopeo_config(&docker_ref);
    assert_eq!(
        config["config"]["Labels"]["io.kiln.ca.layer"],
        config["rootfs"]["diff_ids"].as_array().unwrap().last().unwrap().clone(),
        "the label names the new CA layer"
    );
}

#[test]
fn ca_update_in_the_store_and_without_a_ca_layer() {
    let kiln = Kiln::new();
    busybox_base(&kiln);
    let ws = Workspace::new();
    ws.dockerfile("FROM localhost/busybox:test\nRUN echo x > /x\n");
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/supply/unit-ca.pem");
    let ca2 = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/supply/unit-ca-2.pem");
    build(&kiln, &ws, "persisted", &["--ca-cert", &ca.to_string_lossy(), "--ca-persist"]);
    let name = kiln.oci_ref("localhost/persisted:latest");
    let before = layer_digests(&name);
    let (_keep, rootfs) = umoci_unpack(kiln.store(), "localhost/persisted:latest");
    let bundle = std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(bundle.contains(&pem_marker(&ca)), "the CA is in the image");
    let anchors: Vec<_> =
        std::fs::read_dir(rootfs.join("usr/local/share/ca-certificates")).unwrap().flatten().collect();
    assert_eq!(anchors.len(), 1);
    kiln.ok(&["ca-update", "localhost/persisted", "--ca-cert", &ca2.to_string_lossy()]);
    let after = layer_digests(&name);
    assert_eq!(after[..after.len() - 1], before[..before.len() - 1]);
    assert_ne!(after.last(), before.last());
    let (_keep, rootfs) = umoci_unpack(kiln.store(), "localhost/persisted:latest");
    let bundle = std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(bundle.contains(&pem_marker(&ca2)) && !bundle.contains(&pem_marker(&ca)), "{bundle}");
    // The same CAs again give the same layer: the CA layer is deterministic.
    kiln.ok(&["ca-update", "localhost/persisted", "--ca-cert", &ca2.to_string_lossy()]);
    assert_eq!(layer_digests(&name), after);
    build(&kiln, &ws, "plain", &[]);
    let run = kiln.fails(&["ca-update", "localhost/plain", "--ca-cert", &ca2.to_string_lossy()]);
    assert!(run.stderr.contains("has no CA layer") && run.stderr.contains("--ca-persist"), "{}", run.stderr);
}

#[test]
fn kilns_own_downloads_trust_the_company_ca() {
    let kiln = Kiln::new();
    let (Some(registry), Some(pki)) = (Registry::with_tls(), Pki::new("kiln-test-download-ca")) else { return };
    busybox_base(&kiln);
    let registry_ca = registry.ca.clone().unwrap().to_string_lossy().into_owned();
    let image = registry.name("base/busybox:1");
    kiln.ok(&["tag", "localhost/busybox:test", &image]);
    kiln.ok(&["push", &image, "--ca-file", &registry_ca]);
    let packages = tempfile::tempdir().unwrap();
    wheel(packages.path(), "kilnprobe", "1.0", "downloaded");
    let Some(index) = pypiserver(&pki, packages.path()) else { return };
    let ws = Workspace::new();
    ws.dockerfile(&format!(
        "FROM {image}\nADD https://127.0.0.1:{}/packages/kilnprobe-1.0-py3-none-any.whl /probe.whl\n",
        index.port
    ));
    let fresh = Kiln::new();
    let ctx = ws.path().to_string_lossy().into_owned();
    let untrusted = fresh.fails(&["build", "--ca-cert", &pki.ca.to_string_lossy(), &ctx]);
    assert!(untrusted.stderr.contains(&registry.addr), "the registry is not trusted yet: {}", untrusted.stderr);
    // Both CAs as company CAs: the registry's and the package index's.
    let bundle = tempfile::NamedTempFile::new().unwrap();
    let both = [std::fs::read_to_string(&registry_ca).unwrap(), std::fs::read_to_string(&pki.ca).unwrap()].concat();
    std::fs::write(bundle.path(), both).unwrap();
    let run = build(&fresh, &ws, "downloaded", &["--ca-cert", &bundle.path().to_string_lossy()]);
    assert_eq!(run.code, 0);
    let (_keep, rootfs) = umoci_unpack(fresh.store(), "localhost/downloaded:latest");
    assert!(rootfs.join("probe.whl").is_file());
}

#[test]
fn kiln_config_prints_each_value_with_its_origin() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("kiln.toml");
    std::fs::write(
        &file,
        "[trust]\nca-certs = [\"company.pem\"]\n[nexus]\nurl = \"https://nexus.example.test\"\ndnf = false\n\
         [network]\nmode = \"proxy-only\"\n",
    )
    .unwrap();
    let kiln = Kiln::new();
    let out = kiln.ok(&["config", "--config", &file.to_string_lossy(), "--allow-host", "github.com"]);
    let file_text = file.display().to_string();
    let line =
        |key: &str| out.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("{key} in {out}")).to_string();
    assert!(line("url =").contains("https://nexus.example.test") && line("url =").ends_with(&file_text));
    assert!(line("ca-certs =").contains(&t.path().join("company.pem").display().to_string()));
    assert!(line("dnf =").contains("enabled = false") && line("dnf =").contains(&format!("enabled: {file_text}")));
    assert!(line("allow-hosts =").ends_with("# --allow-host"));
    assert!(line("persist =").ends_with("# default"));
    let bad = t.path().join("bad.toml");
    std::fs::write(&bad, "[network]\nmdoe = \"none\"\n").unwrap();
    let run = kiln.fails(&["config", "--config", &bad.to_string_lossy()]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("bad.toml") && run.stderr.contains("mdoe"), "{}", run.stderr);
}
