//! A real registry (Debian's `docker-registry`, CNCF distribution) on 127.0.0.1 with a free port and its
//! own storage, optionally behind htpasswd basic auth or TLS from a private CA; killed on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The private CA of a TLS registry (also `ca.crt` in [`Registry::cert_dir`]).
    pub ca: Option<std::path::PathBuf>,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts an open registry, or `None` (after saying why) when the tool is missing outside CI.
    pub fn start() -> Option<Registry> {
        Registry::start_with(None, false)
    }

    /// Starts a registry serving HTTPS for 127.0.0.1 with a certificate from a private CA ([`Registry::ca`]).
    pub fn with_tls() -> Option<Registry> {
        if !super::require("openssl") {
            return None;
        }
        Registry::start_with(None, true)
    }

    /// A directory holding the certificate as `ca.crt` (the `--cert-dir` layout podman uses).
    pub fn cert_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("certs")
    }

    /// Starts a registry that requires `user`/`pass` (bcrypt htpasswd, as distribution requires).
    pub fn with_basic_auth(user: &str, pass: &str) -> Option<Registry> {
        if !super::require("htpasswd") {
            return None;
        }
        Registry::start_with(Some((user, pass)), false)
    }

    /// Starts an open registry that logs every request it answers (see [`Registry::requests`]).
    pub fn with_access_log() -> Option<Registry> {
        Registry::start_logged(None, false, true)
    }

    /// The requests answered so far, as `(method, path)`, when started [`Registry::with_access_log`].
    pub fn requests(&self) -> Vec<(String, String)> {
        let log = std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default();
        let field = |line: &str, name: &str| {
            let start = line.find(name)? + name.len();
            let rest = line[start..].trim_start_matches('"');
            Some(rest.split(['"', ' ']).next()?.to_string())
        };
        log.lines()
            .filter(|l| l.contains("response completed"))
            .filter_map(|l| Some((field(l, "http.request.method=")?, field(l, "http.request.uri=")?)))
            .collect()
    }

    fn start_with(auth: Option<(&str, &str)>, tls: bool) -> Option<Registry> {
        Registry::start_logged(auth, tls, false)
    }

    fn start_logged(auth: Option<(&str, &str)>, tls: bool, logged: bool) -> Option<Registry> {
        if !super::require("docker-registry") {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: {}\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            if logged { "info" } else { "error" },
            dir.path().join("data").display()
        );
        if let Some((user, pass)) = auth {
            let line = super::tool("htpasswd", &["-Bbn", user, pass]);
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, line).expect("htpasswd file");
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n", file.display()));
        }
        let ca = tls.then(|| {
            // A private CA and a server certificate it signed, as an internal registry has them.
            let certs = dir.path().join("certs");
            std::fs::create_dir_all(&certs).expect("certs dir");
            let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
            let ca = certs.join("ca.crt").to_string_lossy().into_owned();
            let subj_ca = "/CN=kiln-test-ca";
            super::tool(
                "openssl",
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    subj_ca,
                    "-keyout",
                    &p("ca.key"),
                    "-out",
                    &ca,
                ],
            );
            let subj = "/CN=127.0.0.1";
            super::tool(
                "openssl",
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    subj,
                    "-keyout",
                    &p("server.key"),
                    "-out",
                    &p("server.csr"),
                ],
            );
            std::fs::write(p("ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").expect("ext file");
            super::tool(
                "openssl",
                &[
                    "x509",
                    "-req",
                    "-in",
                    &p("server.csr"),
                    "-CA",
                    &ca,
                    "-CAkey",
                    &p("ca.key"),
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &p("ext"),
                    "-out",
                    &p("server.crt"),
                ],
            );
            config.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", p("server.crt"), p("server.key")));
            certs.join("ca.crt")
        });
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(if logged {
                Stdio::from(std::fs::File::create(dir.path().join("registry.log")).expect("registry log"))
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("docker-registry starts");
        let registry = Registry { child, addr, ca, _dir: dir };
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
