//! Store behaviour: atomic ingest, tags under concurrency, snapshots, prune, and readability by skopeo.

use std::collections::HashSet;
use std::io::Write;

use oci_spec::image::{Descriptor, MediaType};

use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn layout_is_created_and_versioned() {
    let (dir, _store) = store();
    assert!(dir.path().join("oci-layout").is_file());
    assert!(dir.path().join("index.json").is_file());
    std::fs::write(dir.path().join("kiln/version"), "99\n").unwrap();
    assert!(matches!(Store::open(dir.path()), Err(StoreError::Version { .. })));
}

#[test]
fn default_root_follows_the_documented_order() {
    let d = Store::default_root(Some(OsStr::new("/k")), Some(OsStr::new("/x")), Some(OsStr::new("/h")), false);
    assert_eq!(d, PathBuf::from("/k"));
    assert_eq!(Store::default_root(None, Some(OsStr::new("/x")), None, false), PathBuf::from("/x/kiln"));
    assert_eq!(Store::default_root(None, None, Some(OsStr::new("/h")), false), PathBuf::from("/h/.local/share/kiln"));
    assert_eq!(Store::default_root(None, None, Some(OsStr::new("/h")), true), PathBuf::from("/var/lib/kiln"));
}

#[test]
fn ingest_is_atomic_and_checked() {
    let (dir, store) = store();
    let mut w = store.ingest().unwrap();
    w.write_all(b"half").unwrap();
    drop(w);
    assert_eq!(std::fs::read_dir(dir.path().join("blobs/sha256")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(dir.path().join("kiln/tmp")).unwrap().count(), 0, "dropped writer leaves no temp");
    let wrong = digest_of(b"other");
    let mut w = store.ingest().unwrap();
    w.write_all(b"content").unwrap();
    assert!(matches!(w.commit(Some(&wrong)), Err(StoreError::DigestMismatch { .. })));
    assert!(!store.has_blob(&digest_of(b"content")));
    let (d, size) = store.put_bytes(b"content").unwrap();
    assert_eq!((d.to_string(), size), (digest_of(b"content").to_string(), 7));
    assert_eq!(store.read_blob(&d).unwrap(), b"content");
}

#[test]
fn corrupted_blobs_are_detected_on_read() {
    let (_dir, store) = store();
    let (d, _) = store.put_bytes(b"good").unwrap();
    std::fs::write(store.blob_path(&d), b"evil").unwrap();
    assert!(matches!(store.read_blob(&d), Err(StoreError::DigestMismatch { .. })));
}

fn manifest_desc(store: &Store, body: &str) -> Descriptor {
    let (d, size) = store.put_bytes(body.as_bytes()).unwrap();
    Descriptor::new(MediaType::ImageManifest, size, d)
}

#[test]
fn concurrent_tags_all_land() {
    let (_dir, store) = store();
    let desc = manifest_desc(&store, "{}");
    std::thread::scope(|s| {
        for t in 0..8 {
            let store = store.clone();
            let desc = desc.clone();
            s.spawn(move || {
                for i in 0..10 {
                    store.set_tag(&format!("localhost/t{t}:{i}"), &desc).unwrap();
                }
            });
        }
    });
    assert_eq!(store.list_tags().unwrap().len(), 80);
    store.set_tag("localhost/t0:0", &desc).unwrap();
    assert_eq!(store.list_tags().unwrap().len(), 80, "re-tagging replaces");
    assert!(store.remove_tag("localhost/t0:0").unwrap());
    assert!(!store.remove_tag("localhost/t0:0").unwrap());
}

#[test]
fn snapshots_are_published_once() {
    let (_dir, store) = store();
    let chain = digest_of(b"chain");
    let path = store
        .create_snapshot(&chain, |dir| {
            std::fs::write(dir.join("f"), b"x")?;
            Ok(())
        })
        .unwrap();
    assert!(path.join("f").is_file());
    let again = store.create_snapshot(&chain, |_| Err("must not be called".into())).unwrap();
    assert_eq!(again, path);
    let failed = store.create_snapshot(&digest_of(b"other"), |_| Err("boom".into()));
    assert!(failed.unwrap_err().to_string().contains("boom"));
    assert!(store.snapshot(&digest_of(b"other")).is_none());
}

#[test]
fn prune_keeps_what_images_reference() {
    let (_dir, store) = store();
    let (config, csize) = store.put_bytes(b"{\"config\":1}").unwrap();
    let (layer, lsize) = store.put_bytes(b"layer-bytes").unwrap();
    let (orphan, _) = store.put_bytes(b"orphan").unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{csize}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{lsize}}}]}}"#
    );
    let desc = manifest_desc(&store, &manifest);
    store.set_tag("localhost/app:1", &desc).unwrap();
    let kept = digest_of(b"kept-chain");
    store.create_snapshot(&kept, |_| Ok(())).unwrap();
    store.create_snapshot(&digest_of(b"dropped-chain"), |_| Ok(())).unwrap();
    let report = store.prune(&[], &HashSet::from([kept.clone()])).unwrap();
    assert_eq!((report.blobs_removed, report.snapshots_removed), (1, 1));
    assert!(store.has_blob(&config) && store.has_blob(&layer) && store.has_blob(desc.digest()));
    assert!(!store.has_blob(&orphan));
    assert!(store.snapshot(&kept).is_some());
}

#[test]
fn skopeo_reads_the_store_as_an_oci_layout() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if std::process::Command::new("skopeo").arg("--version").output().is_err() {
        assert!(!ci, "skopeo is required under CI=true");
        eprintln!("skipping: skopeo not installed");
        return;
    }
    let (dir, store) = store();
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let (cd, cs) = store.put_bytes(config).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"layers":[]}}"#
    );
    let desc = manifest_desc(&store, &manifest);
    store.set_tag("localhost/empty:1", &desc).unwrap();
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", &format!("oci:{}:localhost/empty:1", dir.path().display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, manifest.as_bytes());
}
