//! The step cache: what hits, what misses, and that a damaged cache only costs a rebuild.

use std::os::unix::fs::PermissionsExt;

use crate::harness::{Kiln, Workspace, busybox_workspace};

/// Builds and returns (image ID, the instructions reported as CACHED).
fn build(kiln: &Kiln, ws: &Workspace, extra: &[&str]) -> (String, Vec<String>) {
    let ctx = ws.path().to_string_lossy().into_owned();
    let mut args = vec!["build", "-t", "cached:1"];
    args.extend_from_slice(extra);
    args.push(&ctx);
    let run = kiln.run(&args);
    assert_eq!(run.code, 0, "build failed:\n{}", run.stderr);
    let mut cached = Vec::new();
    let mut current = String::new();
    for line in run.stderr.lines() {
        if let Some((_, text)) = line.split_once(": ").filter(|_| line.contains(" STEP ")) {
            current = text.to_string();
        } else if line.contains("CACHED") {
            cached.push(current.clone());
        }
    }
    (run.stdout.lines().last().unwrap_or_default().to_string(), cached)
}

fn setup() -> (Kiln, Workspace) {
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "busybox:test", &[]);
    let ws = Workspace::new();
    ws.file("app/main.txt", "main").file("app/extra.txt", "extra").file("unrelated.txt", "u").dockerfile(
        "FROM localhost/busybox:test\n\
         RUN echo early > /early\n\
         COPY app/main.txt /app/\n\
         WORKDIR /srv\n\
         ARG LATE=1\n\
         RUN echo late=$LATE > /late\n",
    );
    (kiln, ws)
}

#[test]
fn an_unchanged_rebuild_is_all_cache_and_the_same_image() {
    let (kiln, ws) = setup();
    let (first, cached) = build(&kiln, &ws, &[]);
    assert!(cached.is_empty(), "a cold build hits nothing: {cached:?}");
    let (second, cached) = build(&kiln, &ws, &[]);
    assert_eq!(cached.len(), 4, "every layer step hits: {cached:?}");
    assert_eq!(first, second, "an unchanged rebuild gives the same image ID");
    let (_, cached) = build(&kiln, &ws, &["--no-cache"]);
    assert!(cached.is_empty(), "--no-cache: {cached:?}");
}

#[test]
fn only_selected_sources_and_visible_args_count() {
    let (kiln, ws) = setup();
    build(&kiln, &ws, &[]);
    ws.file("unrelated.txt", "changed").file("app/extra.txt", "changed too");
    let (_, cached) = build(&kiln, &ws, &[]);
    assert_eq!(cached.len(), 4, "files the COPY does not select do not matter: {cached:?}");

    let main = ws.path().join("app/main.txt");
    std::fs::set_permissions(&main, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (_, cached) = build(&kiln, &ws, &[]);
    assert_eq!(cached, vec!["RUN echo early > /early".to_string()], "a selected file's mode misses from the COPY on");

    build(&kiln, &ws, &[]);
    let (_, cached) = build(&kiln, &ws, &["--build-arg", "LATE=2"]);
    // As Docker documents: an ARG misses at its first use, and every RUN after it uses it (as environment).
    assert_eq!(cached.len(), 3, "a changed arg misses only the RUN that sees it: {cached:?}");
    assert!(!cached.iter().any(|c| c.contains("late")), "{cached:?}");
}

#[test]
fn a_cache_entry_whose_blob_vanished_is_rebuilt() {
    let (kiln, ws) = setup();
    build(&kiln, &ws, &[]);
    // Remove every layer blob behind the cache's back (as a crash or a manual clean-up might).
    let out = kiln.ok(&["inspect", "cached:1"]);
    let inspect: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    let blobs = kiln.store().join("blobs/sha256");
    let layers = inspect.pointer("/Manifest/layers").and_then(|l| l.as_array()).cloned().unwrap_or_default();
    let mut removed = 0;
    for layer in layers.iter().skip(1) {
        let digest = layer["digest"].as_str().unwrap().trim_start_matches("sha256:");
        removed += usize::from(std::fs::remove_file(blobs.join(digest)).is_ok());
    }
    assert!(removed > 0, "the test removed blobs: {out}");
    let (_, cached) = build(&kiln, &ws, &[]);
    assert!(cached.len() < 4, "steps whose layers vanished run again: {cached:?}");
    kiln.ok(&["push", "cached:1", &format!("oci:{}:check", ws.path().join("layout").display())]);
}

#[test]
fn prune_clears_the_cache() {
    let (kiln, ws) = setup();
    build(&kiln, &ws, &[]);
    kiln.ok(&["rmi", "cached:1"]);
    let out = kiln.ok(&["prune"]);
    assert!(out.contains("cache records"), "{out}");
    let (_, cached) = build(&kiln, &ws, &[]);
    assert!(cached.is_empty(), "{cached:?}");
}

#[test]
fn two_stores_share_steps_through_a_registry_cache() {
    let Some(registry) = crate::harness::Registry::start() else { return };
    let first = Kiln::new();
    let base = registry.name("base/busybox:1");
    first.build(&busybox_workspace(), &base, &["--push", "--tls-verify=false"]);
    let ws = Workspace::new();
    ws.file("app/main.txt", "main")
        .dockerfile(&format!("FROM {base}\nRUN echo shared > /shared\nCOPY app /app\nRUN echo done > /done\n"));
    let repo = registry.name("cache/app");
    let (id_first, cached) = build(&first, &ws, &["--cache-to", &repo, "--tls-verify=false"]);
    assert!(cached.is_empty(), "{cached:?}");

    // A second, empty store (another pod) finds every step in the registry and makes the same image.
    let second = Kiln::new();
    let (id_second, cached) = build(&second, &ws, &["--cache-from", &repo, "--tls-verify=false"]);
    assert_eq!(cached.len(), 3, "every step came from the registry cache: {cached:?}");
    assert_eq!(id_first, id_second);
    second.ok(&["push", "cached:1", &format!("oci:{}:check", ws.path().join("layout").display())]);

    // A different Dockerfile sharing the early steps reuses them.
    let other = Workspace::new();
    other.dockerfile(&format!("FROM {base}\nRUN echo shared > /shared\nRUN echo other > /other\n"));
    let third = Kiln::new();
    let (_, cached) = build(&third, &other, &["--cache-from", &repo, "--tls-verify=false"]);
    assert_eq!(cached, vec!["RUN echo shared > /shared".to_string()], "{cached:?}");
}

#[test]
fn prune_keep_storage_keeps_the_most_recently_used_steps() {
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "busybox:test", &[]);
    let make = |name: &str| {
        let ws = Workspace::new();
        ws.dockerfile(&format!("FROM localhost/busybox:test\nRUN head -c 3000000 /dev/urandom > /{name}\n"));
        ws
    };
    let (a, b) = (make("a"), make("b"));
    build(&kiln, &a, &[]);
    build(&kiln, &b, &[]);
    kiln.ok(&["rmi", "cached:1"]);
    let out = kiln.ok(&["prune", "--keep-storage", "5MB"]);
    assert!(out.contains("1 cache records"), "only the older 3 MB step goes: {out}");
    let (_, cached) = build(&kiln, &b, &[]);
    assert_eq!(cached.len(), 1, "the most recent step stays: {cached:?}");
    let (_, cached) = build(&kiln, &a, &[]);
    assert!(cached.is_empty(), "the older one was evicted: {cached:?}");
    let bad = kiln.fails(&["prune", "--keep-storage", "lots"]);
    assert!(bad.stderr.contains("--keep-storage"), "{}", bad.stderr);
}

#[test]
fn pull_misses_when_the_base_image_changed() {
    let Some(registry) = crate::harness::Registry::start() else { return };
    let publisher = Kiln::new();
    let base = registry.name("base/moving:1");
    let base_ws = busybox_workspace();
    publisher.build(&base_ws, &base, &["--push", "--tls-verify=false"]);
    let kiln = Kiln::new();
    let ws = Workspace::new();
    ws.dockerfile(&format!("FROM {base}\nRUN echo app > /app\n"));
    build(&kiln, &ws, &["--tls-verify=false"]);
    let (_, cached) = build(&kiln, &ws, &["--tls-verify=false", "--pull"]);
    assert_eq!(cached.len(), 1, "same base digest: still a hit: {cached:?}");

    base_ws.file("rootfs/etc/motd", "a new base");
    publisher.build(&base_ws, &base, &["--push", "--tls-verify=false"]);
    let (_, cached) = build(&kiln, &ws, &["--tls-verify=false"]);
    assert_eq!(cached.len(), 1, "without --pull the local base is used: {cached:?}");
    let (_, cached) = build(&kiln, &ws, &["--tls-verify=false", "--pull"]);
    assert!(cached.is_empty(), "--pull fetched the new base, so its steps miss: {cached:?}");
}

#[test]
fn a_remote_hit_pushed_to_the_same_registry_downloads_no_layer() {
    if !crate::harness::require("skopeo") || !crate::harness::require("umoci") {
        return;
    }
    let Some(registry) = crate::harness::Registry::start() else { return };
    let first = Kiln::new();
    let base = registry.name("base/busybox:1");
    first.build(&busybox_workspace(), &base, &["--push", "--tls-verify=false"]);
    let ws = Workspace::new();
    ws.file("big.bin", vec![7u8; 1 << 20])
        .dockerfile(&format!("FROM {base}\nCOPY big.bin /big.bin\nRUN echo one > /one\n"));
    let repo = registry.name("cache/app");
    build(&first, &ws, &["--cache-to", &repo, "--tls-verify=false"]);
    let layer_count = |kiln: &Kiln| std::fs::read_dir(kiln.store().join("blobs/sha256")).map_or(0, |d| d.count());

    // A pod with only the base: both steps hit remotely and the push mounts their layers.
    let pod = Kiln::new();
    let pulled = pod.ok(&["pull", &base, "--tls-verify=false"]);
    assert!(!pulled.is_empty());
    let before = layer_count(&pod);
    let app = registry.name("team/app:1");
    let ctx = ws.path().to_string_lossy().into_owned();
    let run = pod.run(&["build", "-t", &app, "--cache-from", &repo, "--push", "--tls-verify=false", &ctx]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr.matches("CACHED").count(), 2, "{}", run.stderr);
    assert!(!run.stderr.contains("fetching cached layer"), "no layer was downloaded: {}", run.stderr);
    assert!(layer_count(&pod) <= before + 2, "only the new config and manifest were stored");
    let layout = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:app", layout.path().display());
    crate::harness::tool("skopeo", &["copy", "--src-tls-verify=false", &registry.docker_ref("team/app:1"), &dest]);
    let (_keep, rootfs) = crate::harness::umoci_unpack(layout.path(), "app");
    assert_eq!(std::fs::read_to_string(rootfs.join("one")).unwrap(), "one\n", "the pushed image is whole");

    // A later step that needs the files fetches exactly the cached layers it reads.
    ws.dockerfile(&format!("FROM {base}\nCOPY big.bin /big.bin\nRUN echo one > /one\nRUN cat /one > /two\n"));
    let run = pod.run(&["build", "-t", "app:2", "--cache-from", &repo, "--tls-verify=false", &ctx]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr.matches("fetching cached layer").count(), 2, "{}", run.stderr);
    pod.ok(&["push", "app:2", &format!("oci:{}:two", layout.path().display())]);
}

#[test]
fn concurrent_builds_share_one_cache_repository() {
    let Some(registry) = crate::harness::Registry::start() else { return };
    let publisher = Kiln::new();
    let base = registry.name("base/busybox:1");
    publisher.build(&busybox_workspace(), &base, &["--push", "--tls-verify=false"]);
    let repo = registry.name("cache/shared");
    let dockerfile = |last: &str| {
        let ws = Workspace::new();
        ws.dockerfile(&format!("FROM {base}\nRUN echo common > /common && sleep 1\nRUN echo {last} > /{last}\n"));
        ws
    };
    let (a, b) = (dockerfile("a"), dockerfile("b"));
    let (pod_a, pod_b) = (Kiln::new(), Kiln::new());
    let flags = ["--cache-to", repo.as_str(), "--cache-from", repo.as_str(), "--tls-verify=false"];
    let spawn = |kiln: &Kiln, ws: &Workspace| {
        let ctx = ws.path().to_string_lossy().into_owned();
        let mut args = vec!["build", "-t", "shared:1"];
        args.extend_from_slice(&flags);
        args.push(&ctx);
        kiln.spawn(&args)
    };
    let (mut ca, mut cb) = (spawn(&pod_a, &a), spawn(&pod_b, &b));
    assert!(ca.wait().unwrap().success() && cb.wait().unwrap().success(), "both concurrent builds succeed");

    // A third pod finds every step of both Dockerfiles in the shared repository.
    let pod_c = Kiln::new();
    let (_, cached_a) = build(&pod_c, &a, &["--cache-from", &repo, "--tls-verify=false"]);
    let (_, cached_b) = build(&pod_c, &b, &["--cache-from", &repo, "--tls-verify=false"]);
    assert_eq!((cached_a.len(), cached_b.len()), (2, 2), "{cached_a:?} {cached_b:?}");
}

#[test]
fn each_instruction_kind_keys_what_it_affects() {
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "busybox:test", &[]);
    let ws = Workspace::new();
    let dockerfile = |label: &str, env: &str, user: &str, workdir: &str| {
        format!(
            "FROM localhost/busybox:test\n\
             LABEL version={label}\n\
             ADD added.txt /added.txt\n\
             RUN echo run-before-env > /r1\n\
             ENV MODE={env}\n\
             USER {user}\n\
             RUN echo run-after > /tmp/r2\n\
             USER root\n\
             WORKDIR {workdir}\n\
             COPY app/main.txt rel/\n"
        )
    };
    ws.file("added.txt", "v1").file("app/main.txt", "m");
    ws.dockerfile(&dockerfile("1", "a", "root", "/w1"));
    build(&kiln, &ws, &[]);
    let hits = |label: &str, env: &str, user: &str, workdir: &str| {
        ws.dockerfile(&dockerfile(label, env, user, workdir));
        build(&kiln, &ws, &[]).1
    };
    let all = vec![
        "ADD added.txt /added.txt",
        "RUN echo run-before-env > /r1",
        "RUN echo run-after > /tmp/r2",
        "WORKDIR /w1",
        "COPY app/main.txt rel/",
    ];
    assert_eq!(hits("2", "a", "root", "/w1"), all, "a LABEL change misses nothing");
    let env_changed = hits("1", "b", "root", "/w1");
    assert_eq!(env_changed[..2], all[..2], "steps before the ENV hit");
    assert!(!env_changed.contains(&all[2].to_string()), "the RUN after the ENV misses: {env_changed:?}");
    assert!(!hits("1", "b", "app", "/w1").contains(&all[2].to_string()), "USER misses the RUN it runs");
    let moved = hits("1", "b", "app", "/w2");
    assert!(!moved.iter().any(|s| s.starts_with("COPY")), "WORKDIR misses a relative COPY: {moved:?}");
    ws.file("added.txt", "v2");
    let changed = hits("1", "b", "app", "/w2");
    assert!(!changed.iter().any(|s| s.starts_with("ADD")), "ADD of a changed file misses: {changed:?}");
}

#[test]
fn no_cache_filter_rebuilds_only_the_named_stage() {
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "busybox:test", &[]);
    let ws = Workspace::new();
    ws.dockerfile(
        "FROM localhost/busybox:test AS deps\nRUN echo deps > /deps\n\
         FROM localhost/busybox:test AS final\nCOPY --from=deps /deps /deps\nRUN echo final > /final\n",
    );
    build(&kiln, &ws, &[]);
    let (_, cached) = build(&kiln, &ws, &["--no-cache-filter", "final"]);
    assert_eq!(cached, vec!["RUN echo deps > /deps".to_string()], "{cached:?}");
}
