//! The client against a real registry (Debian's `docker-registry`, CNCF distribution) on 127.0.0.1.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use oci_spec::image::{Descriptor, Digest, MediaType};
use sha2::{Digest as _, Sha256};

use super::*;
use crate::image::{Platform, Reference, media};

/// A registry process on a free loopback port, killed on drop.
struct TestRegistry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    fn start(htpasswd: Option<(&str, &str)>) -> Option<TestRegistry> {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        if Command::new("docker-registry").arg("--version").output().is_err() {
            assert!(!ci, "docker-registry is required under CI=true (make test-deps)");
            eprintln!("skipping: docker-registry not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if let Some((user, pass)) = htpasswd {
            let out = Command::new("htpasswd").args(["-Bbn", user, pass]).output().expect("htpasswd (apache2-utils)");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, out.stdout).unwrap();
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n", file.display()));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = TestRegistry { child, addr, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.addr).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(registry)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct MemSink(Mutex<HashMap<String, Vec<u8>>>);

struct Owned(std::sync::Arc<MemSink>, Vec<u8>);

impl Write for Owned {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl BlobIngest for Owned {
    fn commit(self: Box<Self>, expected: &Digest) -> std::io::Result<()> {
        self.0.0.lock().unwrap().insert(expected.to_string(), self.1);
        Ok(())
    }
}

struct ArcSink(std::sync::Arc<MemSink>);

impl BlobSink for ArcSink {
    fn contains(&self, d: &Digest) -> bool {
        self.0.0.lock().unwrap().contains_key(&d.to_string())
    }
    fn begin(&self) -> std::io::Result<Box<dyn BlobIngest>> {
        Ok(Box::new(Owned(self.0.clone(), Vec::new())))
    }
}

struct FileSource(HashMap<String, PathBuf>);

impl BlobSource for FileSource {
    fn path(&self, d: &Digest) -> Option<PathBuf> {
        self.0.get(&d.to_string()).cloned()
    }
}

fn digest(bytes: &[u8]) -> Digest {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes))).parse().unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn plain_http() -> RegistryOptions {
    RegistryOptions { tls_verify: false, ..Default::default() }
}

/// An image of one config and one layer, files on disk, ready to push.
fn image(dir: &std::path::Path) -> (Vec<u8>, Vec<Descriptor>, FileSource) {
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let layer = b"not really a tar, but a blob all the same".to_vec();
    let mut files = HashMap::new();
    let mut descs = Vec::new();
    for (bytes, mt) in [(&config, MediaType::ImageConfig), (&layer, MediaType::ImageLayerGzip)] {
        let d = digest(bytes);
        let path = dir.join(d.digest());
        std::fs::write(&path, bytes).unwrap();
        files.insert(d.to_string(), path);
        descs.push(Descriptor::new(mt, bytes.len() as u64, d));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descs[0],
        "layers": [descs[1]],
    });
    (serde_json::to_vec(&manifest).unwrap(), descs, FileSource(files))
}

#[test]
fn push_then_pull_round_trips_and_mounts_across_repositories() {
    let Some(registry) = TestRegistry::start(None) else { return };
    let dir = tempfile::tempdir().unwrap();
    let (manifest, descs, source) = image(dir.path());
    let client = Client::new(plain_http()).unwrap();
    let dest = Reference::parse(&format!("{}/team/app:1", registry.addr)).unwrap();
    let rt = rt();
    let pushed = rt.block_on(push_image(&client, &dest, &manifest, media::OCI_MANIFEST, &descs, &source, &[])).unwrap();
    assert_eq!(pushed.to_string(), digest(&manifest).to_string());
    let sink = std::sync::Arc::new(MemSink::default());
    let pulled = rt.block_on(pull_image(&client, &dest, &Platform::host(), &ArcSink(sink.clone()))).unwrap();
    assert_eq!(pulled.manifest, manifest);
    assert_eq!(sink.0.lock().unwrap().len(), 2);
    let other = Reference::parse(&format!("{}/other/app:1", registry.addr)).unwrap();
    assert!(!rt.block_on(client.blob_exists(&other, descs[1].digest())).unwrap());
    assert!(rt.block_on(client.mount_blob(&other, descs[1].digest(), &dest)).unwrap());
    assert!(rt.block_on(client.blob_exists(&other, descs[1].digest())).unwrap());
}

#[test]
fn missing_images_name_the_registry_and_status() {
    let Some(registry) = TestRegistry::start(None) else { return };
    let client = Client::new(plain_http()).unwrap();
    let missing = Reference::parse(&format!("{}/no/such:1", registry.addr)).unwrap();
    let err = rt().block_on(client.get_manifest(&missing, "1")).unwrap_err().to_string();
    assert!(err.contains(&registry.addr) && err.contains("404"), "{err}");
    assert!(err.contains("MANIFEST_UNKNOWN"), "{err}");
}

#[test]
fn basic_auth_is_required_and_used() {
    let Some(registry) = TestRegistry::start(Some(("kiln", "s3cret"))) else { return };
    let dir = tempfile::tempdir().unwrap();
    let (manifest, descs, source) = image(dir.path());
    let dest = Reference::parse(&format!("{}/secure/app:1", registry.addr)).unwrap();
    let anonymous = Client::new(plain_http()).unwrap();
    let err = rt()
        .block_on(push_image(&anonymous, &dest, &manifest, media::OCI_MANIFEST, &descs, &source, &[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("401") && err.contains(&registry.addr), "{err}");
    assert!(!err.contains("s3cret"));
    let auth_file = dir.path().join("auth.json");
    let files = AuthFiles::only(&auth_file);
    let wrong = rt().block_on(login(&anonymous, &files, &registry.addr, "kiln", "wrong"));
    assert!(wrong.is_err() && !auth_file.exists());
    rt().block_on(login(&anonymous, &files, &registry.addr, "kiln", "s3cret")).unwrap();
    let authed = Client::new(RegistryOptions { auth: files.clone(), ..plain_http() }).unwrap();
    rt().block_on(push_image(&authed, &dest, &manifest, media::OCI_MANIFEST, &descs, &source, &[])).unwrap();
    assert!(logout(&files, &registry.addr).unwrap());
}
