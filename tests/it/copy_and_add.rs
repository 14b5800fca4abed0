//! COPY and ADD, checked by unpacking the result with umoci: destinations, ownership, modes, wildcards,
//! .dockerignore, other stages, heredocs, archives, URLs.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::harness::http::{Route, Server, route};
use crate::harness::{Kiln, Workspace, busybox_workspace, require, umoci_unpack};

fn unpack(kiln: &Kiln, name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    umoci_unpack(kiln.store(), name)
}

#[test]
fn copy_follows_the_destination_rules() {
    if !require("umoci") {
        return;
    }
    let ws = Workspace::new();
    ws.file("a.txt", "a")
        .file("b.txt", "b")
        .file("dir/x", "x")
        .file("dir/sub/y", "y")
        .file("notes.md", "n")
        .file(".dockerignore", "*.md\n")
        .dockerfile(
            "FROM scratch\n\
             COPY a.txt /file-renamed\n\
             COPY a.txt b.txt /multi/\n\
             COPY *.txt /glob/\n\
             COPY dir /contents/\n\
             COPY dir/sub /deep/new/path\n\
             WORKDIR /work\n\
             COPY a.txt rel/\n\
             COPY --parents dir/sub/y /parents/\n\
             COPY --exclude=sub dir /excluded/\n",
        );
    let kiln = Kiln::new();
    kiln.build(&ws, "copy:1", &[]);
    let (_keep, r) = unpack(&kiln, "localhost/copy:1");
    assert_eq!(std::fs::read_to_string(r.join("file-renamed")).unwrap(), "a");
    assert!(r.join("multi/a.txt").is_file() && r.join("multi/b.txt").is_file());
    assert!(r.join("glob/a.txt").is_file() && r.join("glob/b.txt").is_file());
    assert!(r.join("contents/x").is_file() && r.join("contents/sub/y").is_file(), "a directory copies its contents");
    assert!(!r.join("contents/dir").exists());
    assert!(r.join("deep/new/path/y").is_file(), "missing parents are created");
    assert!(r.join("work/rel/a.txt").is_file(), "relative destinations are relative to WORKDIR");
    assert!(r.join("parents/dir/sub/y").is_file(), "--parents keeps the source path");
    assert!(r.join("excluded/x").is_file() && !r.join("excluded/sub").exists(), "--exclude");
    assert!(!r.join("glob/notes.md").exists());
}

#[test]
fn ownership_and_modes() {
    if !require("umoci") {
        return;
    }
    let kiln = Kiln::new();
    let base = busybox_workspace();
    kiln.build(&base, "busybox:test", &[]);
    let ws = Workspace::new();
    ws.file("script.sh", "#!/bin/sh\n").file("data", "d");
    std::fs::set_permissions(ws.path().join("script.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    ws.dockerfile(
        "FROM localhost/busybox:test\n\
         COPY script.sh /opt/\n\
         COPY --chown=app:staff data /owned/by-name\n\
         COPY --chown=4242 data /owned/by-number\n\
         COPY --chmod=0604 data /moded\n",
    );
    kiln.build(&ws, "owners:1", &[]);
    let (_keep, r) = unpack(&kiln, "localhost/owners:1");
    let meta = |p: &str| std::fs::symlink_metadata(r.join(p)).unwrap();
    assert_eq!(meta("opt/script.sh").mode() & 0o7777, 0o750, "modes are kept");
    if crate::harness::tool("id", &["-u"]).trim() == "0" {
        assert_eq!((meta("opt/script.sh").uid(), meta("opt/script.sh").gid()), (0, 0), "context files are root's");
        assert_eq!(
            (meta("owned/by-name").uid(), meta("owned/by-name").gid()),
            (1000, 50),
            "names from the image's files"
        );
        assert_eq!((meta("owned/by-number").uid(), meta("owned/by-number").gid()), (4242, 4242));
    }
    assert_eq!(meta("moded").mode() & 0o7777, 0o604);
    assert!(r.join("bin/busybox").is_file(), "the base's files are there");
}

#[test]
fn copy_from_stages_and_heredocs() {
    if !require("umoci") {
        return;
    }
    let ws = Workspace::new();
    ws.file("src/main.txt", "main").dockerfile(
        "FROM scratch AS build\nCOPY src/ /out/\nCOPY <<EOF /out/generated.txt\nversion $V\nEOF\n\
         FROM scratch AS other\nCOPY <<'EOF' /raw.txt\nkeep $V\nEOF\n\
         FROM scratch\nARG V=9\nCOPY --from=build /out/ /app/\nCOPY --from=1 /raw.txt /app/\n",
    );
    let kiln = Kiln::new();
    kiln.build(&ws, "stages:1", &[]);
    let (_keep, r) = unpack(&kiln, "localhost/stages:1");
    assert_eq!(std::fs::read_to_string(r.join("app/main.txt")).unwrap(), "main");
    assert_eq!(
        std::fs::read_to_string(r.join("app/generated.txt")).unwrap(),
        "version \n",
        "V is not declared in `build`"
    );
    assert_eq!(
        std::fs::read_to_string(r.join("app/raw.txt")).unwrap(),
        "keep $V\n",
        "quoted heredocs are not expanded"
    );
    let target = Kiln::new();
    target.build(&ws, "only-build:1", &["--target", "build"]);
    let (_k2, r2) = unpack(&target, "localhost/only-build:1");
    assert!(r2.join("out/main.txt").is_file() && !r2.join("app").exists());
}

#[test]
fn add_unpacks_local_archives_and_downloads_urls() {
    if !require("umoci") {
        return;
    }
    let ws = Workspace::new();
    ws.file("payload/inner.txt", "inside");
    crate::harness::tool(
        "tar",
        &[
            "-czf",
            &ws.path().join("bundle.tar.gz").to_string_lossy(),
            "-C",
            &ws.path().join("payload").to_string_lossy(),
            ".",
        ],
    );
    let body = b"downloaded".to_vec();
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&body))
    };
    let server = Server::start(vec![Route {
        headers: vec![("Last-Modified".into(), "Tue, 15 Nov 1994 08:12:31 GMT".into())],
        ..route("/files/tool.bin", "application/octet-stream", body)
    }]);
    ws.dockerfile(&format!(
        "FROM scratch\nADD bundle.tar.gz /unpacked/\nADD --checksum=sha256:{digest} {} /downloads/\nADD --unpack=false bundle.tar.gz /kept/\n",
        server.url("/files/tool.bin")
    ));
    let kiln = Kiln::new();
    kiln.build(&ws, "add:1", &[]);
    let (_keep, r) = unpack(&kiln, "localhost/add:1");
    assert_eq!(std::fs::read_to_string(r.join("unpacked/inner.txt")).unwrap(), "inside");
    assert_eq!(std::fs::read_to_string(r.join("downloads/tool.bin")).unwrap(), "downloaded");
    let meta = std::fs::metadata(r.join("downloads/tool.bin")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "downloads are 0600");
    assert_eq!(meta.mtime(), 784_887_151, "mtime from Last-Modified");
    assert!(r.join("kept/bundle.tar.gz").is_file());
    let bad = Workspace::new();
    bad.dockerfile(&format!(
        "FROM scratch\nADD --checksum=sha256:{} {} /x\n",
        "0".repeat(64),
        server.url("/files/tool.bin")
    ));
    let run = kiln.fails(&["build", &bad.path().to_string_lossy()]);
    assert!(run.stderr.contains("digest mismatch"), "{}", run.stderr);
}

#[test]
fn squash_makes_one_layer_above_the_base() {
    if !require("umoci") || !require("skopeo") {
        return;
    }
    let kiln = Kiln::new();
    kiln.build(&busybox_workspace(), "busybox:squash", &[]);
    let ws = Workspace::new();
    ws.file("a", "first").file("b", "second").file("a2", "replaced");
    ws.dockerfile("FROM localhost/busybox:squash\nCOPY a /data/a\nCOPY b /data/b\nCOPY a2 /data/a\nENV X=1\n");
    kiln.build(&ws, "squashed:1", &["--squash"]);
    let config = crate::harness::skopeo_config(&kiln.oci_ref("localhost/squashed:1"));
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2, "base layer + one squashed layer");
    let non_empty = config["history"].as_array().unwrap().iter().filter(|h| h["empty_layer"] != true).count();
    assert_eq!(non_empty, 2, "history and layers stay in step");
    let (_keep, r) = unpack(&kiln, "localhost/squashed:1");
    assert_eq!(std::fs::read_to_string(r.join("data/a")).unwrap(), "replaced");
    assert_eq!(std::fs::read_to_string(r.join("data/b")).unwrap(), "second");
    assert!(r.join("bin/busybox").is_file());
}
