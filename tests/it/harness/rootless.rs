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
    let bin = user()?;
    let kiln = Kiln::launched_by(vec![
        PathBuf::from("runuser"),
        PathBuf::from("-u"),
        PathBuf::from(USER),
        PathBuf::from("--"),
        bin.to_path_buf(),
    ]);
    give(kiln.store());
    Some(kiln)
}

/// Hands a directory (a workspace, a store) to the test user, creating that user first when needed: any
/// test may hand over a workspace before the first rootless kiln exists. Does nothing when not root.
pub fn give(dir: &Path) {
    if is_root() && user().is_some() {
        let status = Command::new("chown").args(["-R", USER]).arg(dir).status().expect("chown runs");
        assert!(status.success(), "chown -R {USER} {}", dir.display());
    }
}

/// The test user, set up once per test process (as root); the copy of kiln it can run, or `None` after
/// saying why (a failure under CI).
fn user() -> Option<&'static Path> {
    static SETUP: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match SETUP.get_or_init(setup) {
        Ok(bin) => Some(bin),
        Err(why) => {
            assert!(!ci(), "cannot set up the rootless test user under CI=true: {why}");
            eprintln!("skipping: {why}");
            None
        }
    }
}

fn setup() -> Result<PathBuf, String> {
    // Another test process may create the user at the same moment: a refusal counts only if it is still missing.
    if !exists()
        && let Err(e) = run("useradd", &["-m", USER])
        && !exists()
    {
        return Err(e);
    }
    let has_range = || {
        std::fs::read_to_string("/etc/subuid").unwrap_or_default().lines().any(|l| l.starts_with(&format!("{USER}:")))
    };
    if !has_range()
        && let Err(e) = run("usermod", &["--add-subuids", "300000-365535", "--add-subgids", "300000-365535", USER])
        && !has_range()
    {
        return Err(e);
    }
    // The checkout may sit under a directory the user cannot enter: give it a copy of kiln it can run,
    // one per test process; the copies of test processes that have ended are removed.
    remove_stale_copies();
    let dir = std::env::temp_dir().join(format!("{BIN_DIR}{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    let bin = dir.join("kiln");
    std::fs::copy(env!("CARGO_BIN_EXE_kiln"), &bin).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    Ok(bin)
}

/// Prefix of the directories holding a test process's copy of kiln, followed by its pid.
const BIN_DIR: &str = "kiln-it-bin-";

fn remove_stale_copies() {
    for entry in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(BIN_DIR) else { continue };
        if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn exists() -> bool {
    Command::new("id").arg(USER).output().is_ok_and(|o| o.status.success())
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}
