//! Real peers for the supply-chain tests, all on 127.0.0.1 with free ports and killed on drop: a private
//! CA that signs server certificates (openssl), a Python package index over HTTPS (pypiserver under
//! gunicorn) serving wheels the test writes, apt-cacher-ng in front of the Debian mirror this machine's
//! apt uses, a TLS server (`openssl s_server -www`), and the Debian python3 + pip image that
//! `make test-fixtures` makes with debootstrap (imported with kiln once, kept under the test cache).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Kiln, Workspace, ci, require, tool};

/// Where heavy fixtures live between runs (`KILN_TEST_CACHE`, as the Makefile names it).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("KILN_TEST_CACHE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/cache/kiln-test"))
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port()
}

/// A free port below 32768: apt-cacher-ng cannot bind higher ones (it reads the port as a signed short).
fn free_low_port() -> u16 {
    let start = 20_000 + (std::process::id() as u16 % 1000) * 12;
    (0..12_000u16)
        .map(|i| 20_000 + (start - 20_000 + i) % 12_000)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 32768")
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not start on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed when dropped.
pub struct Peer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Peer {
    /// Its scratch directory (logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private CA (openssl) that signs certificates for 127.0.0.1.
pub struct Pki {
    dir: tempfile::TempDir,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
}

impl Pki {
    /// A new CA named `name`, or `None` without openssl (a failure under CI).
    pub fn new(name: &str) -> Option<Pki> {
        if !require("openssl") {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = dir.path().join("ca.crt");
        let key = dir.path().join("ca.key");
        let subject = format!("/CN={name}");
        openssl(
            &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subject, "-keyout"],
            &key,
            &ca,
        );
        Some(Pki { dir, ca })
    }

    /// A server certificate and key for 127.0.0.1 signed by this CA.
    pub fn server(&self, name: &str) -> (PathBuf, PathBuf) {
        let p = |f: &str| self.dir.path().join(format!("{name}.{f}"));
        let (cert, key, csr, ext) = (p("crt"), p("key"), p("csr"), p("ext"));
        openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout"], &key, &csr);
        std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").expect("ext");
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let ca_key = self.dir.path().join("ca.key");
        tool(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &s(&csr),
                "-CA",
                &s(&self.ca),
                "-CAkey",
                &s(&ca_key),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &s(&ext),
                "-out",
                &s(&cert),
            ],
        );
        (cert, key)
    }
}

fn openssl(args: &[&str], key: &Path, out: &Path) {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.push(key.to_string_lossy().into_owned());
    all.push("-out".to_string());
    all.push(out.to_string_lossy().into_owned());
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    tool("openssl", &refs);
}

/// Writes a pure-Python wheel `name-version` whose module holds `VALUE = value` into `dir`.
pub fn wheel(dir: &Path, name: &str, version: &str, value: &str) -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/supply/make_wheel.py");
    let out = tool("python3", &[script, &dir.to_string_lossy(), name, version, value]);
    PathBuf::from(out.trim())
}

/// pypiserver over HTTPS (gunicorn with a certificate from `pki`) serving the wheels in `packages`; its
/// access log records every request. `None` when the test tools are missing (a failure under CI).
pub fn pypiserver(pki: &Pki, packages: &Path) -> Option<Peer> {
    let gunicorn = cache_dir().join("venv/bin/gunicorn");
    if !gunicorn.exists() {
        assert!(!ci(), "pypiserver is required under CI=true (make test-tools)");
        eprintln!("skipping: pypiserver is not installed (make test-tools)");
        return None;
    }
    let (cert, key) = pki.server("pypi");
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let app =
        format!("pypiserver:app(roots=[{:?}], authenticate=[], password_file='.')", packages.display().to_string());
    let mut child = Command::new(&gunicorn)
        .args(["--bind", &format!("127.0.0.1:{port}"), "--workers", "2", "--certfile"])
        .arg(&cert)
        .arg("--keyfile")
        .arg(&key)
        .arg("--access-logfile")
        .arg(dir.path().join("access.log"))
        .arg("--control-socket")
        .arg(dir.path().join("gunicorn.ctl"))
        .arg(&app)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("gunicorn.log")).expect("log"))
        .spawn()
        .expect("gunicorn starts");
    wait_for_port(port, "pypiserver", &mut child);
    Some(Peer { child, port, dir })
}

/// The request lines (`GET /simple/x/`) pypiserver has answered.
pub fn pypi_requests(peer: &Peer) -> Vec<String> {
    let log = std::fs::read_to_string(peer.dir().join("access.log")).unwrap_or_default();
    log.lines().filter_map(|l| l.split('"').nth(1)).map(|r| r.trim_end_matches(" HTTP/1.1").to_string()).collect()
}

/// apt-cacher-ng on a free port, caching what it fetches from the Debian mirror under a fresh directory.
pub fn apt_cacher_ng() -> Option<Peer> {
    if !Path::new("/usr/sbin/apt-cacher-ng").exists() {
        assert!(!ci(), "apt-cacher-ng is required under CI=true (make test-deps)");
        eprintln!("skipping: apt-cacher-ng is not installed (make test-deps)");
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_low_port();
    let d = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    for sub in ["cache", "log", "conf"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    let conf = format!(
        "CacheDir: {}\nLogDir: {}\nSupportDir: /usr/lib/apt-cacher-ng\nPort: {port}\nBindAddress: 127.0.0.1\n\
         SocketPath: {}\nPidFile: {}\nForeGround: 1\nExThreshold: 4\n",
        d("cache"),
        d("log"),
        d("socket"),
        d("pid")
    );
    std::fs::write(dir.path().join("conf/acng.conf"), conf).expect("acng.conf");
    let mut child = Command::new("/usr/sbin/apt-cacher-ng")
        .arg("-c")
        .arg(dir.path().join("conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("apt-cacher-ng starts");
    wait_for_port(port, "apt-cacher-ng", &mut child);
    Some(Peer { child, port, dir })
}

/// The paths apt-cacher-ng served (`deb.example.org/debian/dists/...`).
pub fn apt_cacher_requests(peer: &Peer) -> Vec<String> {
    let log = std::fs::read_to_string(peer.dir().join("log/apt-cacher.log")).unwrap_or_default();
    log.lines().filter_map(|l| l.split('|').nth(4)).map(str::to_string).collect()
}

/// `openssl s_server -www` on a free port with a certificate from `pki` (answers any GET with a status page).
pub fn tls_server(pki: &Pki, name: &str) -> Peer {
    let (cert, key) = pki.server(name);
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut child = Command::new("openssl")
        .args(["s_server", "-www", "-quiet", "-accept", &format!("127.0.0.1:{port}"), "-cert"])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server starts");
    wait_for_port(port, "openssl s_server", &mut child);
    Peer { child, port, dir }
}

/// Name of the Debian python3 + pip image in the store of `kiln` after [`debian_python`].
pub const DEBIAN_PYTHON: &str = "localhost/debian-python:bookworm";

/// Puts the Debian python3 + pip test image into `kiln`'s store (skopeo copies it from the OCI layout
/// kept in the test cache, made from `make test-fixtures`' debootstrap tar by kiln itself on first use).
/// `None` when the fixture is missing (a failure under CI).
pub fn debian_python(kiln: &Kiln) -> Option<&'static str> {
    if !require("skopeo") {
        return None;
    }
    static LAYOUT: OnceLock<Option<PathBuf>> = OnceLock::new();
    let layout = LAYOUT.get_or_init(import_debian_python).as_ref()?;
    tool(
        "skopeo",
        &[
            "copy",
            "-q",
            &format!("oci:{}:debian-python", layout.display()),
            &format!("oci:{}:{DEBIAN_PYTHON}", kiln.store().display()),
        ],
    );
    Some(DEBIAN_PYTHON)
}

fn import_debian_python() -> Option<PathBuf> {
    let cache = cache_dir();
    let layout = cache.join("debian-bookworm-python.oci");
    if layout.join("index.json").is_file() {
        return Some(layout);
    }
    let tar = cache.join("debian-bookworm-python.tar");
    if !tar.is_file() {
        assert!(!ci(), "{} is required under CI=true (make test-fixtures)", tar.display());
        eprintln!("skipping: {} is missing (make test-fixtures)", tar.display());
        return None;
    }
    let ws = Workspace::new();
    let rootfs = ws.path().join("rootfs.tar");
    if std::fs::hard_link(&tar, &rootfs).is_err() {
        std::fs::copy(&tar, &rootfs).expect("copy the rootfs tar");
    }
    ws.dockerfile("FROM scratch\nADD rootfs.tar /\nCMD [\"/bin/bash\"]\n");
    let kiln = Kiln::new();
    kiln.build(&ws, "debian-python:bookworm", &[]);
    let partial = cache.join(format!("debian-bookworm-python.oci.{}", std::process::id()));
    kiln.ok(&["push", "localhost/debian-python:bookworm", &format!("oci:{}:debian-python", partial.display())]);
    std::fs::rename(&partial, &layout).expect("publish the layout");
    Some(layout)
}
