//! A real registry (Debian's `docker-registry`, CNCF distribution) on 127.0.0.1 with a free port and its
//! own storage, optionally behind htpasswd basic auth; killed on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts an open registry, or `None` (after saying why) when the tool is missing outside CI.
    pub fn start() -> Option<Registry> {
        Registry::start_with(None)
    }

    /// Starts a registry that requires `user`/`pass` (bcrypt htpasswd, as distribution requires).
    pub fn with_basic_auth(user: &str, pass: &str) -> Option<Registry> {
        if !super::require("htpasswd") {
            return None;
        }
        Registry::start_with(Some((user, pass)))
    }

    fn start_with(auth: Option<(&str, &str)>) -> Option<Registry> {
        if !super::require("docker-registry") {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if let Some((user, pass)) = auth {
            let line = super::tool("htpasswd", &["-Bbn", user, pass]);
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, line).expect("htpasswd file");
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n", file.display()));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        let registry = Registry { child, addr, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.addr).is_err() {
            assert!(Instant::now() < deadline, "registry did not start on {}", registry.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(registry)
    }

    /// `docker://127.0.0.1:PORT/<path>` for skopeo.
    pub fn docker_ref(&self, path: &str) -> String {
        format!("docker://{}/{path}", self.addr)
    }

    /// `127.0.0.1:PORT/<path>` for kiln.
    pub fn name(&self, path: &str) -> String {
        format!("{}/{path}", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
