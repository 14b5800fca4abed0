//! Rootless kiln: a non-root kiln re-enters itself in a user namespace at start (as buildah does), so that
//! everything it does afterwards — applying layers with their owners, reading what a step wrote, pruning
//! snapshots owned by sub-ids — runs as root of that namespace. The caller is mapped to 0 and, through
//! newuidmap/newgidmap and `/etc/subuid`/`/etc/subgid`, 65536 more ids; without a range, to 0 alone.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::sync::OnceLock;

use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};

use super::sys;

/// How this kiln process relates to user namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserNs {
    /// Running as real root: none needed.
    Host,
    /// Inside kiln's user namespace; `full` when sub-id ranges are mapped (else only the caller's id).
    Inside {
        /// The caller's uid outside.
        outer_uid: u32,
        /// 65536 ids mapped, not just one.
        full: bool,
    },
    /// A non-root user for whom no user namespace could be created, and why.
    Unavailable(String),
}

static STATE: OnceLock<UserNs> = OnceLock::new();

/// This process's user-namespace state (`Host` for root, decided once at start for others).
pub fn state() -> UserNs {
    STATE.get().cloned().unwrap_or_else(|| {
        if nix::unistd::geteuid().is_root() {
            UserNs::Host
        } else {
            UserNs::Unavailable("kiln did not try to create a user namespace for this command".into())
        }
    })
}

/// A sub-id range of `/etc/subuid` or `/etc/subgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id on the host.
    pub start: u32,
    /// How many.
    pub count: u32,
}

/// The first range for `name` (or the numeric `id`) in a subuid/subgid file's text.
pub fn find_range(text: &str, name: &str, id: u32) -> Option<IdRange> {
    text.lines().find_map(|line| {
        let mut parts = line.trim().split(':');
        let owner = parts.next()?;
        let start = parts.next()?.parse().ok()?;
        let count = parts.next()?.parse().ok()?;
        (owner == name || owner == id.to_string()).then_some(IdRange { start, count })
    })
}

/// For a non-root caller: forks a child that enters a new user namespace and returns `None` in it (the
/// caller goes on as root of the namespace); the parent waits and returns the child's exit code. Returns
/// `None` at once for root, and when no namespace can be had (recorded for [`state`]).
///
/// Must be called while the process is single-threaded.
pub fn enter() -> Option<ExitCode> {
    let uid = nix::unistd::getuid();
    if uid.is_root() {
        let _ = STATE.set(UserNs::Host);
        return None;
    }
    let gid = nix::unistd::getgid();
    let (ready_r, ready_w) = nix::unistd::pipe().ok()?;
    let (go_r, go_w) = nix::unistd::pipe().ok()?;
    match sys::fork() {
        Err(e) => {
            let _ = STATE.set(UserNs::Unavailable(format!("fork failed: {e}")));
            None
        }
        Ok(ForkResult::Child) => {
            drop((ready_r, go_w));
            child(uid.as_raw(), gid.as_raw(), ready_w, go_r)
        }
        Ok(ForkResult::Parent { child }) => {
            drop((ready_w, go_r));
            parent(child, uid.as_raw(), gid.as_raw(), ready_r, go_w)
        }
    }
}

fn child(uid: u32, gid: u32, ready: OwnedFd, go: OwnedFd) -> Option<ExitCode> {
    let mut ready = std::fs::File::from(ready);
    if let Err(e) = unshare(CloneFlags::CLONE_NEWUSER) {
        let _ = ready.write_all(format!("{}", std::io::Error::from(e)).as_bytes());
        std::process::exit(0);
    }
    let _ = ready.write_all(b"+");
    drop(ready);
    let mut answer = [0u8; 1];
    let _ = std::fs::File::from(go).read_exact(&mut answer);
    let full = answer[0] == b'm';
    if !full && let Err(e) = map_self(uid, gid) {
        eprintln!("kiln: cannot map the user namespace: {e}");
        std::process::exit(125);
    }
    let _ = STATE.set(UserNs::Inside { outer_uid: uid, full });
    None
}

/// Maps only the caller (no helper tools or no sub-id range): uid and gid to 0, groups denied.
fn map_self(uid: u32, gid: u32) -> std::io::Result<()> {
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))
}

fn parent(child: Pid, uid: u32, gid: u32, ready: OwnedFd, go: OwnedFd) -> Option<ExitCode> {
    let mut status = Vec::new();
    let _ = std::fs::File::from(ready).read_to_end(&mut status);
    if status != b"+" {
        let reason = String::from_utf8_lossy(&status).into_owned();
        let _ = waitpid(child, None);
        let _ = STATE.set(UserNs::Unavailable(explain(&reason)));
        return None;
    }
    let answer: &[u8] = if map_with_helpers(child, uid, gid) { b"m" } else { b"s" };
    let _ = std::fs::File::from(go).write_all(answer);
    sys::forward_signals_to(child);
    Some(ExitCode::from(super::child::wait_for(child)))
}

/// Runs newuidmap/newgidmap for the caller's sub-id ranges; false when either is missing or refuses.
fn map_with_helpers(child: Pid, uid: u32, gid: u32) -> bool {
    let name = nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|u| u.name).unwrap_or_default();
    let group = nix::unistd::Group::from_gid(gid.into()).ok().flatten().map(|g| g.name).unwrap_or_default();
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let (Some(uids), Some(gids)) = (
        find_range(&read("/etc/subuid"), &name, uid),
        find_range(&read("/etc/subgid"), &name, uid).or_else(|| find_range(&read("/etc/subgid"), &group, gid)),
    ) else {
        return false;
    };
    let map = |tool: &str, own: u32, range: IdRange| {
        std::process::Command::new(tool)
            .arg(child.as_raw().to_string())
            .args(["0", &own.to_string(), "1", "1", &range.start.to_string(), &range.count.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    map("newuidmap", uid, uids) && map("newgidmap", gid, gids)
}

/// Turns the kernel's refusal into what to change on the machine.
fn explain(reason: &str) -> String {
    let sysctl = |path: &str| std::fs::read_to_string(path).ok().map(|s| s.trim().to_string());
    if sysctl("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return "user namespaces are disabled: sysctl kernel.unprivileged_userns_clone=0 (set it to 1)".into();
    }
    if sysctl("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return "user namespaces are disabled: sysctl user.max_user_namespaces=0 (set it above 0)".into();
    }
    if sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return "AppArmor restricts unprivileged user namespaces: sysctl kernel.apparmor_restrict_unprivileged_userns=1 \
                (set it to 0, or give kiln an AppArmor profile with `userns`)"
            .into();
    }
    format!("cannot create a user namespace: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ranges_by_name_or_id() {
        let text = "alice:100000:65536\n1001:200000:65536\n";
        assert_eq!(find_range(text, "alice", 1000), Some(IdRange { start: 100000, count: 65536 }));
        assert_eq!(find_range(text, "bob", 1001), Some(IdRange { start: 200000, count: 65536 }));
        assert_eq!(find_range(text, "carol", 1002), None);
    }
}
