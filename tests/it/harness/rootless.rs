//! Running kiln as an unprivileged user with a sub-id range, as on a laptop. As root (CI), the harness
//! creates that user (`useradd`, `usermod --add-subuids`) and runs a world-readable copy of kiln through
//! `runuser`; as a non-root user, kiln simply runs as that user.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{Kiln, ci};

/// The test user the harness creates when it runs as root.
pub const USER: &str = "kiln-it";

fn is_root() -> bool {
    super::tool("id", &["-u"]).trim() == "0"
}

/// A kiln that runs as an unprivileged user, or `None` (test skipped; a failure under CI) when none can be had.
pub fn kiln() -> Option<Kiln> {
    if !is_root() {
        return Some(Kiln::new());
    }
    static SETUP: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match SETUP.get_or_init(setup) {
        Ok(bin) => {
            let kiln = Kiln::launched_by(vec![
                PathBuf::from("runuser"),
                PathBuf::from("-u"),
                PathBuf::from(USER),
                PathBuf::from("--"),
                bin.clone(),
            ]);
            give(kiln.store());
            Some(kiln)
        }
        Err(why) => {
            assert!(!ci(), "cannot set up the rootless test user under CI=true: {why}");
            eprintln!("skipping: {why}");
            None
        }
    }
}

/// Hands a directory (a workspace, a store) to the test user.
pub fn give(dir: &Path) {
    if is_root() {
        let status = Command::new("chown").args(["-R", USER]).arg(dir).status().expect("chown runs");
        assert!(status.success(), "chown -R {USER} {}", dir.display());
    }
}

fn setup() -> Result<PathBuf, String> {
    let exists = Command::new("id").arg(USER).output().map_err(|e| e.to_string())?.status.success();
    if !exists {
        run("useradd", &["-m", USER])?;
    }
    let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    if !subuid.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
        run("usermod", &["--add-subuids", "300000-365535", "--add-subgids", "300000-365535", USER])?;
    }
    // The checkout may sit under a directory the user cannot enter: give it a copy of kiln it can run.
    let dir = std::env::temp_dir().join(format!("kiln-it-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    let bin = dir.join("kiln");
    std::fs::copy(env!("CARGO_BIN_EXE_kiln"), &bin).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    Ok(bin)
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}
