//! `kiln bake`: the BuildConfig samples (testdata/bake) built in dependency order against a real
//! registry, rebuilt when nothing changed and when a base changed, retried through a registry that fails
//! transiently, stopped at deadlines, and the manifests for a cluster checked by real validators.

use std::path::{Path, PathBuf};

use crate::harness::http::FlakyProxy;
use crate::harness::{Kiln, Registry, Workspace, busybox_workspace, require, tool, validator};

const GIT: &str = "https://git.example.com/platform/images.git";

/// The samples copied into a scratch directory (a base change must not touch the repository).
fn samples() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/bake");
    tool("cp", &["-a", &format!("{}/.", from.display()), &dir.path().to_string_lossy()]);
    dir
}

/// busybox pushed to `registry` as `kiln-test/busybox:latest` from another store.
fn push_busybox(registry: &Registry) -> String {
    let name = registry.name("kiln-test/busybox:latest");
    Kiln::new().build(&busybox_workspace(), &name, &["--push", "--tls-verify=false"]);
    name
}

/// Runs `kiln bake` with a report; returns the run and the report.
fn bake(kiln: &Kiln, args: &[&str]) -> (crate::harness::Run, serde_json::Value) {
    let report = tempfile::NamedTempFile::new().expect("temp file");
    let path = report.path().to_string_lossy().into_owned();
    let mut all = vec!["bake", "--report", &path];
    all.extend_from_slice(args);
    let run = kiln.run(&all);
    let text = std::fs::read_to_string(report.path()).unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (run, json)
}

/// `name → status` from a report.
fn statuses(report: &serde_json::Value) -> Vec<(String, String)> {
    report["builds"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| (b["name"].as_str().unwrap_or("").to_string(), b["status"].as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The rootfs of `name` in `kiln`'s store, unpacked by umoci.
fn unpack(kiln: &Kiln, name: &str) -> (tempfile::TempDir, tempfile::TempDir, PathBuf) {
    let layout = tempfile::tempdir().expect("temp dir");
    kiln.ok(&["push", name, &format!("oci:{}:img", layout.path().display())]);
    let (keep, rootfs) = crate::harness::umoci_unpack(layout.path(), "img");
    (layout, keep, rootfs)
}

#[test]
fn bake_builds_the_samples_then_rebuilds_exactly_what_a_base_change_touches() {
    if !require("umoci") || !require("skopeo") {
        return;
    }
    let Some(registry) = Registry::start() else { return };
    let busybox = push_busybox(&registry);
    let dir = samples();
    let src = dir.path().join("src");
    let git = format!("{GIT}={}", src.display());
    let base = format!("BASE_IMAGE={busybox}");
    let input = dir.path().to_string_lossy().into_owned();
    let args = ["-j", "2", "--git-source", &git, "--build-arg", &base, "--tls-verify=false", &input];
    let kiln = Kiln::new();

    let (run, report) = bake(&kiln, &args);
    assert_eq!(run.code, 0, "bake failed:\n{}\n{}", run.stdout, run.stderr);
    let all = statuses(&report);
    assert_eq!(all.len(), 11, "{all:?}");
    assert!(all.iter().all(|(_, s)| s == "built"), "{all:?}");
    // Dependencies first: every build comes after what it needs.
    let position = |n: &str| all.iter().position(|(name, _)| name == n).unwrap();
    assert!(position("ubi-base") < position("python-base") && position("python-base") < position("python-a"));
    assert!(position("go-toolset") < position("go-a"));
    assert!(run.stdout.contains("11 builds: 11 ok, 0 not"), "{}", run.stdout);
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        assert!(run.stderr.contains("warning: builds run without their cpu/memory limits"), "{}", run.stderr);
    }
    // Ignored BuildConfig fields are reported once.
    assert_eq!(run.stderr.matches("spec.runPolicy").count(), 1, "{}", run.stderr);

    // OpenShift's rule: python-b's `from` replaced the base of its LAST stage (the first is scratch).
    let (_l, _k, rootfs) = unpack(&kiln, "localhost/platform/python-b:latest");
    let listing = std::fs::read_to_string(rootfs.join("opt/app-root/static.list")).unwrap();
    assert_eq!(listing, "index.html\nsite.css\n");
    assert!(rootfs.join("etc/redhat-release").is_file(), "ubi-base is under python-base");
    // Docker strategy env is set after FROM; buildArgs reach the build; imageLabels label the image.
    let (_l, _k, rootfs) = unpack(&kiln, "localhost/platform/python-a:latest");
    let src_dir = rootfs.join("opt/app-root/src");
    assert_eq!(std::fs::read_to_string(src_dir.join("VERSION")).unwrap(), "1.4.2\n");
    let index = std::fs::read_to_string(src_dir.join("pip-index.txt")).unwrap();
    assert_eq!(index, "pip index: https://nexus.example.com/repository/pypi/simple\n");
    assert!(rootfs.join("opt/app-root/lib/flask").is_dir());
    let config = crate::harness::skopeo_config(&kiln.oci_ref("localhost/platform/python-a:latest"));
    assert_eq!(config["config"]["Labels"]["io.example.team"], "platform");
    let (_l, _k, rootfs) = unpack(&kiln, "localhost/platform/go-b:2.0");
    assert!(rootfs.join("usr/local/bin/go-b").is_file());

    // Nothing changed: every build is up to date.
    let (run, report) = bake(&kiln, &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let all = statuses(&report);
    assert!(all.iter().all(|(_, s)| s == "up-to-date"), "{all:?}");

    // The Python base changes (ImageChange): it and exactly the builds below it are rebuilt.
    let python3 = src.join("python-base/python3");
    let mut text = std::fs::read_to_string(&python3).unwrap();
    text.push_str("# patched\n");
    std::fs::write(&python3, text).unwrap();
    let (run, report) = bake(&kiln, &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for (name, status) in statuses(&report) {
        let expected =
            if ["python-base", "python-a", "python-b"].contains(&name.as_str()) { "built" } else { "up-to-date" };
        assert_eq!(status, expected, "{name}");
    }
}

/// A one-build native file whose base comes from `base`.
fn native_set(base: &str, run: &str, extra: &str) -> Workspace {
    let ws = Workspace::new();
    ws.file("kiln-bake.toml", format!("[target.app]\ncontext = \"app\"\n{extra}\n"));
    ws.file("app/Dockerfile", format!("FROM {base}\nRUN {run}\n"));
    ws
}

#[test]
fn transient_registry_failures_are_retried_and_reported() {
    let Some(registry) = Registry::start() else { return };
    push_busybox(&registry);
    // More 503s in a row than one build's registry client retries: the first attempt fails.
    let proxy = FlakyProxy::start(&registry.addr, 6);
    let base = format!("{}/kiln-test/busybox:latest", proxy.addr);
    let ws = native_set(&base, "echo ok > /ok", "");
    let input = ws.path().to_string_lossy().into_owned();
    let kiln = Kiln::new();
    let (run, report) = bake(&kiln, &["--retries", "2", "--retry-backoff", "0.1", "--tls-verify=false", &input]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let attempts = report["builds"][0]["attempts"].as_array().unwrap().clone();
    assert!(attempts.len() >= 2, "{report}");
    let why = attempts[0]["retried_because"].as_str().unwrap();
    assert!(why.contains("answered 503"), "{why}");
    assert!(run.stdout.contains("app: attempt 1 retried: registry"), "{}", run.stdout);
    assert!(proxy.seen.load(std::sync::atomic::Ordering::SeqCst) > 6);

    // Without retries the same failure is final, and says so.
    let proxy = FlakyProxy::start(&registry.addr, 6);
    let ws = native_set(&format!("{}/kiln-test/busybox:latest", proxy.addr), "true", "");
    let input = ws.path().to_string_lossy().into_owned();
    let (run, report) = bake(&Kiln::new(), &["--retries", "0", "--tls-verify=false", &input]);
    assert_eq!(run.code, 1);
    assert_eq!(report["builds"][0]["status"], "failed");
    assert!(report["builds"][0]["error"].as_str().unwrap().contains("503"), "{report}");
}

#[test]
fn a_failing_run_is_not_retried_and_skips_its_dependents() {
    let Some(registry) = Registry::start() else { return };
    let busybox = push_busybox(&registry);
    let ws = Workspace::new();
    ws.file(
        "kiln-bake.toml",
        "[target.base]\ncontext = \"base\"\n[target.app]\ncontext = \"app\"\nfrom = \"target:base\"\n\
         [target.other]\ncontext = \"other\"\n",
    );
    ws.file("base/Dockerfile", format!("FROM {busybox}\nRUN echo 'Connection reset by peer' && exit 3\n"));
    ws.file("app/Dockerfile", "FROM scratch\n");
    ws.file("other/Dockerfile", format!("FROM {busybox}\nRUN true\n"));
    let input = ws.path().to_string_lossy().into_owned();
    let (run, report) = bake(&Kiln::new(), &["--retries", "3", "--retry-backoff", "0.1", "--tls-verify=false", &input]);
    assert_eq!(run.code, 1);
    let all = statuses(&report);
    assert!(all.contains(&("base".into(), "failed".into())), "{all:?}");
    assert!(all.contains(&("app".into(), "skipped".into())), "{all:?}");
    assert!(all.contains(&("other".into(), "built".into())), "{all:?}");
    let base = report["builds"].as_array().unwrap().iter().find(|b| b["name"] == "base").unwrap();
    assert_eq!(base["attempts"].as_array().unwrap().len(), 1, "a failing RUN is final: {base}");
    assert!(run.stdout.contains("app: needs base, which failed"), "{}", run.stdout);
}

#[test]
fn deadlines_stop_the_build_and_leave_the_store_usable() {
    let Some(registry) = Registry::start() else { return };
    let busybox = push_busybox(&registry);
    let ws = native_set(&busybox, "sleep 60", "deadline = 2");
    let input = ws.path().to_string_lossy().into_owned();
    let kiln = Kiln::new();
    let started = std::time::Instant::now();
    let (run, report) = bake(&kiln, &["--tls-verify=false", &input]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "the build was not stopped");
    assert_eq!(report["builds"][0]["status"], "timed-out");
    assert!(report["builds"][0]["error"].as_str().unwrap().contains("deadline of 2s exceeded"), "{report}");
    // The store is whole: the next build on it works.
    let next = native_set(&busybox, "true", "");
    let input = next.path().to_string_lossy().into_owned();
    let (run, _) = bake(&kiln, &["--tls-verify=false", &input]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

fn build_config(name: &str, from: &str, output: &str) -> String {
    format!(
        "---\nkind: BuildConfig\nmetadata: {{name: {name}}}\nspec:\n  strategy:\n    dockerStrategy:\n      \
         from: {{kind: ImageStreamTag, name: \"{from}\"}}\n  output:\n    to: {{kind: ImageStreamTag, name: \"{output}\"}}\n"
    )
}

#[test]
fn cycles_and_missing_producers_are_errors_naming_the_builds() {
    let ws = Workspace::new();
    ws.file("Dockerfile", "FROM scratch\n");
    let cycle = [build_config("a", "b:latest", "a:latest"), build_config("b", "a:latest", "b:latest")].concat();
    ws.file("set.yaml", cycle);
    let input = ws.path().join("set.yaml").to_string_lossy().into_owned();
    let run = Kiln::new().fails(&["bake", "--dry-run", &input]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("dependency cycle: a needs b needs a"), "{}", run.stderr);

    ws.file("missing.yaml", build_config("app", "python-base:3.11", "app:latest"));
    let input = ws.path().join("missing.yaml").to_string_lossy().into_owned();
    let run = Kiln::new().fails(&["bake", "--dry-run", &input]);
    assert!(
        run.stderr.contains("build app needs ImageStreamTag python-base:3.11, which no build in the set produces"),
        "{}",
        run.stderr
    );
}

#[test]
fn dry_run_prints_the_graph_and_target_selects_what_a_build_needs() {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/bake");
    let git = format!("{GIT}={}", samples.join("src").display());
    let input = samples.to_string_lossy().into_owned();
    let out = Kiln::new().ok(&["bake", "--dry-run", "--git-source", &git, "--target", "python-a", &input]);
    assert!(out.starts_with("3 builds in 3 levels\n"), "{out}");
    assert!(out.contains("order: ubi-base, python-base, python-a\n"), "{out}");
    assert!(out.contains("needs python-base (from, ImageChange)"), "{out}");
}

#[test]
fn emitted_manifests_pass_kubernetes_and_tekton_validators() {
    let (Some(k8s), Some(tekton)) = (validator("kubernetes-validate"), validator("tekton-lint")) else { return };
    let git = format!("{GIT}=testdata/bake/src");
    let dir = tempfile::tempdir().unwrap();
    // Each --pod-security profile, with what it must say in the pods' securityContext.
    for (profile, says) in [
        ("openshift", &["type: RuntimeDefault"][..]),
        ("kubernetes", &["type: Localhost", "localhostProfile: kiln/seccomp.json", "runAsUser: 1000680000"][..]),
        ("kubernetes-unconfined", &["type: Unconfined", "appArmorProfile:", "runAsUser: 1000680000"][..]),
    ] {
        let jobs = dir.path().join(format!("jobs-{profile}.yaml"));
        let pipeline = dir.path().join(format!("pipeline-{profile}.yaml"));
        for (kind, file) in [("job", &jobs), ("tekton", &pipeline)] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(["bake", "--emit", kind, "-o", &file.to_string_lossy(), "--git-source", &git])
                .args(["--pod-security", profile, "--image-registry", "registry.example.com/platform"])
                .args(["--cache-to", "registry.example.com/platform/cache", "testdata/bake"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let out = tool(&k8s.to_string_lossy(), &["--strict", &jobs.to_string_lossy()]);
        assert_eq!(out.matches("passed for resource job/").count(), 11, "{profile}: {out}");
        tool(&tekton.to_string_lossy(), &["--color=false", "--max-warnings", "0", &pipeline.to_string_lossy()]);
        let (jobs, text) = (std::fs::read_to_string(&jobs).unwrap(), std::fs::read_to_string(&pipeline).unwrap());
        for needle in says.iter().chain(&["allowPrivilegeEscalation: false", "runAsNonRoot: true"]) {
            assert!(jobs.contains(needle), "{profile}: {needle:?} missing in:\n{jobs}");
            assert!(text.contains(needle), "{profile}: {needle:?} missing in:\n{text}");
        }
        // The pods run kiln's image from the registry they push to, unless --kiln-image names another.
        let image = format!("image: registry.example.com/platform/kiln:{}", env!("CARGO_PKG_VERSION"));
        assert!(jobs.contains(&image) && text.contains(&image), "{profile}: {image:?} missing");
    }
    // What the pipeline says: edges from the graph, retries, timeouts, limits.
    let text = std::fs::read_to_string(dir.path().join("pipeline-openshift.yaml")).unwrap();
    for needle in [
        "runAfter:\n    - python-base",
        "retries: 2",
        "timeout: 3600s",
        "pipelineTaskName: python-a",
        "- --cache-to\n      - registry.example.com/platform/cache",
        "- https://git.example.com/platform/images.git=testdata/bake/src",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }
}

#[test]
fn emit_without_a_kiln_image_or_registry_says_how_to_get_one() {
    let git = format!("{GIT}=testdata/bake/src");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["bake", "--emit", "job", "--git-source", &git, "testdata/bake"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("make pod-image") && stderr.contains("--kiln-image"), "{stderr}");
    assert!(out.stdout.is_empty(), "no manifests with a made-up image");
}

#[test]
fn under_a_policy_the_sets_own_images_are_allowed_bases() {
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "localhost/busybox:policy", &[]);
    // An image the set does not build, from a repository the policy does not allow.
    let outside = Workspace::new();
    outside.dockerfile("FROM localhost/busybox:policy\nUSER 1001\n");
    kiln.build(&outside, "localhost/elsewhere/base:1", &[]);
    let ws = Workspace::new();
    ws.file(
        "kiln-bake.toml",
        "[target.base]\ncontext = \"base\"\ntags = [\"localhost/team/base:1\"]\n\
         [target.app]\ncontext = \"app\"\ntags = [\"localhost/team/app:1\"]\n\
         [target.stray]\ncontext = \"stray\"\ntags = [\"localhost/team/stray:1\"]\n",
    );
    ws.file("base/Dockerfile", "FROM localhost/busybox:policy\nRUN echo base > /base\nUSER 1001\n");
    ws.file("app/Dockerfile", "FROM localhost/team/base:1\nRUN echo app > /tmp/app\n");
    ws.file("stray/Dockerfile", "FROM localhost/elsewhere/base:1\nRUN echo stray > /tmp/stray\n");
    ws.file("policy.toml", "[base]\nallow = [\"localhost/busybox\"]\n");
    let policy = ws.path().join("policy.toml").to_string_lossy().into_owned();
    let logs = tempfile::tempdir().unwrap();
    let log_dir = logs.path().to_string_lossy().into_owned();
    let input = ws.path().to_string_lossy().into_owned();
    let (run, report) = bake(&kiln, &["--policy", &policy, "--log-dir", &log_dir, "--retries", "0", &input]);
    assert_eq!(run.code, 1, "stray breaks the policy:\n{}\n{}", run.stdout, run.stderr);
    let all = statuses(&report);
    for (name, status) in [("base", "built"), ("app", "built"), ("stray", "failed")] {
        assert!(all.contains(&(name.into(), status.into())), "{name}: {all:?}");
    }
    let app = std::fs::read_to_string(logs.path().join("app.log")).unwrap();
    assert!(!app.contains("base-not-allowed"), "{app}");
    let stray = std::fs::read_to_string(logs.path().join("stray.log")).unwrap();
    assert!(stray.contains("base-not-allowed") && stray.contains("localhost/elsewhere/base:1"), "{stray}");
}

#[test]
fn pull_always_refreshes_outside_bases_but_takes_the_sets_own_from_the_store() {
    let Some(registry) = Registry::start() else { return };
    let busybox = push_busybox(&registry);
    let ws = Workspace::new();
    // The set's base is tagged in the registry but never pushed: pulling it would fail.
    let base = registry.name("team/unpushed-base:1");
    ws.file(
        "kiln-bake.toml",
        format!(
            "[target.base]\ncontext = \"base\"\ntags = [\"{base}\"]\n\
             [target.app]\ncontext = \"app\"\nfrom = \"target:base\"\ntags = [\"localhost/team/app:1\"]\n"
        ),
    );
    ws.file("base/Dockerfile", format!("FROM {busybox}\nRUN echo base > /base\n"));
    ws.file("app/Dockerfile", format!("FROM {base}\nRUN cat /base > /app\n"));
    let input = ws.path().to_string_lossy().into_owned();
    let kiln = Kiln::new();
    let (run, report) = bake(&kiln, &["--pull=always", "--tls-verify=false", "--retries", "0", &input]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let all = statuses(&report);
    assert!(all.contains(&("app".into(), "built".into())), "{all:?}");
    let (_keep, _store, rootfs) = unpack(&kiln, "localhost/team/app:1");
    assert_eq!(std::fs::read_to_string(rootfs.join("app")).unwrap(), "base\n");
}
