//! BuildKit's own test assertions, ported as data: every case under `testdata/buildkit-cases/` names the
//! moby/buildkit test it is written from (frontend/dockerfile/*_test.go) and says what BuildKit asserts
//! about the result. This one test builds each case with kiln against the harness's busybox base — as root,
//! rootless and in chroot mode when a RUN is involved — and checks the image with umoci and skopeo.
//!
//! `KILN_CASES=name,prefix*` runs a subset while working on kiln (never set in CI).

mod case;
mod check;
mod context;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use case::{Build, Loaded, Mode};

use crate::harness::http::{Route, Server};
use crate::harness::{Kiln, Workspace, busybox_workspace, ci, require, rootless, skopeo_config};

/// The cases' directory.
fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/buildkit-cases")
}

#[test]
fn buildkit_cases() {
    if !require("umoci") || !require("skopeo") {
        return;
    }
    let cases = load_cases();
    assert!(!cases.is_empty(), "no cases under {}", cases_dir().display());
    deviations_are_documented(&cases);
    let runs: Vec<(&Loaded, Mode)> = cases.iter().flat_map(|c| c.modes().into_iter().map(move |m| (c, m))).collect();
    let templates: Vec<(Mode, Result<Kiln, String>)> =
        [Mode::Root, Mode::Rootless, Mode::Chroot].into_iter().map(|m| (m, template(m))).collect();
    let next = AtomicUsize::new(0);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    // Builds wait on the disk more than on the CPU: a few at a time even on two cores.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(3, 6);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while let Some((loaded, mode)) = runs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let template = templates.iter().find(|(m, _)| m == mode).map(|(_, t)| t);
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match template {
                        Some(Ok(template)) => run_case(loaded, *mode, template),
                        Some(Err(why)) if !ci() => {
                            eprintln!("skipping {} [{}]: {why}", loaded.name, mode.name());
                            Ok(())
                        }
                        Some(Err(why)) => Err(vec![why.clone()]),
                        None => Err(vec!["no template store".to_string()]),
                    }))
                    .unwrap_or_else(|panic| Err(vec![format!("the check panicked: {}", panic_text(&panic))]));
                    if let Err(problems) = outcome {
                        let text = format!(
                            "{} [{}] ({}):\n  {}",
                            loaded.name,
                            mode.name(),
                            loaded.case.source,
                            problems.join("\n  ")
                        );
                        eprintln!("FAILED {text}");
                        failures.lock().unwrap_or_else(|e| e.into_inner()).push(text);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "buildkit cases: {} cases, {} runs, {} passed, {} failed",
        cases.len(),
        runs.len(),
        runs.len() - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{} of {} case runs failed:\n\n{}", failures.len(), runs.len(), failures.join("\n\n"));
}

/// Every case directory (or those `KILN_CASES` names), sorted by name; a malformed case is a failure.
fn load_cases() -> Vec<Loaded> {
    let filter: Vec<String> = std::env::var("KILN_CASES")
        .ok()
        .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    assert!(!ci() || filter.is_empty(), "KILN_CASES must not be set under CI=true");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("testdata/buildkit-cases")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let wanted = |name: &str| {
        filter.is_empty()
            || filter.iter().any(|f| match f.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == f,
            })
    };
    dirs.iter()
        .filter(|d| wanted(&d.file_name().unwrap_or_default().to_string_lossy()))
        .map(|d| Loaded::read(d).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// Every case where kiln deliberately differs is named in docs/ARCHITECTURE.md, with its reason there.
fn deviations_are_documented(cases: &[Loaded]) {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ARCHITECTURE.md"))
        .expect("docs/ARCHITECTURE.md");
    for case in cases.iter().filter(|c| c.case.deviation.as_deref().is_some_and(|d| !d.is_empty())) {
        assert!(
            doc.contains(&format!("`{}`", case.name)),
            "case {} deviates from BuildKit ({}) but docs/ARCHITECTURE.md does not name it",
            case.name,
            case.case.deviation.as_deref().unwrap_or_default()
        );
    }
}

/// kiln for `mode`, or why it cannot be had here (a failure under CI).
fn kiln_for(mode: Mode) -> Result<Kiln, String> {
    let root = check::owners_readable();
    match mode {
        Mode::Root => Ok(Kiln::new()),
        Mode::Rootless => rootless::kiln().ok_or_else(|| "no unprivileged user with a sub-id range".to_string()),
        Mode::Chroot if root => Ok(Kiln::without_mount_rights()),
        Mode::Chroot => Err("chroot mode without mount rights needs root (setpriv)".to_string()),
    }
}

/// A store holding the harness's busybox image as `busybox`, built once per mode; each case starts from
/// a copy of it.
fn template(mode: Mode) -> Result<Kiln, String> {
    let kiln = kiln_for(mode)?;
    let base = busybox_workspace();
    if mode == Mode::Rootless && check::owners_readable() {
        rootless::give(base.path());
    }
    let run = kiln.run(&["build", "-q", "-t", "busybox", &base.path().to_string_lossy()]);
    if run.code != 0 {
        return Err(format!("building the busybox base failed:\n{}", run.stderr));
    }
    Ok(kiln)
}

/// Builds every build of the case in `mode` and checks it; the problems found, if any.
fn run_case(loaded: &Loaded, mode: Mode, template: &Kiln) -> Result<(), Vec<String>> {
    let kiln = kiln_for(mode).map_err(|e| vec![e])?;
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", template.store().display()))
        .arg(kiln.store())
        .status()
        .map_err(|e| vec![format!("cp: {e}")])?;
    if !copied.success() {
        return Err(vec!["copying the template store failed".to_string()]);
    }
    let rootless = mode == Mode::Rootless && check::owners_readable();
    let hand_over = |dir: &Path| {
        if rootless {
            rootless::give(dir);
        }
    };
    hand_over(kiln.store());
    let server = (!loaded.case.http.is_empty()).then(|| Server::start(routes(loaded)));
    let http = server.as_ref().map(|s| s.url("")).unwrap_or_default();
    let ws = Workspace::new();
    context::materialize(loaded, ws.path(), &http).map_err(|e| vec![e])?;
    let secrets = Workspace::new();
    let mut earlier: Vec<Option<check::Unpacked>> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    for (n, build) in loaded.case.builds.iter().enumerate() {
        context::apply(ws.path(), &build.write).map_err(|e| vec![e])?;
        let args = build_args(build, n, mode, ws.path(), secrets.path(), &http).map_err(|e| vec![e])?;
        hand_over(ws.path());
        hand_over(secrets.path());
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = kiln.run(&arg_refs);
        let prefix = |p: String| format!("build {n}: {p}");
        if run.stderr.contains("panicked") {
            problems.push(prefix(format!("kiln panicked:\n{}", run.stderr)));
        }
        let expected_error = build.error_in.get(mode.name()).unwrap_or(&build.error);
        if !expected_error.is_empty() {
            if run.code == 0 {
                problems.push(prefix(format!("succeeded, expected an error containing {expected_error:?}")));
            }
            for part in expected_error {
                if !run.stderr.contains(part.as_str()) {
                    problems.push(prefix(format!("error does not contain {part:?}:\n{}", tail(&run.stderr))));
                }
            }
            earlier.push(None);
            ids.push(String::new());
            continue;
        }
        if run.code != 0 {
            problems.push(prefix(format!("failed (exit {}):\n{}", run.code, tail(&run.stderr))));
            break;
        }
        let id = run.stdout.lines().last().unwrap_or_default().trim().to_string();
        if let Some(other) = build.same_image_as_build
            && ids.get(other) != Some(&id)
        {
            problems.push(prefix(format!("image {id}, expected build {other}'s ({:?})", ids.get(other))));
        }
        ids.push(id);
        let name = store_name(build);
        let mut found = Vec::new();
        let compared_later = loaded.case.builds[n + 1..]
            .iter()
            .flat_map(|b| &b.files)
            .any(|f| f.equals_build == Some(n) || f.differs_from_build == Some(n));
        let unpacked = if build.files.is_empty() && !compared_later {
            None
        } else {
            match check::unpack(kiln.store(), &name) {
                Ok(unpacked) => Some(unpacked),
                Err(e) => {
                    problems.push(prefix(e));
                    break;
                }
            }
        };
        if let Some(unpacked) = &unpacked {
            let earlier_roots: Vec<Option<PathBuf>> =
                earlier.iter().map(|u| u.as_ref().map(|u| u.rootfs.clone())).collect();
            check::files(build, &unpacked.rootfs, &earlier_roots, &mut found);
        }
        if build.checks_config() {
            let config = skopeo_config(&kiln.oci_ref(&name));
            check::config(build, &config, &mut found);
        }
        problems.extend(found.into_iter().map(prefix));
        earlier.push(unpacked);
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// `kiln build` arguments for build `n`.
fn build_args(
    build: &Build,
    n: usize,
    mode: Mode,
    ws: &Path,
    secrets: &Path,
    http: &str,
) -> Result<Vec<String>, String> {
    let mut args = vec![
        "build".to_string(),
        "-q".to_string(),
        "-t".to_string(),
        build.tag.clone().unwrap_or_else(|| "case".to_string()),
    ];
    // An empty name means no -f: kiln finds the Dockerfile in the context itself.
    let dockerfile = build.dockerfile.as_deref().unwrap_or("Dockerfile");
    if !dockerfile.is_empty() {
        args.push("-f".to_string());
        args.push(ws.join(dockerfile).to_string_lossy().into_owned());
    }
    if mode != Mode::Root || check::owners_readable() {
        args.push(format!("--isolation={}", mode.name()));
    }
    for (k, v) in &build.args {
        args.push(format!("--build-arg={k}={}", v.replace("{{HTTP}}", http)));
    }
    for (k, v) in &build.labels {
        args.push(format!("--label={k}={v}"));
    }
    for (id, value) in &build.secrets {
        let file = secrets.join(format!("{n}-{id}"));
        std::fs::write(&file, value).map_err(|e| e.to_string())?;
        args.push(format!("--secret=id={id},src={}", file.display()));
    }
    if let Some(target) = &build.target {
        args.push(format!("--target={target}"));
    }
    if let Some(platform) = &build.platform {
        args.push(format!("--platform={platform}"));
    }
    if build.no_cache {
        args.push("--no-cache".to_string());
    }
    for stage in &build.no_cache_filter {
        args.push(format!("--no-cache-filter={stage}"));
    }
    args.push(ws.to_string_lossy().into_owned());
    Ok(args)
}

/// The store's name for a build's tag (`case` → `localhost/case:latest`).
fn store_name(build: &Build) -> String {
    let tag = build.tag.clone().unwrap_or_else(|| "case".to_string());
    let has_tag = tag.rsplit('/').next().is_some_and(|last| last.contains(':'));
    let tag = if has_tag { tag } else { format!("{tag}:latest") };
    if tag.contains('/') { tag } else { format!("localhost/{tag}") }
}

fn routes(loaded: &Loaded) -> Vec<Route> {
    loaded
        .case
        .http
        .iter()
        .map(|r| {
            let body = match &r.tar {
                Some(entries) => context::tar_bytes(entries, r.gzip).expect("tar body"),
                None => r.body.clone().into_bytes(),
            };
            let mut route = crate::harness::http::route(&r.path, "application/octet-stream", body);
            if let Some(date) = &r.last_modified {
                route.headers.push(("Last-Modified".to_string(), date.clone()));
            }
            route
        })
        .collect()
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".to_string())
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}
