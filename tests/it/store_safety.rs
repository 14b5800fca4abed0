//! The store stays whole: a killed build leaves nothing a later build trips on, escape tricks in archives
//! stay inside the image, and the store commands work together.

use std::time::Duration;

use crate::harness::{Kiln, Workspace, require, tool};

#[test]
fn a_killed_build_is_followed_by_a_good_one() {
    let ws = Workspace::new();
    // Big enough that the build is still writing its layer when it is killed.
    let big = vec![7u8; 64 << 20];
    for i in 0..4 {
        ws.file(&format!("big/{i}.bin"), &big);
    }
    ws.dockerfile("FROM scratch\nCOPY big /big/\n");
    let kiln = Kiln::new();
    let ctx = ws.path().to_string_lossy().into_owned();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["--root", &kiln.store().to_string_lossy(), "build", "-t", "big:1", &ctx])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    kiln.build(&ws, "big:1", &[]);
    let images = kiln.ok(&["images"]);
    assert!(images.contains("localhost/big"), "{images}");
    let pruned = kiln.ok(&["prune"]);
    assert!(pruned.contains("freed"), "{pruned}");
    if require("skopeo") {
        tool("skopeo", &["inspect", &kiln.oci_ref("localhost/big:1")]);
    }
}

#[test]
fn add_of_an_archive_with_escape_tricks_stays_inside() {
    if !require("umoci") {
        return;
    }
    let ws = Workspace::new();
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, link) in [
        ("../../outside.txt", tar::EntryType::Regular, ""),
        ("/abs.txt", tar::EntryType::Regular, ""),
        ("up", tar::EntryType::Symlink, "../../../.."),
        ("up/through-link.txt", tar::EntryType::Regular, ""),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(if kind == tar::EntryType::Regular { 1 } else { 0 });
        let field = &mut h.as_old_mut().name;
        field[..name.len()].copy_from_slice(name.as_bytes());
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        h.set_cksum();
        let data: &[u8] = if kind == tar::EntryType::Regular { b"x" } else { b"" };
        builder.append(&h, data).unwrap();
    }
    ws.file("evil.tar", builder.into_inner().unwrap()).dockerfile("FROM scratch\nADD evil.tar /dest/\n");
    let kiln = Kiln::new();
    kiln.build(&ws, "evil:1", &[]);
    let (_keep, r) = crate::harness::umoci_unpack(kiln.store(), "localhost/evil:1");
    assert!(r.join("dest/outside.txt").is_file());
    assert!(r.join("dest/abs.txt").is_file());
    assert!(!ws.path().join("outside.txt").exists() && !std::path::Path::new("/outside.txt").exists());
}

#[test]
fn tag_rmi_inspect_and_prune() {
    let ws = Workspace::new();
    ws.file("f", "x").dockerfile("FROM scratch\nCOPY f /\n");
    let kiln = Kiln::new();
    let id = kiln.build(&ws, "one:1", &[]);
    kiln.ok(&["tag", "one:1", "two:2"]);
    let inspect: serde_json::Value = serde_json::from_str(&kiln.ok(&["inspect", "two:2"])).unwrap();
    assert_eq!(inspect["Id"], id);
    assert_eq!(inspect["Name"], "localhost/two:2");
    kiln.ok(&["rmi", "one:1"]);
    assert!(kiln.ok(&["images"]).contains("localhost/two"));
    kiln.ok(&["rmi", "two:2"]);
    let pruned = kiln.ok(&["prune"]);
    assert!(pruned.starts_with("removed 3 blobs"), "config, manifest and layer: {pruned}");
}
