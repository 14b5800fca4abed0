//! SBOMs and provenance: valid by the official validators, attached by `kiln build --sbom --provenance`,
//! pushed as OCI 1.1 referrers through a real registry (distribution has no referrers API, so the tag
//! fallback is used and checked with skopeo), and read back by another store.

use serde_json::Value;
use sha2::Digest as _;

use crate::harness::fixtures::{self, image_workspace};
use crate::harness::http::{Server, route};
use crate::harness::{Kiln, Registry, Workspace, busybox_workspace, tool, validators};

#[test]
fn sboms_are_valid_for_the_official_validators() {
    let Some(tools) = validators::tools() else { return };
    if !fixtures::available() {
        return;
    }
    let (ws, root) = image_workspace("USER 1001\n");
    root.ubi("8.9")
        .rpmdb(true, &["bash", "glibc", "openssl-libs", "java-11-openjdk-headless"])
        .jdk("java-11-openjdk-11.0.22.0.7-1.el8.x86_64", "11.0.22")
        .python("usr/bin/python3.8", "3.8")
        .file(
            "usr/lib64/python3.8/site-packages/PyYAML-6.0.1.dist-info/METADATA",
            "Name: PyYAML\nVersion: 6.0.1\nLicense: MIT\n",
        )
        .exe("usr/local/bin/hello", std::fs::read(fixtures::go_binary()).unwrap());
    let kiln = Kiln::new();
    kiln.build(&ws, "ubi8/openjdk-11:fixture", &[]);
    let dir = tempfile::tempdir().unwrap();
    let spdx = dir.path().join("sbom.spdx.json");
    let cdx = dir.path().join("sbom.cdx.json");
    kiln.ok(&["sbom", "ubi8/openjdk-11:fixture", "-o", spdx.to_str().unwrap()]);
    kiln.ok(&["sbom", "--format", "cyclonedx-json", "ubi8/openjdk-11:fixture", "-o", cdx.to_str().unwrap()]);
    validators::spdx(&tools, &spdx);
    validators::cyclonedx(&tools, &cdx);
    let doc: Value = serde_json::from_slice(&std::fs::read(&spdx).unwrap()).unwrap();
    let purls: Vec<&str> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["externalRefs"][0]["referenceLocator"].as_str())
        .collect();
    assert!(
        purls
            .contains(&"pkg:rpm/redhat/java-11-openjdk-headless@11.0.22.0.7-1.el9?arch=x86_64&distro=rhel-8.9&epoch=1"),
        "{purls:#?}"
    );
    assert!(purls.contains(&"pkg:pypi/pyyaml@6.0.1"), "{purls:#?}");
    assert!(purls.contains(&"pkg:golang/example.com/greeting@v1.4.2"), "{purls:#?}");
    // The validator is not a rubber stamp: a broken id is refused.
    let broken = dir.path().join("broken.json");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&spdx).unwrap().replace("\"SPDXRef-Image\"", "\"Image without prefix\""),
    )
    .unwrap();
    assert!(validators::spdx_rejects(&tools, &broken));
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The manifest digest skopeo reports for `path` in the registry.
fn digest_of(registry: &Registry, path: &str) -> String {
    let out: Value =
        serde_json::from_str(&tool("skopeo", &["inspect", "--tls-verify=false", &registry.docker_ref(path)])).unwrap();
    out["Digest"].as_str().expect("Digest").to_string()
}

#[test]
fn build_attaches_sbom_and_provenance_and_pushes_them_as_referrers() {
    let Some(registry) = Registry::start() else { return };
    if !crate::harness::require("skopeo") {
        return;
    }
    let kiln = Kiln::new();
    let base = registry.name("base/busybox:attest");
    kiln.build(&busybox_workspace(), &base, &["--push", "--tls-verify=false"]);
    let payload = b"tool payload\n".to_vec();
    let server = Server::start(vec![route("/tool.txt", "text/plain", payload.clone())]);
    let ws = Workspace::new();
    ws.file("app.txt", "app\n").dockerfile(&format!(
        "ARG BASE\nFROM $BASE\nADD {} /opt/tool.txt\nCOPY app.txt /opt/\nUSER 1000\n",
        server.url("/tool.txt")
    ));
    let app = registry.name("team/app:1");
    let build_arg = format!("BASE={base}");
    kiln.build(
        &ws,
        &app,
        &[
            "--sbom",
            "--provenance",
            "--push",
            "--tls-verify=false",
            "--build-arg",
            &build_arg,
            "--build-arg",
            "API_TOKEN=hunter2",
        ],
    );
    let image_digest = digest_of(&registry, "team/app:1");
    // distribution 2.x has no referrers API: the tag schema lists both attestations, subject = the image.
    let fallback = format!("team/app:{}", image_digest.replace(':', "-"));
    let index: Value = serde_json::from_str(&tool(
        "skopeo",
        &["inspect", "--tls-verify=false", "--raw", &registry.docker_ref(&fallback)],
    ))
    .unwrap();
    let mut types: Vec<&str> =
        index["manifests"].as_array().unwrap().iter().filter_map(|m| m["artifactType"].as_str()).collect();
    types.sort();
    assert_eq!(types, ["application/spdx+json", "application/vnd.in-toto+json"]);
    for m in index["manifests"].as_array().unwrap() {
        let by_digest = format!("team/app@{}", m["digest"].as_str().unwrap());
        let manifest: Value = serde_json::from_str(&tool(
            "skopeo",
            &["inspect", "--tls-verify=false", "--raw", &registry.docker_ref(&by_digest)],
        ))
        .unwrap();
        assert_eq!(manifest["subject"]["digest"], image_digest.as_str());
        assert_eq!(manifest["config"]["mediaType"], "application/vnd.oci.empty.v1+json");
    }
    // Another machine reads them back from the registry.
    let other = Kiln::new();
    let sbom: Value = serde_json::from_str(&other.ok(&["sbom", &app, "--tls-verify=false"])).unwrap();
    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
    assert_eq!(sbom["packages"][0]["versionInfo"], image_digest.as_str());
    let prov: Value = serde_json::from_str(&other.ok(&["provenance", &app, "--tls-verify=false"])).unwrap();
    assert_eq!(prov["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(prov["subject"][0]["digest"]["sha256"], image_digest.trim_start_matches("sha256:"));
    let params = &prov["predicate"]["buildDefinition"]["externalParameters"];
    assert_eq!(params["buildArgs"]["BASE"], base.as_str());
    assert_eq!(params["buildArgs"]["API_TOKEN"], "<redacted>", "secret-looking values never reach the provenance");
    let deps = prov["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
    let base_dep = deps.iter().find(|d| d["annotations"]["kind"] == "base-image").expect("base image");
    assert_eq!(base_dep["digest"]["sha256"], digest_of(&registry, "base/busybox:attest").trim_start_matches("sha256:"));
    let add = deps.iter().find(|d| d["uri"] == server.url("/tool.txt").as_str()).expect("ADD URL");
    assert_eq!(add["digest"]["sha256"], sha256_hex(&payload));
    assert_eq!(add["annotations"]["via"], "add");
    let dockerfile = deps.iter().find(|d| d["annotations"]["kind"] == "dockerfile").expect("Dockerfile");
    assert_eq!(dockerfile["digest"]["sha256"], sha256_hex(&std::fs::read(ws.path().join("Dockerfile")).unwrap()));
    assert!(deps.iter().any(|d| d["annotations"]["kind"] == "context"));
    // `kiln provenance` on the building machine reads the same statement from its store.
    let local: Value = serde_json::from_str(&kiln.ok(&["provenance", &app])).unwrap();
    assert_eq!(local, prov);
    // Checked without its Dockerfile, the image's bases come from its provenance.
    let run = kiln.run(&["check", "--format", "json", &app]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let finding =
        report["findings"].as_array().unwrap().iter().find(|f| f["rule"] == "base-not-allowed").expect("base rule");
    assert_eq!(finding["location"]["path"], "provenance:resolvedDependencies");
}

#[test]
fn kiln_push_carries_attestations_and_a_rebuild_replaces_them() {
    let Some(registry) = Registry::start() else { return };
    let kiln = Kiln::new();
    let (ws, root) = image_workspace("USER 1001\n");
    root.file("usr/lib/golang/VERSION", "go1.21.7\n");
    kiln.build(&ws, "localhost/attached:1", &["--sbom"]);
    let dest = registry.name("team/attached:1");
    kiln.ok(&["push", "localhost/attached:1", &format!("docker://{dest}"), "--tls-verify=false"]);
    let other = Kiln::new();
    let sbom: Value = serde_json::from_str(&other.ok(&["sbom", &dest, "--tls-verify=false"])).unwrap();
    assert!(sbom["packages"].as_array().unwrap().iter().any(|p| p["name"] == "go" && p["versionInfo"] == "1.21.7"));
    // A second push (same image, a fresh SBOM) keeps one SBOM entry per type in the fallback index.
    kiln.build(&ws, "localhost/attached:1", &["--sbom"]);
    kiln.ok(&["push", "localhost/attached:1", &format!("docker://{dest}"), "--tls-verify=false"]);
    let tag = format!("team/attached:{}", digest_of(&registry, "team/attached:1").replace(':', "-"));
    let index: Value =
        serde_json::from_str(&tool("skopeo", &["inspect", "--tls-verify=false", "--raw", &registry.docker_ref(&tag)]))
            .unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    // No CycloneDX is attached: asking for it says so.
    let missing = other.fails(&["sbom", "--format", "cyclonedx-json", &dest, "--tls-verify=false"]);
    assert!(missing.stderr.contains("no application/vnd.cyclonedx+json document is attached"), "{}", missing.stderr);
    // prune keeps attestations with their image and drops them with it.
    kiln.ok(&["prune"]);
    assert!(kiln.ok(&["sbom", "localhost/attached:1"]).contains("SPDX-2.3"));
    let layout = std::fs::read_to_string(kiln.store().join("index.json")).unwrap();
    assert!(layout.contains("dev.kiln.referrer.subject"));
    kiln.ok(&["rmi", "localhost/attached:1"]);
    kiln.ok(&["prune"]);
    let layout = std::fs::read_to_string(kiln.store().join("index.json")).unwrap();
    assert!(!layout.contains("dev.kiln.referrer.subject"), "{layout}");
}
