//! Store behaviour: atomic ingest, tags under concurrency, snapshots, prune, privacy, sessions and the
//! deletion protocol, fsck, and readability by skopeo.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

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
    assert_eq!(std::fs::read_dir(store.session_dir()).unwrap().count(), 0, "dropped writer leaves no temp");
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
    assert!(path.ends_with("fs") && path.parent().unwrap().join("complete").is_file());
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
    assert_eq!(std::fs::read_dir(store.kiln_dir().join("trash")).unwrap().count(), 0, "the trash is emptied");
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

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn a_new_store_is_private_and_its_parents_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("a/store");
    let store = Store::open(&root).unwrap();
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(dir.path()), 0o755, "the parent keeps its mode");
    assert_eq!(store.opened().tightened_from, None);
    for sub in ["kiln", "kiln/snapshots", "kiln/tmp", "blobs/sha256"] {
        assert_eq!(mode(&root.join(sub)), 0o700, "{sub}");
    }
}

#[test]
fn an_open_store_is_tightened_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.opened().tightened_from, Some(0o755));
    assert_eq!(mode(dir.path()), 0o700);
    drop(store);
    assert_eq!(Store::open(dir.path()).unwrap().opened().tightened_from, None);
}

#[test]
fn a_session_lives_with_its_store_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let session = store.session_dir();
    assert!(session.is_dir());
    std::fs::write(session.join("partial"), b"x").unwrap();
    // A second process (here: a second open) must not take a live session's files.
    let other = Store::open(dir.path()).unwrap();
    assert_eq!(other.opened().recovered, Recovered::default());
    assert!(session.join("partial").is_file());
    drop(other);
    drop(store);
    let tmp = dir.path().join("kiln/tmp");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "session dir and lock file are gone");
}

#[test]
fn a_dead_sessions_files_are_removed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let tmp = dir.path().join("kiln/tmp");
    let trash = dir.path().join("kiln/trash");
    // A killed process: its lock file (no longer locked), its temp tree, a half-removed trash entry.
    std::fs::write(tmp.join("999-dead.lock"), b"").unwrap();
    std::fs::create_dir_all(tmp.join("999-dead/snap-x/fs/etc")).unwrap();
    std::fs::write(tmp.join("999-dead/snap-x/fs/etc/big"), vec![0u8; 4096]).unwrap();
    std::fs::create_dir_all(trash.join("999-dead.3/usr")).unwrap();
    // A read-only directory, as a rootfs has them.
    std::fs::set_permissions(trash.join("999-dead.3/usr"), std::fs::Permissions::from_mode(0o555)).unwrap();
    // An older kiln's temp file, which no session owns.
    std::fs::write(tmp.join("blob-legacy"), b"12345").unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.opened().recovered, Recovered { entries: 3, bytes: 4096 + 5 });
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "only the live session's dir and lock: {left:?}");
    assert_eq!(std::fs::read_dir(&trash).unwrap().count(), 0);
}

#[test]
fn deletion_takes_things_out_of_use_before_removing_them() {
    let (dir, store) = store();
    let chain = digest_of(b"c");
    let snap = store.create_snapshot(&chain, |d| Ok(std::fs::write(d.join("f"), b"x")?)).unwrap();
    assert!(store.discard(snap.parent().unwrap()).unwrap());
    assert!(store.snapshot(&chain).is_none());
    assert!(!store.discard(snap.parent().unwrap()).unwrap(), "already gone");
    assert_eq!(std::fs::read_dir(dir.path().join("kiln/trash")).unwrap().count(), 0);
}

#[test]
fn a_snapshot_without_its_marker_is_never_used_and_gets_replaced() {
    let (_dir, store) = store();
    let chain = digest_of(b"half");
    // What a killed prune of an older kiln left: the tree, part of it, no marker.
    let half = store.snapshot_dir().join(chain.digest());
    std::fs::create_dir_all(half.join("fs/only-some")).unwrap();
    assert!(store.snapshot(&chain).is_none());
    let path = store.create_snapshot(&chain, |d| Ok(std::fs::write(d.join("whole"), b"x")?)).unwrap();
    assert!(path.join("whole").is_file() && !path.join("only-some").exists());
}

#[test]
fn a_claimed_snapshot_leaves_the_store_and_can_come_back() {
    let (_dir, store) = store();
    let chain = digest_of(b"claim");
    store.create_snapshot(&chain, |d| Ok(std::fs::write(d.join("f"), b"x")?)).unwrap();
    let work = store.temp_dir().unwrap();
    let tree = store.claim_snapshot(&chain, &work.path().join("claimed")).unwrap();
    assert!(tree.join("f").is_file());
    assert!(store.snapshot(&chain).is_none());
    assert!(store.claim_snapshot(&chain, &work.path().join("again")).is_none());
    let back = store.publish_snapshot(&chain, &tree).unwrap();
    assert!(back.join("f").is_file() && store.snapshot(&chain).is_some());
}

#[test]
fn a_version_1_store_loses_its_snapshots_and_keeps_its_images() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _) = {
        let store = Store::open(dir.path()).unwrap();
        store.put_bytes(b"kept").unwrap()
    };
    std::fs::write(dir.path().join("kiln/version"), "1\n").unwrap();
    std::fs::create_dir_all(dir.path().join("kiln/snapshots/abc/etc")).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.opened().migrated_from, Some(1));
    assert_eq!(std::fs::read_to_string(dir.path().join("kiln/version")).unwrap(), "2\n");
    assert_eq!(std::fs::read_dir(store.snapshot_dir()).unwrap().count(), 0);
    assert!(store.has_blob(&d));
}

#[test]
fn fsck_finds_and_repairs_what_it_can() {
    let (dir, store) = store();
    let (layer, lsize) = store.put_bytes(b"layer").unwrap();
    let (config, csize) = store.put_bytes(b"{}").unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{csize}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{lsize}}}]}}"#
    );
    let desc = manifest_desc(&store, &manifest);
    store.set_tag("localhost/app:1", &desc).unwrap();
    let clean = store.fsck(false).unwrap();
    assert_eq!((clean.blobs, clean.images, clean.remaining()), (3, 1, 0), "{:?}", clean.findings);

    std::fs::write(store.blob_path(&layer), b"flipped").unwrap();
    std::fs::create_dir_all(store.snapshot_dir().join(format!("{}/fs", "a".repeat(64)))).unwrap();
    std::fs::write(dir.path().join("kiln/tmp/1-gone.lock"), b"").unwrap();
    std::fs::create_dir_all(dir.path().join("kiln/tmp/1-gone/work-1")).unwrap();
    let found = store.fsck(false).unwrap();
    let kinds: Vec<String> = found.findings.iter().map(|f| f.problem.to_string()).collect();
    assert_eq!(found.remaining(), 4, "{kinds:#?}");
    assert!(kinds.iter().any(|k| k.contains("is corrupt")), "{kinds:#?}");
    assert!(kinds.iter().any(|k| k.contains("needs blob") && k.contains("localhost/app:1")), "{kinds:#?}");
    assert!(kinds.iter().any(|k| k.contains("incomplete")), "{kinds:#?}");
    assert!(kinds.iter().any(|k| k.contains("killed kiln process")), "{kinds:#?}");

    let repaired = store.fsck(true).unwrap();
    assert_eq!(repaired.remaining(), 1, "only the image's missing layer remains: {:?}", repaired.findings);
    assert!(matches!(repaired.findings.iter().find(|f| !f.repaired).unwrap().problem, Problem::MissingBlob { .. }));
    assert!(!dir.path().join("kiln/tmp/1-gone").exists());
    assert_eq!(store.fsck(false).unwrap().remaining(), 1);
}

#[test]
fn a_leased_snapshot_cannot_be_claimed_and_a_claimed_one_cannot_be_leased() {
    let (_dir, store) = store();
    let chain = digest_of(b"leased");
    store.create_snapshot(&chain, |d| Ok(std::fs::write(d.join("f"), b"x")?)).unwrap();
    let work = store.temp_dir().unwrap();
    let lease = store.lease_snapshot(&chain).unwrap();
    assert!(lease.join("f").is_file());
    assert!(store.claim_snapshot(&chain, &work.path().join("claimed")).is_none(), "someone reads it");
    let second = store.lease_snapshot(&chain).expect("readers share");
    drop((lease, second));
    let tree = store.claim_snapshot(&chain, &work.path().join("claimed")).unwrap();
    assert!(store.lease_snapshot(&chain).is_none(), "claimed: out of the store");
    assert!(tree.join("f").is_file());
}

#[test]
fn a_snapshot_taken_whole_keeps_its_notes_is_refused_while_leased_and_leaves_nothing_when_dropped() {
    let (_dir, store) = store();
    let chain = digest_of(b"taken");
    let staged = store.stage_snapshot().unwrap();
    std::fs::create_dir(staged.tree().join("d")).unwrap();
    std::fs::write(staged.tree().join("d/f"), b"x").unwrap();
    std::fs::set_permissions(staged.tree().join("d"), std::fs::Permissions::from_mode(0o555)).unwrap();
    staged.set_note("files", b"notes").unwrap();
    staged.publish(&store, &chain).unwrap();
    let lease = store.lease_snapshot(&chain).unwrap();
    assert!(store.take_snapshot(&chain).is_none(), "someone reads it");
    assert!(lease.join("d/f").is_file(), "the leased snapshot is left whole");
    drop(lease);
    let taken = store.take_snapshot(&chain).unwrap();
    assert!(store.snapshot(&chain).is_none() && store.lease_snapshot(&chain).is_none(), "out of the store");
    assert_eq!(taken.note("files").as_deref(), Some(&b"notes"[..]));
    let tree = taken.tree();
    assert!(tree.join("d/f").is_file());
    drop(taken);
    assert!(!tree.exists(), "what is left of it is removed, read-only directories too");
    assert!(store.take_snapshot(&chain).is_none(), "gone");
}

#[test]
fn a_staged_snapshot_is_invisible_until_published_and_gone_when_dropped() {
    let (_dir, store) = store();
    let chain = digest_of(b"staged");
    let staged = store.stage_snapshot().unwrap();
    std::fs::write(staged.tree().join("f"), b"x").unwrap();
    staged.set_note("origin", b"made from").unwrap();
    assert!(store.snapshot(&chain).is_none());
    let tree = staged.publish(&store, &chain).unwrap();
    assert!(tree.join("f").is_file());
    assert_eq!(store.snapshot_note(&chain, "origin").as_deref(), Some(&b"made from"[..]));
    assert_eq!(store.full_snapshots(), vec![chain]);
    let dropped = store.stage_snapshot().unwrap();
    let path = dropped.tree();
    drop(dropped);
    assert!(!path.exists());
}

#[test]
fn repair_leaves_a_live_sessions_files_and_a_second_repair_finds_nothing() {
    let (dir, store) = store();
    // Another process's live session, at work.
    let live = Store::open(dir.path()).unwrap();
    std::fs::write(live.session_dir().join("partial"), b"in use").unwrap();
    // A killed one's.
    std::fs::write(dir.path().join("kiln/tmp/7-dead.lock"), b"").unwrap();
    std::fs::create_dir_all(dir.path().join("kiln/tmp/7-dead/work-1/u")).unwrap();
    std::fs::create_dir_all(dir.path().join("kiln/trash/7-dead.0/fs")).unwrap();

    let first = store.fsck(true).unwrap();
    assert_eq!(first.findings.len(), 2, "{:?}", first.findings);
    assert!(first.findings.iter().all(|f| f.repaired), "{:?}", first.findings);
    assert!(live.session_dir().join("partial").is_file(), "the live session's file stays");
    let again = store.fsck(true).unwrap();
    assert!(again.findings.is_empty(), "{:?}", again.findings);
    let mut left: Vec<String> = std::fs::read_dir(dir.path().join("kiln/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut sessions = [store.session.id().to_string(), live.session.id().to_string()];
    sessions.sort();
    let expected: Vec<String> = sessions.iter().flat_map(|id| [id.clone(), format!("{id}.lock")]).collect();
    assert_eq!(left, expected, "the two live sessions, nothing of the dead one");
    assert_eq!(std::fs::read_dir(dir.path().join("kiln/trash")).unwrap().count(), 0);
}

#[test]
fn a_look_for_leftovers_waits_while_a_session_is_being_started() {
    let (dir, store) = store();
    let kiln = dir.path().join("kiln");
    let sessions_lock = kiln.join("locks/sessions.lock");
    // A start in progress: it holds the sessions lock and has made its lock file, not yet locked it.
    let starting = lock_at(&sessions_lock, FlockArg::LockExclusive).unwrap();
    let lock_file = kiln.join("tmp/8-starting.lock");
    std::fs::write(&lock_file, b"").unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let own = store.session.id().to_string();
    let scanner = {
        let (kiln, sessions_lock) = (kiln.clone(), sessions_lock.clone());
        std::thread::spawn(move || {
            let found = session::leftovers(&kiln, &sessions_lock, &own).unwrap();
            done_tx.send(()).unwrap();
            found
        })
    };
    assert!(
        done_rx.recv_timeout(std::time::Duration::from_millis(300)).is_err(),
        "the scan waits for the start to finish"
    );
    // The start takes its lock (a scan holding it would make this fail) and makes its dir.
    let file = File::options().write(true).open(&lock_file).unwrap();
    let held = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e).expect("the start gets its lock");
    std::fs::create_dir(kiln.join("tmp/8-starting")).unwrap();
    drop(starting);
    assert!(scanner.join().unwrap().is_empty(), "a live session is no leftover");
    drop(held);
}

/// A root opened on a leased snapshot keeps the lease: nobody claims the tree while the root (or anything
/// holding it, like a COPY source) is alive.
#[test]
fn a_root_holding_a_lease_keeps_its_snapshot() {
    let (dir, store) = store();
    let chain = digest_of(b"leased-chain");
    store.create_snapshot(&chain, |tree| Ok(std::fs::write(tree.join("f"), b"x")?)).unwrap();
    let lease = store.lease_snapshot(&chain).unwrap();
    let root = std::sync::Arc::new(crate::confine::Root::open(lease.tree()).unwrap().holding(lease));
    let held = root.clone();
    drop(root);
    assert!(store.claim_snapshot(&chain, &dir.path().join("taken")).is_none(), "a held root keeps its lease");
    assert_eq!(held.read("f").unwrap(), b"x");
    drop(held);
    assert!(store.claim_snapshot(&chain, &dir.path().join("taken")).is_some(), "the lease ends with the root");
}
