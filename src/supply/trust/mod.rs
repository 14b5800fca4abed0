//! CA trust during a build: the company CAs given with `--ca-cert`, made visible to every tool a RUN step
//! may start, and — with `--ca-persist` — packaged into the image as one replaceable layer.
//!
//! For a step ([`Trust::for_step`]): the image's own system bundle (read through the step's
//! [`ImageView`](super::view::ImageView)) plus the company CAs becomes one merged bundle, kept in the
//! store by content digest and *placed* at every distro bundle path: the step sees it as the image's own
//! file, and may replace it (`update-ca-certificates`, `update-ca-trust` and package updates of
//! `ca-certificates` rename a new bundle over it, which a read-only bind would refuse with EBUSY). A
//! bundle the command left alone never reaches a layer; one it changed does, as the command made it —
//! where the command only added to the end, with the image's own bundle in place of kiln's. A JVM
//! truststore with the same certificates goes beside it, and the environment names both for tools that
//! carry their own bundles. Input: CA files and a view; output: mounts and environment, nothing else.

pub mod certs;
pub mod persist;
pub mod truststore;
pub mod update;

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::StepSupply;
use super::view::ImageView;
pub use certs::CaFile;

/// Where the distros keep the bundle TLS clients read; the merged bundle is bound over each.
pub const BUNDLE_PATHS: [&str; 7] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/openssl/ca-bundle.trust.crt",
    "/etc/pki/tls/cert.pem",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// Where a step finds the merged bundle whatever its distro (the environment points here).
pub const STEP_BUNDLE: &str = "/run/kiln/supply/ca-bundle.pem";
/// Where a step finds the JVM truststore.
pub const STEP_TRUSTSTORE: &str = "/run/kiln/supply/truststore.p12";

/// Variables naming the merged bundle, for tools that do not read the system one.
pub const BUNDLE_VARS: [&str; 6] =
    ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "GIT_SSL_CAINFO"];

/// Why CA trust could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A CA file could not be read.
    #[error("cannot read CA file {path}: {source}")]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A CA file holds no certificate.
    #[error("CA file {path}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A generated trust file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The company CAs of one build, and where their merged bundles are kept.
#[derive(Debug)]
pub struct Trust {
    certs: Vec<Vec<u8>>,
    cache_dir: PathBuf,
}

impl Trust {
    /// Trust in the certificates of `files`; generated bundles go to `cache_dir` (in the store).
    pub fn new(files: &[CaFile], cache_dir: PathBuf) -> Trust {
        Trust { certs: certs::all_certs(files), cache_dir }
    }

    /// The company CAs, DER.
    pub fn certs(&self) -> &[Vec<u8>] {
        &self.certs
    }

    /// What enters RUN cache keys: the CAs' fingerprints, sorted (their content, never their paths).
    pub fn key_part(&self) -> String {
        let mut prints: Vec<String> = self.certs.iter().map(|c| certs::fingerprint(c)).collect();
        prints.sort();
        format!("ca={}", prints.join(","))
    }

    /// Adds the step's trust mounts and environment to `out`.
    pub fn for_step(&self, view: &ImageView, out: &mut StepSupply) -> Result<(), TrustError> {
        let system = system_bundle(view).unwrap_or_default();
        // Named by what they are made of, so a step only reads and hashes the image's bundle: parsing and
        // merging (milliseconds for a distro bundle) happen once per bundle and CA set, for every build.
        let mut hasher = Sha256::new();
        hasher.update(system.as_bytes());
        hasher.update(self.key_part().as_bytes());
        let key = hex::encode(hasher.finalize());
        let merged = || merge(&system, &self.certs);
        let bundle = self.cached(&format!("bundle-{key}.pem"), || merged().into_bytes())?;
        let store = self
            .cached(&format!("truststore-{key}.p12"), || truststore::encode(&certs::parse_pem(merged().as_bytes())))?;
        // `Supply::step` resolves them through the image's links: paths that lead to one file (RHEL's
        // cert.pem and ca-bundle.crt) get it once, at the file.
        for path in BUNDLE_PATHS {
            out.place(&bundle, path);
        }
        out.bind(&bundle, STEP_BUNDLE);
        out.bind(&store, STEP_TRUSTSTORE);
        for var in BUNDLE_VARS {
            out.set(var, STEP_BUNDLE);
        }
        out.append(
            "JAVA_TOOL_OPTIONS",
            &format!(
                "-Djavax.net.ssl.trustStore={STEP_TRUSTSTORE} -Djavax.net.ssl.trustStoreType=PKCS12 \
                 -Djavax.net.ssl.trustStorePassword={}",
                truststore::PASSWORD
            ),
        );
        Ok(())
    }

    /// The file `name` in the cache directory, written from `make` when missing (temp file, rename).
    fn cached(&self, name: &str, make: impl FnOnce() -> Vec<u8>) -> Result<PathBuf, TrustError> {
        let path = self.cache_dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
        write_atomically(&path, &make())?;
        Ok(path)
    }
}

/// The image's own CA bundle: the first distro bundle path that holds certificates.
pub fn system_bundle(view: &ImageView) -> Option<String> {
    BUNDLE_PATHS
        .iter()
        .filter_map(|p| view.read(p))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .find(|text| text.contains("-----BEGIN CERTIFICATE-----"))
}

/// The system bundle followed by those of `cas` it lacks, each as PEM.
pub fn merge(system: &str, cas: &[Vec<u8>]) -> String {
    let present = certs::parse_pem(system.as_bytes());
    let mut out = system.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for der in cas.iter().filter(|c| !present.contains(c)) {
        out.push_str(&certs::to_pem(der));
    }
    out
}

/// Writes `bytes` to `path` through a temp file in the same directory, so readers never see half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TrustError> {
    let fail = |source| TrustError::Write { path: path.to_path_buf(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(fail)?;
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644)).map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::certs::tests::{TEST_CA, TEST_CA_2};
    use super::*;

    fn view_with(files: &[(&str, &str)]) -> (tempfile::TempDir, ImageView) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        for (path, text) in files {
            let p = root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::fs::create_dir_all(&root).unwrap();
        (t, ImageView::new(vec![root]))
    }

    #[test]
    fn the_merged_bundle_keeps_the_image_bundle_and_adds_missing_cas_once() {
        let cas = [certs::parse_pem(TEST_CA.as_bytes()), certs::parse_pem(TEST_CA_2.as_bytes())].concat();
        let merged = merge(TEST_CA, &cas);
        assert!(merged.starts_with(TEST_CA));
        assert_eq!(certs::parse_pem(merged.as_bytes()).len(), 2, "a CA the image already has is not repeated");
        assert_eq!(merge("", &cas[..1]), TEST_CA);
    }

    #[test]
    fn every_bundle_path_gets_the_merged_bundle_and_the_environment_names_it() {
        let (t, view) = view_with(&[("/etc/ssl/certs/ca-certificates.crt", TEST_CA_2)]);
        let files = [CaFile { path: "ca.pem".into(), certs: certs::parse_pem(TEST_CA.as_bytes()) }];
        let trust = Trust::new(&files, t.path().join("cache"));
        let mut out = StepSupply::default();
        trust.for_step(&view, &mut out).unwrap();
        let placed: Vec<&str> = out.placed.iter().map(|p| p.target.as_str()).collect();
        assert_eq!(placed, BUNDLE_PATHS, "placed, not bound: a step may replace them");
        let targets: Vec<&str> = out.mounts.iter().map(|m| m.target()).collect();
        assert_eq!(targets, [StepSupply::RUN_DIR, STEP_BUNDLE, STEP_TRUSTSTORE]);
        let crate::sandbox::SandboxMount::Bind { readonly, .. } = &out.mounts[1] else { panic!() };
        assert!(readonly);
        let text = std::fs::read_to_string(&out.placed[0].source).unwrap();
        assert_eq!(certs::parse_pem(text.as_bytes()).len(), 2, "the image's CA and the company CA");
        for var in BUNDLE_VARS {
            assert!(out.env.contains(&(var.to_string(), STEP_BUNDLE.to_string())), "{var}");
        }
        assert!(out.env.iter().any(|(k, v)| k == "JAVA_TOOL_OPTIONS" && v.contains(STEP_TRUSTSTORE)));
    }

    #[test]
    fn the_cache_key_part_depends_on_content_not_paths() {
        let t = tempfile::tempdir().unwrap();
        let der = certs::parse_pem(TEST_CA.as_bytes());
        let a = Trust::new(&[CaFile { path: "/a/ca.pem".into(), certs: der.clone() }], t.path().into());
        let b = Trust::new(&[CaFile { path: "/b/other.pem".into(), certs: der }], t.path().into());
        let c = Trust::new(
            &[CaFile { path: "/a/ca.pem".into(), certs: certs::parse_pem(TEST_CA_2.as_bytes()) }],
            t.path().into(),
        );
        assert_eq!(a.key_part(), b.key_part());
        assert_ne!(a.key_part(), c.key_part());
    }
}
