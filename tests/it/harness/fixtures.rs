//! Image fixtures shaped like Red Hat's UBI images — made here, with real tools: RPMs built by `rpmbuild`,
//! installed into a SQLite RPM database by Debian's `rpm` 4.18 (`--justdb`), the same header blobs loaded into
//! a Berkeley DB hash `Packages` file (UBI 8's format) by `db_load`, and a Go program built by Debian's Go.
//! Built once per test run (and reused across runs) under `target/tmp/kiln-fixtures-v1/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// One RPM to build: name, epoch, version, release, license.
pub struct Rpm(pub &'static str, pub Option<u32>, pub &'static str, pub &'static str, pub &'static str);

/// Every package the fixtures install.
pub const RPMS: &[Rpm] = &[
    Rpm("bash", None, "5.1.8", "9.el9", "GPLv3+"),
    Rpm("glibc", None, "2.34", "100.el9", "LGPLv2+ and GPLv2+"),
    Rpm("openssl-libs", Some(1), "3.0.7", "27.el9", "ASL 2.0"),
    Rpm("python3", None, "3.9.18", "1.el9", "Python"),
    Rpm("python38", None, "3.8.17", "2.module+el8.9.0+19642+a12b4af6", "Python"),
    Rpm("platform-python", None, "3.6.8", "56.el8", "Python"),
    Rpm("java-1.8.0-openjdk-headless", Some(1), "1.8.0.402.b06", "2.el8", "ASL 1.1 and GPLv2 with exceptions"),
    Rpm("java-11-openjdk-headless", Some(1), "11.0.22.0.7", "1.el9", "ASL 1.1 and GPLv2 with exceptions"),
    Rpm("java-17-openjdk-headless", Some(1), "17.0.10.0.7", "1.el9", "ASL 1.1 and GPLv2 with exceptions"),
    Rpm("golang", None, "1.21.7", "1.el9", "BSD and Public Domain"),
];

/// Whether the fixture tools are here (fails under CI when they are not).
pub fn available() -> bool {
    ["rpmbuild", "rpm", "db_load", "go"].iter().all(|t| tool_present(t))
}

fn tool_present(tool: &str) -> bool {
    let arg = match tool {
        "go" => "version",
        "db_load" => "-V",
        _ => "--version",
    };
    let found = Command::new(tool).arg(arg).output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(!super::ci(), "{tool} is required under CI=true (make test-deps installs rpm, db-util and golang-go)");
        eprintln!("skipping: {tool} is not installed (make test-deps)");
    }
    found
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kiln-fixtures-v1")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?} cannot run: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `make` into a temp dir beside `dest` and renames it in, so concurrent tests and crashed runs never
/// see half a fixture.
fn once_into(dest: &Path, make: impl FnOnce(&Path)) {
    if dest.exists() {
        return;
    }
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    let tmp = tempfile::tempdir_in(dest.parent().expect("parent")).expect("temp dir");
    make(tmp.path());
    let staged = tmp.keep();
    if std::fs::rename(&staged, dest).is_err() {
        let _ = std::fs::remove_dir_all(&staged); // another test process made it first
    }
}

/// The directory of built RPMs (`NAME.rpm`).
pub fn rpms() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dest = root().join("rpms");
        once_into(&dest, |out| {
            let top = out.join("top");
            std::fs::create_dir_all(top.join("SPECS")).expect("mkdir");
            for Rpm(name, epoch, version, release, license) in RPMS {
                let epoch = epoch.map(|e| format!("Epoch: {e}\n")).unwrap_or_default();
                let spec = format!(
                    "Name: {name}\n{epoch}Version: {version}\nRelease: {release}\nSummary: kiln test fixture\n\
License: {license}\nBuildArch: x86_64\n%description\nkiln test fixture\n%files\n"
                );
                let path = top.join("SPECS").join(format!("{name}.spec"));
                std::fs::write(&path, spec).expect("spec");
                run(Command::new("rpmbuild")
                    .arg("-bb")
                    .arg("--define")
                    .arg(format!("_topdir {}", top.display()))
                    .arg("--define")
                    .arg("_build_id_links none")
                    .arg(&path));
            }
            for entry in std::fs::read_dir(top.join("RPMS/x86_64")).expect("RPMS") {
                let path = entry.expect("entry").path();
                let file = path.file_name().expect("name").to_string_lossy().into_owned();
                let name = RPMS.iter().find(|r| file.starts_with(&format!("{}-{}", r.0, r.2))).expect("known rpm").0;
                std::fs::rename(&path, out.join(format!("{name}.rpm"))).expect("move rpm");
            }
            std::fs::remove_dir_all(&top).expect("clean");
        });
        dest
    })
}

/// Installs `packages` into a fresh SQLite RPM database in `dbpath` (created), as `rpm -i --justdb` does on
/// RHEL 9: `rpmdb.sqlite` with its `-shm` and `-wal` files.
pub fn rpmdb_sqlite(dbpath: &Path, packages: &[&str]) {
    std::fs::create_dir_all(dbpath).expect("mkdir");
    let dbpath = dbpath.canonicalize().expect("absolute dbpath");
    run(Command::new("rpm").arg("--initdb").arg("--dbpath").arg(&dbpath));
    let mut cmd = Command::new("rpm");
    cmd.args(["-i", "--justdb", "--nodeps", "--noscripts", "--dbpath"]).arg(&dbpath);
    for p in packages {
        cmd.arg(rpms().join(format!("{p}.rpm")));
    }
    run(&mut cmd);
    let _ = std::fs::remove_file(dbpath.join(".rpm.lock"));
}

/// Writes a Berkeley DB hash `Packages` file (RHEL 8's RPM database) holding `packages`: the header blobs
/// rpm stored in a SQLite database, keyed by their instance numbers, loaded with `db_load -t hash`.
pub fn rpmdb_bdb(file: &Path, packages: &[&str]) {
    let tmp = tempfile::tempdir().expect("temp dir");
    rpmdb_sqlite(tmp.path(), packages);
    let conn = rusqlite::Connection::open(tmp.path().join("rpmdb.sqlite")).expect("open rpmdb.sqlite");
    let mut stmt = conn.prepare("SELECT hnum, blob FROM Packages ORDER BY hnum").expect("query");
    let rows: Vec<(u32, Vec<u8>)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("rows").collect::<Result<_, _>>().expect("rows");
    assert_eq!(rows.len(), packages.len(), "rpm installed every package");
    // db_dump's "bytevalue" format: a header, then key and value lines in hex, each with a leading space.
    let mut dump = String::from("VERSION=3\nformat=bytevalue\ntype=hash\nHEADER=END\n");
    for (hnum, blob) in &rows {
        dump.push_str(&format!(" {}\n {}\n", hex::encode(hnum.to_le_bytes()), hex::encode(blob)));
    }
    dump.push_str("DATA=END\n");
    let dump_file = tmp.path().join("dump.txt");
    std::fs::write(&dump_file, dump).expect("dump");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    run(Command::new("db_load").args(["-t", "hash", "-c", "db_pagesize=4096", "-f"]).arg(&dump_file).arg(file));
}

/// A Go program built here with Debian's Go, from a module with a dependency (replaced by a local copy,
/// so no module proxy is needed): its build info names `example.com/kiln-fixture` and `example.com/greeting`.
pub fn go_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dest = root().join("go");
        once_into(&dest, |out| {
            let src = out.join("src");
            std::fs::create_dir_all(src.join("greeting")).expect("mkdir");
            std::fs::write(
                src.join("go.mod"),
                "module example.com/kiln-fixture\n\ngo 1.19\n\nrequire example.com/greeting v1.4.2\n\nreplace example.com/greeting => ./greeting\n",
            )
            .expect("go.mod");
            std::fs::write(src.join("greeting/go.mod"), "module example.com/greeting\n\ngo 1.19\n").expect("go.mod");
            std::fs::write(src.join("greeting/greeting.go"), "package greeting\n\nfunc Hello() string { return \"hello\" }\n")
                .expect("greeting.go");
            std::fs::write(
                src.join("main.go"),
                "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/greeting\"\n)\n\nfunc main() { fmt.Println(greeting.Hello()) }\n",
            )
            .expect("main.go");
            run(Command::new("go")
                .args(["build", "-o"])
                .arg(out.join("hello"))
                .arg(".")
                .current_dir(&src)
                .env("GOFLAGS", "-mod=mod")
                .env("GOPROXY", "off")
                .env("GOCACHE", out.join("cache"))
                .env("HOME", out));
            let _ = std::fs::remove_dir_all(out.join("cache"));
        });
        dest.join("hello")
    })
}

/// The Go version the fixture binary was built with (`go1.19.8`).
pub fn go_version() -> String {
    let out = Command::new("go").arg("version").output().expect("go version");
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(2).expect("go version word").to_string()
}

/// The Go program with its recorded Go version rewritten to an older one of the same length (`go1.19.8` →
/// `go1.16.8`): what a binary built by an old toolchain says about itself.
pub fn old_go_binary() -> Vec<u8> {
    let bytes = std::fs::read(go_binary()).expect("read go binary");
    let real = go_version();
    let (major, rest) = real.split_once('.').expect("go1.N");
    let (_, patch) = rest.split_once('.').unwrap_or((rest, "0"));
    let old = format!("{major}.16.{patch}");
    assert_eq!(old.len(), real.len(), "same length, so the binary's layout stays intact");
    replace_all(&bytes, real.as_bytes(), old.as_bytes())
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = haystack.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}

/// A rootfs under construction in a workspace (`rootfs/` of the build context).
pub struct Rootfs(pub PathBuf);

impl Rootfs {
    /// Writes a file (parents created).
    pub fn file(&self, rel: &str, content: impl AsRef<[u8]>) -> &Rootfs {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write");
        self
    }

    /// Writes an executable file.
    pub fn exe(&self, rel: &str, content: impl AsRef<[u8]>) -> &Rootfs {
        self.file(rel, content);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.0.join(rel), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        self
    }

    /// Makes a symlink.
    pub fn link(&self, rel: &str, target: &str) -> &Rootfs {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink(target, path).expect("symlink");
        self
    }

    /// `/etc/os-release` and `/etc/redhat-release` of RHEL `version` (`9.4`), and UBI's repo file.
    pub fn ubi(&self, version: &str) -> &Rootfs {
        let major = version.split('.').next().unwrap_or(version);
        let codename = if major == "8" { "Ootpa" } else { "Plow" };
        self.file(
            "usr/lib/os-release",
            format!(
                "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"{version} ({codename})\"\nID=\"rhel\"\nID_LIKE=\"fedora\"\n\
VERSION_ID=\"{version}\"\nPLATFORM_ID=\"platform:el{major}\"\nPRETTY_NAME=\"Red Hat Enterprise Linux {version} ({codename})\"\n"
            ),
        )
        .link("etc/os-release", "../usr/lib/os-release")
        .file("etc/redhat-release", format!("Red Hat Enterprise Linux release {version} ({codename})\n"))
        .file("etc/yum.repos.d/ubi.repo", format!("[ubi-{major}-baseos-rpms]\nname = Red Hat Universal Base Image {major}\n"))
    }

    /// The RPM database: SQLite for UBI 9, Berkeley DB for UBI 8.
    pub fn rpmdb(&self, ubi8: bool, packages: &[&str]) -> &Rootfs {
        if ubi8 {
            rpmdb_bdb(&self.0.join("var/lib/rpm/Packages"), packages);
        } else {
            rpmdb_sqlite(&self.0.join("var/lib/rpm"), packages);
        }
        self
    }

    /// A Python `major.minor` interpreter in `bin_dir` with its standard library under `lib64`.
    pub fn python(&self, bin: &str, version: &str) -> &Rootfs {
        self.exe(bin, "#!/bin/sh\n# stands in for the interpreter\n")
            .file(&format!("usr/lib64/python{version}/os.py",), "# stdlib marker\n")
    }

    /// A JDK `release` file under `/usr/lib/jvm/<dir>` and the `jre` symlinks RHEL makes.
    pub fn jdk(&self, dir: &str, java_version: &str) -> &Rootfs {
        self.file(
            &format!("usr/lib/jvm/{dir}/release"),
            format!("IMPLEMENTOR=\"Red Hat, Inc.\"\nJAVA_VERSION=\"{java_version}\"\nJAVA_RUNTIME_VERSION=\"{java_version}+7-LTS\"\n"),
        )
        .link("usr/lib/jvm/jre", dir)
    }
}

/// A workspace whose context holds `rootfs/` and a `FROM scratch` + `COPY rootfs/ /` Dockerfile with `tail`
/// appended (`ENV ...`, `USER 1001`).
pub fn image_workspace(tail: &str) -> (super::Workspace, Rootfs) {
    let ws = super::Workspace::new();
    ws.dockerfile(&format!("FROM scratch\nCOPY rootfs/ /\n{tail}"));
    let rootfs = Rootfs(ws.path().join("rootfs"));
    std::fs::create_dir_all(&rootfs.0).expect("mkdir rootfs");
    (ws, rootfs)
}
