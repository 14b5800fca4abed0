//! The last moments before the step's command: its output joined onto one stream, user and groups, umask,
//! working directory, Docker's default capability bounding set, then execve with the image's PATH.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

use super::spec::RunSpec;
use crate::sys;

/// The PATH a step gets when the image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capabilities: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
/// NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
const DEFAULT_CAPS: [u32; 14] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];

/// Why the command could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The program is not in the image.
    #[error("exec {0}: executable file not found in $PATH")]
    NotFound(String),
    /// A system call on the way failed.
    #[error("{0}: {1}")]
    Sys(&'static str, std::io::Error),
}

/// The exit status for a command that could not start (as a shell reports it).
pub fn exec_failure_code(err: &ExecError) -> i32 {
    match err {
        ExecError::NotFound(_) => 127,
        ExecError::Sys(..) => 126,
    }
}

fn sys_err(what: &'static str) -> impl Fn(nix::Error) -> ExecError {
    move |e| ExecError::Sys(what, std::io::Error::from(e))
}

/// Replaces this process with the step's command; returns only on failure.
pub fn exec(spec: &RunSpec) -> ExecError {
    match prepare(spec) {
        Ok((program, argv, env)) => {
            let Err(e) = nix::unistd::execve(&program, &argv, &env);
            ExecError::Sys("execve", std::io::Error::from(e))
        }
        Err(e) => e,
    }
}

type Prepared = (CString, Vec<CString>, Vec<CString>);

fn prepare(spec: &RunSpec) -> Result<Prepared, ExecError> {
    sys::default_signals();
    nix::unistd::dup2_stderr(std::io::stdout()).map_err(sys_err("join stderr to stdout"))?;
    nix::sys::stat::umask(Mode::from_bits_truncate(spec.umask));
    enter_workdir(&spec.cwd)?;
    let program = lookup(spec).ok_or_else(|| ExecError::NotFound(spec.args.first().cloned().unwrap_or_default()))?;
    sys::drop_bounding_caps(&DEFAULT_CAPS).map_err(|e| ExecError::Sys("drop capabilities", e))?;
    switch_user(spec)?;
    let cstr =
        |s: &str| CString::new(s.as_bytes()).map_err(|_| ExecError::Sys("argument", std::io::Error::other("NUL byte")));
    let program = CString::new(program.as_os_str().as_encoded_bytes())
        .map_err(|_| ExecError::Sys("program", std::io::Error::other("NUL byte")))?;
    let argv = spec.args.iter().map(|a| cstr(a)).collect::<Result<Vec<_>, _>>()?;
    let env = spec.env.iter().map(|e| cstr(e)).collect::<Result<Vec<_>, _>>()?;
    Ok((program, argv, env))
}

fn enter_workdir(cwd: &str) -> Result<(), ExecError> {
    if std::env::set_current_dir(cwd).is_err() {
        std::fs::create_dir_all(cwd).map_err(|e| ExecError::Sys("create the working directory", e))?;
        std::env::set_current_dir(cwd).map_err(|e| ExecError::Sys("enter the working directory", e))?;
    }
    Ok(())
}

fn switch_user(spec: &RunSpec) -> Result<(), ExecError> {
    let groups: Vec<Gid> = spec.groups.iter().copied().map(Gid::from_raw).collect();
    // setgroups is refused in a user namespace with a single-id map; the step then keeps no extra groups.
    if let Err(e) = nix::unistd::setgroups(&groups)
        && e != nix::Error::EPERM
    {
        return Err(sys_err("set supplementary groups")(e));
    }
    let gid = Gid::from_raw(spec.gid);
    nix::unistd::setresgid(gid, gid, gid)
        .map_err(sys_err("set the group id (is it mapped in this user namespace?)"))?;
    let uid = Uid::from_raw(spec.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(sys_err("set the user id (is it mapped in this user namespace?)"))
}

/// `args[0]` itself when it has a slash, else the first executable match in the step's PATH.
fn lookup(spec: &RunSpec) -> Option<PathBuf> {
    let name = spec.args.first()?;
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path = spec.env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    path.split(':').map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok() && path.is_file()
}
