//! Exports other tools read: OCI layout directories, oci-archive, and docker-archive for `podman load`.

use crate::harness::{Kiln, Workspace, require, tool};

fn small_image(kiln: &Kiln) {
    let ws = Workspace::new();
    ws.file("hello.txt", "hello").dockerfile("FROM scratch\nCOPY hello.txt /\nCMD [\"/hello.txt\"]\n");
    kiln.build(&ws, "export:1", &[]);
}

#[test]
fn oci_dir_and_archive_are_read_by_skopeo() {
    if !require("skopeo") {
        return;
    }
    let kiln = Kiln::new();
    small_image(&kiln);
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("layout");
    kiln.ok(&["push", "export:1", &format!("oci:{}:v1", dir.display())]);
    let raw = tool("skopeo", &["inspect", "--raw", &format!("oci:{}:v1", dir.display())]);
    assert!(raw.contains("application/vnd.oci.image.manifest.v1+json"), "{raw}");
    let archive = out.path().join("image.tar");
    kiln.ok(&["push", "export:1", &format!("oci-archive:{}:v1", archive.display())]);
    let inspect = tool("skopeo", &["inspect", &format!("oci-archive:{}:v1", archive.display())]);
    assert!(inspect.contains("\"Layers\""), "{inspect}");
}

#[test]
fn docker_archive_loads_into_podman() {
    if !require("podman") {
        return;
    }
    let kiln = Kiln::new();
    small_image(&kiln);
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("docker.tar");
    kiln.ok(&["push", "export:1", &format!("docker-archive:{}:kiln-test/export:1", archive.display())]);
    let storage = out.path().join("storage");
    let run_root = out.path().join("run");
    let root = format!("--root={}", storage.display());
    let runroot = format!("--runroot={}", run_root.display());
    let loaded = tool("podman", &[&root, &runroot, "--storage-driver=vfs", "load", "-i", &archive.to_string_lossy()]);
    assert!(loaded.contains("kiln-test/export:1"), "{loaded}");
    let images =
        tool("podman", &[&root, &runroot, "--storage-driver=vfs", "images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.contains("kiln-test/export:1"), "{images}");
}
