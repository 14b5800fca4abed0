//! The CA layer (`--ca-persist`): the company CAs packaged into the image as ONE separate top layer, so
//! that `kiln ca-update` can later swap exactly that layer and leave every other one as it is.
//!
//! The layer holds:
//! - the anchors, where the distro's own tools look for local CAs: `/etc/pki/ca-trust/source/anchors/`
//!   on RHEL/UBI, `/usr/local/share/ca-certificates/` on Debian, Ubuntu and Alpine (`kiln-<id>.crt`);
//! - every system bundle the image has, regenerated: its own text, then the company CAs between two marker
//!   lines ([`BEGIN`], [`END`]) — the markers are what lets `ca-update` take the old CAs out again
//!   without reading any other layer;
//! - the JVM `cacerts` of each JDK in the image, rewritten as a PKCS#12 truststore of the new bundle.
//!
//! The image records the layer in labels ([`LABEL_LAYER`]: its diff id, [`LABEL_CERTS`]: the CAs'
//! fingerprints). File times are fixed ([`MTIME`] unless `SOURCE_DATE_EPOCH`), so the same CAs on the
//! same image give the same layer digest.

use super::{BUNDLE_PATHS, certs, truststore};
use crate::layer::{Entry, EntryKind, FileSource};
use crate::supply::ImageView;

/// Label naming the CA layer by its diff id.
pub const LABEL_LAYER: &str = "io.kiln.ca.layer";
/// Label listing the CAs in it (comma-separated `sha256:` fingerprints).
pub const LABEL_CERTS: &str = "io.kiln.ca.certs";
/// The history comment of the CA layer.
pub const HISTORY_COMMENT: &str = "kiln.ca-persist.v1";
/// First line of the company CAs in a regenerated bundle.
pub const BEGIN: &str = "# kiln:ca-persist begin (company CAs; replaced by kiln ca-update)";
/// Last line of the company CAs in a regenerated bundle.
pub const END: &str = "# kiln:ca-persist end";
/// File time of the layer's entries.
pub const MTIME: i64 = 0;

const RHEL_ANCHORS: &str = "/etc/pki/ca-trust/source/anchors";
const DEBIAN_ANCHORS: &str = "/usr/local/share/ca-certificates";
/// Where the CAs go when the image has no bundle at all.
const FALLBACK_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where JDKs keep their `cacerts` (links to the distro's shared one are followed).
const JVM_CACERTS: [&str; 3] =
    ["/etc/pki/java/cacerts", "/etc/ssl/certs/java/cacerts", "/opt/java/openjdk/lib/security/cacerts"];

/// The CA layer's entries for the image `view` shows.
pub fn layer_entries(view: &ImageView, cas: &[Vec<u8>], mtime: i64) -> Vec<Entry> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let anchors = if view.exists("/etc/pki/ca-trust") { RHEL_ANCHORS } else { DEBIAN_ANCHORS };
    for der in cas {
        files.push((format!("{anchors}/{}", anchor_name(der)), certs::to_pem(der).into_bytes()));
    }
    let mut bundles: Vec<String> = Vec::new();
    for path in BUNDLE_PATHS {
        if let Some(real) = view.real_path(path).filter(|p| view.read(p).is_some())
            && !bundles.contains(&real)
        {
            bundles.push(real);
        }
    }
    if bundles.is_empty() {
        bundles.push(FALLBACK_BUNDLE.to_string());
    }
    let mut main_bundle = String::new();
    for path in &bundles {
        let old = view.read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let new = with_block(&old, cas);
        if main_bundle.is_empty() {
            main_bundle = new.clone();
        }
        files.push((path.clone(), new.into_bytes()));
    }
    let store = truststore::encode(&certs::parse_pem(main_bundle.as_bytes()));
    for path in jvm_cacerts(view) {
        files.push((path, store.clone()));
    }
    entries(view, files, mtime)
}

/// The entries of a new CA layer made from an old one's files (`path`, content, mode): anchors replaced,
/// bundles given the new CAs between the markers, truststores regenerated. No other layer is needed.
pub fn updated_entries(old: &[(String, Vec<u8>, u32)], cas: &[Vec<u8>], mtime: i64) -> Vec<Entry> {
    let mut dirs: Vec<(String, u32)> = Vec::new();
    let mut files: Vec<(String, Vec<u8>, u32)> = Vec::new();
    let mut anchor_dir = None;
    let mut truststores = Vec::new();
    let mut main_bundle = String::new();
    for (path, bytes, mode) in old {
        let name = path.rsplit('/').next().unwrap_or_default();
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or_default();
        if bytes.is_empty() && path.ends_with('/') {
            dirs.push((path.trim_end_matches('/').to_string(), *mode));
        } else if name.starts_with("kiln-") && name.ends_with(".crt") {
            anchor_dir = Some(dir.to_string());
        } else if let Some(text) = std::str::from_utf8(bytes).ok().filter(|t| t.contains(BEGIN)) {
            let new = with_block(text, cas);
            if main_bundle.is_empty() {
                main_bundle = new.clone();
            }
            files.push((path.clone(), new.into_bytes(), *mode));
        } else {
            truststores.push((path.clone(), *mode));
        }
    }
    let anchor_dir = anchor_dir.unwrap_or_else(|| DEBIAN_ANCHORS.to_string());
    for der in cas {
        files.push((format!("{anchor_dir}/{}", anchor_name(der)), certs::to_pem(der).into_bytes(), 0o644));
    }
    let store = truststore::encode(&certs::parse_pem(main_bundle.as_bytes()));
    for (path, mode) in truststores {
        files.push((path, store.clone(), mode));
    }
    let mut out: Vec<Entry> = dirs
        .into_iter()
        .map(|(path, mode)| Entry {
            path: rel(&path),
            kind: EntryKind::Dir,
            mode,
            uid: 0,
            gid: 0,
            mtime,
            xattrs: Vec::new(),
        })
        .collect();
    for (path, bytes, mode) in files {
        out.push(file_entry(&path, bytes, mode, mtime));
    }
    ensure_parents(&mut out, |_| (0o755, 0, 0), mtime);
    out
}

/// `bundle` without an earlier company-CA block, with one for `cas` at its end.
pub fn with_block(bundle: &str, cas: &[Vec<u8>]) -> String {
    let mut out = strip_block(bundle);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(BEGIN);
    out.push('\n');
    for der in cas {
        out.push_str(&certs::to_pem(der));
    }
    out.push_str(END);
    out.push('\n');
    out
}

/// `bundle` with the lines from [`BEGIN`] to [`END`] removed.
pub fn strip_block(bundle: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in bundle.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if trimmed == BEGIN {
            inside = true;
        } else if trimmed == END && inside {
            inside = false;
        } else if !inside {
            out.push_str(line);
        }
    }
    out
}

/// The value of [`LABEL_CERTS`] for `cas`.
pub fn certs_label(cas: &[Vec<u8>]) -> String {
    cas.iter().map(|c| certs::fingerprint(c)).collect::<Vec<_>>().join(",")
}

fn anchor_name(der: &[u8]) -> String {
    format!("kiln-{}.crt", &certs::fingerprint(der)["sha256:".len()..][..16])
}

/// The real paths of the JVM `cacerts` files in the image.
fn jvm_cacerts(view: &ImageView) -> Vec<String> {
    let mut candidates: Vec<String> = JVM_CACERTS.iter().map(|s| s.to_string()).collect();
    for jdk in view.list("/usr/lib/jvm") {
        candidates.push(format!("/usr/lib/jvm/{jdk}/lib/security/cacerts"));
        candidates.push(format!("/usr/lib/jvm/{jdk}/jre/lib/security/cacerts"));
    }
    let mut out: Vec<String> = Vec::new();
    for path in candidates {
        if let Some(real) = view.real_path(&path).filter(|p| view.read(p).is_some())
            && !out.contains(&real)
        {
            out.push(real);
        }
    }
    out
}

/// Entries for `files`, with each file's mode and owner taken from the image where it exists, and the
/// parent directories as the image has them.
fn entries(view: &ImageView, files: Vec<(String, Vec<u8>)>, mtime: i64) -> Vec<Entry> {
    use std::os::unix::fs::MetadataExt;
    let mut out: Vec<Entry> = files
        .into_iter()
        .map(|(path, bytes)| {
            let mode = view.metadata(&path).filter(|m| m.is_file()).map_or(0o644, |m| m.mode() & 0o7777);
            file_entry(&path, bytes, mode, mtime)
        })
        .collect();
    ensure_parents(
        &mut out,
        |dir| {
            view.metadata(dir).filter(|m| m.is_dir()).map_or((0o755, 0, 0), |m| (m.mode() & 0o7777, m.uid(), m.gid()))
        },
        mtime,
    );
    out
}

fn file_entry(path: &str, bytes: Vec<u8>, mode: u32, mtime: i64) -> Entry {
    Entry {
        path: rel(path),
        kind: EntryKind::File(FileSource::Bytes(bytes)),
        mode,
        uid: 0,
        gid: 0,
        mtime,
        xattrs: Vec::new(),
    }
}

/// Adds a directory entry for every missing parent, with the mode and owner `meta` gives.
fn ensure_parents(out: &mut Vec<Entry>, meta: impl Fn(&str) -> (u32, u32, u32), mtime: i64) {
    let mut have: std::collections::HashSet<String> = out.iter().map(|e| e.path.clone()).collect();
    let mut dirs = Vec::new();
    for entry in out.iter() {
        for dir in std::path::Path::new(&entry.path).ancestors().skip(1) {
            let dir = dir.to_string_lossy().into_owned();
            if dir.is_empty() || !have.insert(dir.clone()) {
                continue;
            }
            let (mode, uid, gid) = meta(&format!("/{dir}"));
            dirs.push(Entry { path: dir, kind: EntryKind::Dir, mode, uid, gid, mtime, xattrs: Vec::new() });
        }
    }
    out.extend(dirs);
}

fn rel(path: &str) -> String {
    path.trim_start_matches('/').trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supply::trust::certs::{parse_pem, tests::TEST_CA, tests::TEST_CA_2};

    fn debian_view(t: &std::path::Path) -> ImageView {
        let root = t.join("root");
        std::fs::create_dir_all(root.join("etc/ssl/certs/java")).unwrap();
        std::fs::create_dir_all(root.join("usr/local/share/ca-certificates")).unwrap();
        std::fs::write(root.join("etc/ssl/certs/ca-certificates.crt"), TEST_CA_2).unwrap();
        std::fs::write(root.join("etc/ssl/certs/java/cacerts"), b"old store").unwrap();
        ImageView::new(vec![root])
    }

    fn file<'a>(entries: &'a [Entry], path: &str) -> &'a [u8] {
        let e = entries.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("{path} missing"));
        match &e.kind {
            EntryKind::File(FileSource::Bytes(b)) => b,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn the_layer_holds_anchors_bundles_and_truststores() {
        let t = tempfile::tempdir().unwrap();
        let cas = parse_pem(TEST_CA.as_bytes());
        let entries = layer_entries(&debian_view(t.path()), &cas, MTIME);
        let anchor = entries.iter().find(|e| e.path.starts_with("usr/local/share/ca-certificates/kiln-")).unwrap();
        assert_eq!(anchor.mode, 0o644);
        let bundle = String::from_utf8(file(&entries, "etc/ssl/certs/ca-certificates.crt").to_vec()).unwrap();
        assert!(bundle.starts_with(TEST_CA_2), "the image's own CAs stay first");
        assert_eq!(parse_pem(bundle.as_bytes()).len(), 2);
        assert_eq!(file(&entries, "etc/ssl/certs/java/cacerts")[0], 0x30, "a DER PKCS#12 store");
        for dir in ["etc", "etc/ssl", "etc/ssl/certs", "usr/local/share/ca-certificates"] {
            assert!(entries.iter().any(|e| e.path == dir && e.kind == EntryKind::Dir), "{dir}");
        }
        assert_eq!(layer_entries(&debian_view(t.path()), &cas, MTIME), entries, "deterministic");
    }

    #[test]
    fn an_update_swaps_the_cas_without_the_layers_below() {
        let t = tempfile::tempdir().unwrap();
        let old_cas = parse_pem(TEST_CA.as_bytes());
        let new_cas = parse_pem(TEST_CA_2.as_bytes());
        let old: Vec<(String, Vec<u8>, u32)> = layer_entries(&debian_view(t.path()), &old_cas, MTIME)
            .into_iter()
            .map(|e| match e.kind {
                EntryKind::File(FileSource::Bytes(b)) => (format!("/{}", e.path), b, e.mode),
                _ => (format!("/{}/", e.path), Vec::new(), e.mode),
            })
            .collect();
        let entries = updated_entries(&old, &new_cas, MTIME);
        let bundle = String::from_utf8(file(&entries, "etc/ssl/certs/ca-certificates.crt").to_vec()).unwrap();
        let certs = parse_pem(bundle.as_bytes());
        assert!(!certs.contains(&old_cas[0]), "the old company CA is gone");
        assert_eq!(bundle.matches(BEGIN).count(), 1);
        assert!(bundle.starts_with(TEST_CA_2), "the image's own part is kept");
        let anchors: Vec<&Entry> = entries.iter().filter(|e| e.path.contains("/kiln-")).collect();
        assert_eq!(anchors.len(), 1);
        assert!(anchors[0].path.ends_with(&anchor_name(&new_cas[0])));
        assert_eq!(file(&entries, "etc/ssl/certs/java/cacerts")[0], 0x30);
    }

    #[test]
    fn stripping_takes_only_the_marked_block() {
        let with = with_block("A\n", &parse_pem(TEST_CA.as_bytes()));
        assert_eq!(strip_block(&with), "A\n");
        assert_eq!(with_block(&with, &[]), format!("A\n{BEGIN}\n{END}\n"));
    }
}
