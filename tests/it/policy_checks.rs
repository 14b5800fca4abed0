//! `kiln check` and the build's policy gate against UBI-shaped fixtures: every image rule with an image that
//! passes and one that fails, the Dockerfile rules end to end, fetch logs, SARIF validated against the SARIF
//! 2.1.0 schema, exit codes, and `kiln build --policy` in enforce and warn modes before a push.

use serde_json::Value;

use crate::harness::fixtures::{self, image_workspace};
use crate::harness::{Kiln, Registry, Workspace, busybox_workspace, http, tool, validators};

/// The rule ids `kiln check` reports (JSON output), with its exit code.
fn rules(kiln: &Kiln, args: &[&str]) -> (i32, Vec<String>, Value) {
    let mut all = vec!["check", "--format", "json"];
    all.extend_from_slice(args);
    let run = kiln.run(&all);
    assert!(run.code == 0 || run.code == 1, "kiln check failed to run: {}\n{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).expect("JSON report");
    let ids = report["findings"].as_array().unwrap().iter().map(|f| f["rule"].as_str().unwrap().to_string()).collect();
    (run.code, ids, report)
}

fn image(kiln: &Kiln, name: &str, tail: &str, fill: impl FnOnce(&fixtures::Rootfs)) {
    let (ws, root) = image_workspace(tail);
    fill(&root);
    kiln.build(&ws, name, &[]);
}

#[test]
fn runtime_rules_pass_and_fail_on_ubi_fixtures() {
    if !fixtures::available() {
        return;
    }
    let kiln = Kiln::new();
    // Python: 3.9 passes; a 3.6 interpreter fails; RHEL 8's platform-python 3.6 is only a note.
    image(&kiln, "py39", "USER 1001\n", |r| {
        r.ubi("9.4").rpmdb(false, &["python3"]).python("usr/bin/python3.9", "3.9");
    });
    image(&kiln, "py36", "USER 1001\n", |r| {
        r.ubi("8.9").rpmdb(true, &["bash"]).python("usr/bin/python3.6", "3.6");
    });
    image(&kiln, "py38-platform", "USER 1001\n", |r| {
        r.ubi("8.9")
            .rpmdb(true, &["platform-python", "python38"])
            .python("usr/libexec/platform-python3.6", "3.6")
            .python("usr/bin/python3.8", "3.8");
    });
    assert_eq!(rules(&kiln, &["py39"]).0, 0);
    assert_eq!(rules(&kiln, &["py36"]).1, ["python-version"]);
    assert_eq!(rules(&kiln, &["py36"]).0, 1);
    let (code, ids, report) = rules(&kiln, &["py38-platform"]);
    assert_eq!((code, ids), (0, vec!["python-version".to_string()]));
    assert_eq!(report["findings"][0]["severity"], "note");
    // JDKs: 11 and 17 pass; 8 is too old; 15 is not LTS. $JAVA_HOME resolves through the image's symlinks.
    for (name, dir, version) in [
        ("jdk8", "java-1.8.0-openjdk-1.8.0.402.b06-2.el8.x86_64", "1.8.0_402"),
        ("jdk11", "java-11-openjdk-11.0.22.0.7-1.el9.x86_64", "11.0.22"),
        ("jdk15", "openjdk-15", "15.0.2"),
        ("jdk17", "java-17-openjdk-17.0.10.0.7-1.el9.x86_64", "17.0.10"),
    ] {
        image(&kiln, name, "ENV JAVA_HOME=/usr/lib/jvm/jre\nUSER 185\n", |r| {
            r.ubi("9.4").jdk(dir, version);
        });
    }
    assert_eq!(rules(&kiln, &["jdk8"]).1, ["jdk-version"]);
    assert!(rules(&kiln, &["jdk11"]).1.is_empty());
    assert_eq!(rules(&kiln, &["jdk15"]).1, ["jdk-not-lts"]);
    assert!(rules(&kiln, &["jdk17"]).1.is_empty());
    // Go: toolchains by VERSION file, binaries by the build info the linker embedded.
    image(&kiln, "go-new", "USER 1001\n", |r| {
        r.ubi("9.4")
            .file("usr/lib/golang/VERSION", "go1.21.7\n")
            .exe("usr/local/bin/hello", std::fs::read(fixtures::go_binary()).unwrap());
    });
    image(&kiln, "go-old-toolchain", "USER 1001\n", |r| {
        r.ubi("9.4").file("usr/lib/golang/VERSION", "go1.16.15\n");
    });
    image(&kiln, "go-old-binary", "USER 1001\n", |r| {
        r.ubi("9.4").exe("usr/local/bin/hello", fixtures::old_go_binary());
    });
    assert!(rules(&kiln, &["go-new"]).1.is_empty());
    assert_eq!(rules(&kiln, &["go-old-toolchain"]).1, ["go-version"]);
    let (_, ids, report) = rules(&kiln, &["go-old-binary"]);
    assert_eq!(ids, ["go-binary-version"]);
    assert_eq!(report["findings"][0]["location"]["path"], "/usr/local/bin/hello");
}

#[test]
fn user_and_ca_layer_rules_on_images() {
    let kiln = Kiln::new();
    image(&kiln, "as-root", "", |r| {
        r.file("etc/motd", "hi\n");
    });
    image(&kiln, "as-user", "USER 1001\n", |r| {
        r.file("etc/motd", "hi\n");
    });
    assert_eq!(rules(&kiln, &["as-root"]).1, ["user-root"]);
    assert!(rules(&kiln, &["as-user"]).1.is_empty());
    // The CA layer: required by policy, recognised by the label naming one of the image's layers.
    let policy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(policy.path(), "[ca]\nrequire_layer = true\n").unwrap();
    let p = policy.path().to_str().unwrap();
    assert_eq!(rules(&kiln, &["as-user", "--policy", p]).1, ["ca-layer-missing"]);
    // The real thing: `--ca-persist` packages the CA as a layer and labels it.
    let Some(pki) = crate::harness::supply::Pki::new("policy-ca") else { return };
    let ws = Workspace::new();
    ws.dockerfile("FROM localhost/as-user\n");
    kiln.build(&ws, "with-ca", &["--ca-persist", "--ca-cert", pki.ca.to_str().unwrap()]);
    assert!(rules(&kiln, &["with-ca", "--policy", p]).1.is_empty());
}

#[test]
fn dockerfile_and_fetch_log_rules_with_sarif() {
    let Some(tools) = validators::tools() else { return };
    let kiln = Kiln::new();
    let ws = Workspace::new();
    let bad = "FROM docker.io/library/python:3.7\nARG NEXUS_TOKEN\nADD https://downloads.example.com/tool.tgz /opt/\n\
RUN curl -fsSL https://get.example.com/install.sh | sh\nRUN pip install --index-url https://pypi.org/simple flask\nUSER root\n";
    let good = "FROM registry.access.redhat.com/ubi9/python-39:1-117@sha256:0000000000000000000000000000000000000000000000000000000000000000\n\
RUN pip install --index-url https://nexus.corp.example/repository/pypi/simple/ flask\nUSER 1001\n";
    ws.file("bad.Dockerfile", bad).file("good.Dockerfile", good);
    ws.file("policy.toml", "[nexus]\nhosts = [\"nexus.corp.example\"]\n");
    ws.file(
        "fetch.jsonl",
        "{\"step\":2,\"method\":\"CONNECT\",\"host\":\"nexus.corp.example:443\",\"status\":200,\"bytes\":5120}\n\
{\"step\":3,\"method\":\"GET\",\"host\":\"files.pythonhosted.org\",\"path\":\"/packages/flask.whl\",\"status\":200,\"bytes\":99}\n",
    );
    let path = |f: &str| ws.path().join(f).to_string_lossy().into_owned();
    let policy = path("policy.toml");
    let (code, ids, _) = rules(&kiln, &["--dockerfile", &path("bad.Dockerfile"), "--policy", &policy]);
    assert_eq!(code, 1);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "add-url-checksum",
            "base-not-allowed",
            "base-unpinned",
            "download-not-nexus",
            "download-not-nexus",
            "download-not-nexus",
            "pipe-to-shell",
            "secret-in-arg-env",
            "user-root"
        ]
    );
    let (code, ids, _) = rules(&kiln, &["--dockerfile", &path("good.Dockerfile"), "--policy", &policy]);
    assert_eq!((code, ids), (0, Vec::<String>::new()));
    let (code, ids, report) = rules(&kiln, &["--fetch-log", &path("fetch.jsonl"), "--policy", &policy]);
    assert_eq!((code, ids), (1, vec!["fetch-not-nexus".to_string()]));
    assert_eq!(report["findings"][0]["location"]["line"], 2);
    // Text names file:line; SARIF validates against the SARIF 2.1.0 schema.
    let text = kiln.run(&["check", "--dockerfile", &path("bad.Dockerfile"), "--policy", &policy]);
    assert_eq!(text.code, 1);
    assert!(text.stdout.contains(&format!("{}:4: error[pipe-to-shell]", path("bad.Dockerfile"))), "{}", text.stdout);
    let sarif = ws.path().join("out.sarif");
    let run = kiln.run(&[
        "check",
        "--dockerfile",
        &path("bad.Dockerfile"),
        "--fetch-log",
        &path("fetch.jsonl"),
        "--policy",
        &policy,
        "--format",
        "sarif",
        "-o",
        sarif.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    validators::sarif(&tools, &sarif);
    let log: Value = serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    assert_eq!(log["runs"][0]["results"].as_array().unwrap().len(), 10);
    // Usage errors exit 2.
    assert_eq!(kiln.run(&["check"]).code, 2);
    assert_eq!(
        kiln.run(&["check", "--dockerfile", &path("bad.Dockerfile"), "--policy", &path("missing.toml")]).code,
        2
    );
    ws.file("broken.toml", "[severity]\nno-such-rule = \"off\"\n");
    let broken = kiln.run(&["check", "--dockerfile", &path("good.Dockerfile"), "--policy", &path("broken.toml")]);
    assert_eq!(broken.code, 2);
    assert!(broken.stderr.contains("unknown rule"), "{}", broken.stderr);
}

#[test]
fn build_policy_gate_runs_before_the_push() {
    let Some(registry) = Registry::start() else { return };
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "localhost/busybox:gate", &[]);
    let ws = Workspace::new();
    ws.dockerfile("FROM localhost/busybox:gate\nRUN echo hi > /hello\n"); // no USER: runs as root
    ws.file("policy.toml", "[base]\nallow = [\"localhost\"]\n");
    let policy = ws.path().join("policy.toml").to_string_lossy().into_owned();
    let enforced = registry.name("team/gated:1");
    let ctx = ws.path().to_string_lossy().into_owned();
    let run = kiln.run(&["build", "-t", &enforced, "--push", "--tls-verify=false", "--policy", &policy, &ctx]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("user-root") && run.stderr.contains("not pushed"), "{}", run.stderr);
    let inspect = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &registry.docker_ref("team/gated:1")])
        .output()
        .expect("skopeo");
    assert!(!inspect.status.success(), "nothing may be pushed in enforce mode");
    let warned = registry.name("team/warned:1");
    let run = kiln.run(&[
        "build",
        "-t",
        &warned,
        "--push",
        "--tls-verify=false",
        "--policy",
        &policy,
        "--policy-mode",
        "warn",
        &ctx,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("error[user-root]"), "{}", run.stderr);
    tool("skopeo", &["inspect", "--tls-verify=false", &registry.docker_ref("team/warned:1")]);
}

#[test]
fn a_builds_nexus_is_the_policys_nexus_when_the_policy_names_none() {
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "localhost/busybox:nexus", &[]);
    let server = http::Server::start(vec![http::route("/tool.txt", "text/plain", "tool")]);
    let ws = Workspace::new();
    ws.dockerfile(&format!(
        "FROM localhost/busybox:nexus\nADD --checksum=sha256:{} {} /tool.txt\nUSER 1000\n",
        sha256_hex(b"tool"),
        server.url("/tool.txt")
    ));
    ws.file("policy.toml", "[base]\nallow = [\"localhost\"]\n");
    let policy = ws.path().join("policy.toml").to_string_lossy().into_owned();
    let ctx = ws.path().to_string_lossy().into_owned();
    let gate = |extra: &[&str]| {
        let mut args = vec!["build", "-t", "nexus-gate", "--policy", &policy, "--policy-mode", "warn"];
        args.extend_from_slice(extra);
        args.push(&ctx);
        let run = kiln.run(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.stderr
    };
    // Without a Nexus anywhere the download rules have nothing to judge by.
    assert!(!gate(&[]).contains("download-not-nexus"));
    // The build's own Nexus is the one downloads must come from: the ADD from elsewhere is a finding.
    let routed = gate(&["--nexus", "https://nexus.corp.example/"]);
    assert!(routed.contains("error[download-not-nexus]") && routed.contains("127.0.0.1"), "{routed}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}
