//! Builds pushed to and pulled from a real registry on 127.0.0.1, checked with skopeo, umoci and podman.

use sha2::Digest as _;

use crate::harness::http::{Server, route};
use crate::harness::{Kiln, Registry, Workspace, busybox_workspace, require, skopeo_config, tool};

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[test]
fn build_push_pull_and_run_with_podman() {
    if !require("skopeo") || !require("umoci") {
        return;
    }
    let Some(registry) = Registry::start() else { return };
    let kiln = Kiln::new();
    let base_name = registry.name("base/busybox:1");
    kiln.build(&busybox_workspace(), &base_name, &["--push", "--tls-verify=false"]);
    let inspect = tool("skopeo", &["inspect", "--tls-verify=false", &registry.docker_ref("base/busybox:1")]);
    assert!(inspect.contains("\"Layers\""), "{inspect}");

    // A second store (another machine) builds FROM the pushed image: it must pull it.
    let other = Kiln::new();
    let ws = Workspace::new();
    ws.file("hello.txt", "hello from kiln").dockerfile(&format!(
        "FROM {base_name}\nCOPY --chown=app hello.txt /home/app/\nCMD [\"cat\", \"/home/app/hello.txt\"]\n"
    ));
    let app = registry.name("team/app:1");
    other.build(&ws, &app, &["--tls-verify=false"]);
    let digest = other.ok(&["push", &app, "--tls-verify=false"]);
    assert!(digest.trim().starts_with("sha256:"), "push prints the digest: {digest}");
    let config = skopeo_config(&registry.docker_ref("team/app:1"));
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["cat", "/home/app/hello.txt"]));
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);

    // A copy into a second repository of the same registry mounts the blobs.
    other.ok(&["push", &app, &format!("docker://{}", registry.name("mirror/app:1")), "--tls-verify=false"]);
    tool("skopeo", &["inspect", "--tls-verify=false", &registry.docker_ref("mirror/app:1")]);

    let layout = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:app", layout.path().display());
    tool("skopeo", &["copy", "--src-tls-verify=false", &registry.docker_ref("team/app:1"), &dest]);
    let (_keep, rootfs) = crate::harness::umoci_unpack(layout.path(), "app");
    assert_eq!(std::fs::read_to_string(rootfs.join("home/app/hello.txt")).unwrap(), "hello from kiln");
    assert!(rootfs.join("bin/sh").exists());

    if !require("podman") {
        return;
    }
    let out = crate::harness::podman_run(&app, &[]);
    assert_eq!(out.trim(), "hello from kiln");
}

#[test]
fn basic_auth_with_kiln_login() {
    let Some(registry) = Registry::with_basic_auth("builder", "hunter22") else { return };
    let kiln = Kiln::new();
    let ws = Workspace::new();
    ws.file("f", "x").dockerfile("FROM scratch\nCOPY f /\n");
    let name = registry.name("private/app:1");
    kiln.build(&ws, &name, &[]);
    let refused = kiln.fails(&["push", &name, "--tls-verify=false"]);
    assert!(refused.stderr.contains(&registry.addr) && refused.stderr.contains("401"), "{}", refused.stderr);
    let dir = tempfile::tempdir().unwrap();
    let authfile = dir.path().join("auth.json").to_string_lossy().into_owned();
    let wrong = kiln.fails(&[
        "login",
        &registry.addr,
        "-u",
        "builder",
        "-p",
        "nope",
        "--authfile",
        &authfile,
        "--tls-verify=false",
    ]);
    assert!(!wrong.stderr.contains("nope"), "passwords never appear in errors");
    kiln.ok(&[
        "login",
        &registry.addr,
        "-u",
        "builder",
        "-p",
        "hunter22",
        "--authfile",
        &authfile,
        "--tls-verify=false",
    ]);
    kiln.ok(&["push", &name, "--tls-verify=false", "--authfile", &authfile]);
    kiln.ok(&["logout", &registry.addr, "--authfile", &authfile]);
}

#[test]
fn a_registry_that_lies_about_a_blob_is_caught() {
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
    let layer = b"the real layer".to_vec();
    let (config_digest, layer_digest) = (sha(config), sha(&layer));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}],
    });
    let server = Server::start(vec![
        route("/v2/", "application/json", "{}"),
        route(
            "/v2/lie/app/manifests/1",
            "application/vnd.oci.image.manifest.v1+json",
            serde_json::to_vec(&manifest).unwrap(),
        ),
        route(&format!("/v2/lie/app/blobs/{config_digest}"), "application/octet-stream", config.to_vec()),
        route(&format!("/v2/lie/app/blobs/{layer_digest}"), "application/octet-stream", b"a tampered layer!".to_vec()),
    ]);
    let kiln = Kiln::new();
    let run = kiln.fails(&["pull", "--tls-verify=false", &format!("{}/lie/app:1", server.addr)]);
    assert!(run.stderr.contains(&server.addr) && run.stderr.contains(&layer_digest), "{}", run.stderr);
    assert!(!kiln.store().join("blobs/sha256").join(&layer_digest[7..]).exists(), "nothing wrong is stored");
    assert_eq!(kiln.ok(&["images", "-q"]).trim(), "");
}

#[test]
fn a_registry_with_a_private_ca() {
    let Some(registry) = Registry::with_tls() else { return };
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "tls:1", &[]);
    let dest = format!("docker://{}", registry.name("secure/app:1"));
    let refused = kiln.fails(&["push", "tls:1", &dest]);
    assert!(refused.stderr.contains(&registry.addr), "names the registry: {}", refused.stderr);
    assert!(refused.stderr.to_lowercase().contains("certificate"), "says it is the certificate: {}", refused.stderr);
    let ca = registry.ca.clone().unwrap();
    kiln.ok(&["push", "tls:1", &dest, "--ca-file", &ca.to_string_lossy()]);
    let cert_dir = registry.cert_dir();
    kiln.ok(&[
        "push",
        "tls:1",
        &format!("docker://{}", registry.name("secure/app:2")),
        "--cert-dir",
        &cert_dir.to_string_lossy(),
    ]);
    if require("skopeo") {
        let cert_flag = format!("--cert-dir={}", cert_dir.display());
        tool("skopeo", &["inspect", &cert_flag, &registry.docker_ref("secure/app:2")]);
    }
}
