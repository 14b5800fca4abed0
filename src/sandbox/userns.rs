//! kiln's user namespace and the supervisor that waits outside it.
//!
//! A non-root kiln re-enters itself in a user namespace at start (as buildah does), so that everything it
//! does afterwards — applying layers with their owners, reading what a step wrote, pruning snapshots owned
//! by sub-ids — runs as root of that namespace. The caller is mapped to 0 and, through newuidmap/newgidmap
//! and `/etc/subuid`/`/etc/subgid`, 65536 more ids; without a range, to 0 alone.
//!
//! Root without mount rights (a build pod: no CAP_SYS_ADMIN) does the same with every id it has mapped to
//! itself, written by the parent, which as root may: inside, it may mount, so RUN steps keep their mount
//! and pid namespaces instead of falling back to chroot mode.
//!
//! The process left outside is a supervisor: it forwards signals and reaps every child until kiln's own
//! exits. When kiln is the container's pid 1 and needs no namespace, it forks one anyway, so that the
//! builder is never pid 1 (which the kernel spares from SIGTERM and on which orphans pile up).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::sync::OnceLock;

use nix::mount::MsFlags;
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};

use crate::sys;

/// How this kiln process relates to user namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserNs {
    /// Running as real root in the namespaces kiln was started in; `note` says why no user namespace was
    /// entered when one would have given mount rights.
    Host {
        /// Why root stayed without mount rights, when it did.
        note: Option<String>,
    },
    /// Inside kiln's user namespace.
    Inside {
        /// The caller's uid outside.
        outer_uid: u32,
        /// Which ids are mapped.
        map: IdMap,
    },
    /// A non-root user for whom no user namespace could be created, and why.
    Unavailable(String),
}

/// The ids mapped into kiln's user namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdMap {
    /// Every id the caller (root) has, each to itself.
    Identity,
    /// The caller to 0, its sub-id range to 1..=count.
    SubIds(IdRange),
    /// Only the caller, to 0; why there is no more.
    Single(String),
}

impl UserNs {
    /// Whether kiln was started by root (inside its namespace or not).
    pub fn started_as_root(&self) -> bool {
        matches!(self, UserNs::Host { .. } | UserNs::Inside { outer_uid: 0, .. })
    }

    /// One phrase for the build's isolation line.
    pub fn describe(&self) -> String {
        match self {
            UserNs::Host { .. } => "real root".into(),
            UserNs::Inside { outer_uid: 0, map: IdMap::Identity } => {
                "root in a user namespace with all of its ids (no CAP_SYS_ADMIN to mount with)".into()
            }
            UserNs::Inside { outer_uid, map: IdMap::Identity } => format!("uid {outer_uid} in a user namespace"),
            UserNs::Inside { outer_uid, map: IdMap::SubIds(r) } => {
                format!(
                    "uid {outer_uid} as root of a user namespace, with sub-ids {}-{}",
                    r.start,
                    r.start + r.count - 1
                )
            }
            UserNs::Inside { outer_uid, map: IdMap::Single(why) } => {
                format!(
                    "uid {outer_uid} as root of a user namespace, no other id ({why}; a USER other than root fails)"
                )
            }
            UserNs::Unavailable(why) => why.clone(),
        }
    }
}

static STATE: OnceLock<UserNs> = OnceLock::new();

/// This process's user-namespace state (`Host` for root, decided once at start for others).
pub fn state() -> UserNs {
    STATE.get().cloned().unwrap_or_else(|| {
        if nix::unistd::geteuid().is_root() {
            UserNs::Host { note: None }
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

/// Enters kiln's user namespace when this process needs one: always for a non-root caller, and for root
/// without mount rights when `root_may_enter` (the build may use namespaces). Forks: the child returns
/// `None` and goes on inside; the parent supervises it and returns its exit code. Without a namespace,
/// returns `None` at once — after forking a supervisor all the same when this process is pid 1.
/// The outcome is recorded for [`state`].
///
/// Must be called while the process is single-threaded.
pub fn enter(root_may_enter: bool) -> Option<ExitCode> {
    let uid = nix::unistd::getuid();
    if uid.is_root() && (!root_may_enter || mount_rights().is_ok()) {
        let _ = STATE.set(UserNs::Host { note: None });
        return supervise_if_pid1();
    }
    fork_into_namespace(uid.as_raw(), nix::unistd::getgid().as_raw())
}

/// Whether this process may create a mount namespace and mount in it; why not when it may not.
fn mount_rights() -> Result<(), String> {
    in_child(|| {
        unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("cannot create a mount namespace: {e}"))?;
        let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
        nix::mount::mount(None::<&str>, "/", None::<&str>, private, None::<&str>)
            .map_err(|e| format!("cannot mount in a new mount namespace: {e}"))
    })
}

/// Runs `f` in a forked child and returns what it returned (its error text crosses a pipe).
fn in_child(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    match sys::fork().map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(r);
            let result = f();
            let mut w = std::fs::File::from(w);
            let _ = w.write_all(result.err().unwrap_or_default().as_bytes());
            std::process::exit(0);
        }
        ForkResult::Parent { child } => {
            drop(w);
            let mut text = String::new();
            let _ = std::fs::File::from(r).read_to_string(&mut text);
            let _ = waitpid(child, None);
            if text.is_empty() { Ok(()) } else { Err(text) }
        }
    }
}

/// When this process is pid 1: forks, the parent becomes the supervisor and the child goes on.
fn supervise_if_pid1() -> Option<ExitCode> {
    if nix::unistd::getpid().as_raw() != 1 {
        return None;
    }
    match sys::fork() {
        Ok(ForkResult::Child) | Err(_) => None,
        Ok(ForkResult::Parent { child }) => Some(supervise(child)),
    }
}

/// Forwards signals to `child` and reaps every process re-parented here until `child` ends.
fn supervise(child: Pid) -> ExitCode {
    sys::forward_signals_to(child);
    ExitCode::from(super::child::wait_for(child))
}

/// Forks; the child enters a new user namespace, the parent maps it (see [`enter`]).
fn fork_into_namespace(uid: u32, gid: u32) -> Option<ExitCode> {
    let (ready_r, ready_w) = nix::unistd::pipe().ok()?;
    let (go_r, go_w) = nix::unistd::pipe().ok()?;
    match sys::fork() {
        Err(e) => {
            let _ = STATE.set(unavailable(uid, format!("cannot create a user namespace: fork failed: {e}")));
            None
        }
        Ok(ForkResult::Child) => {
            drop((ready_r, go_w));
            child(uid, ready_w, go_r)
        }
        Ok(ForkResult::Parent { child }) => {
            drop((ready_w, go_r));
            parent(child, uid, gid, ready_r, go_w)
        }
    }
}

/// The state when no namespace could be had, and why: root stays root (chroot mode may still work).
fn unavailable(uid: u32, why: String) -> UserNs {
    if uid == 0 { UserNs::Host { note: Some(why) } } else { UserNs::Unavailable(why) }
}

fn child(uid: u32, ready: OwnedFd, go: OwnedFd) -> Option<ExitCode> {
    let mut ready = std::fs::File::from(ready);
    if let Err(e) = unshare(CloneFlags::CLONE_NEWUSER) {
        let _ = ready.write_all(format!("{}", std::io::Error::from(e)).as_bytes());
        std::process::exit(0);
    }
    let _ = ready.write_all(b"+");
    drop(ready);
    let mut answer = String::new();
    let _ = std::fs::File::from(go).read_to_string(&mut answer);
    // No map: the parent goes on without a namespace; so does a parent that died before answering.
    let Some(map) = decode(&answer) else { std::process::exit(0) };
    let _ = STATE.set(UserNs::Inside { outer_uid: uid, map });
    None
}

/// The parent's answer to the child: which map it wrote (anything else: none, the child must exit).
fn encode(map: &IdMap) -> String {
    match map {
        IdMap::Identity => "identity".into(),
        IdMap::SubIds(r) => format!("subids {} {}", r.start, r.count),
        IdMap::Single(why) => format!("single {why}"),
    }
}

fn decode(text: &str) -> Option<IdMap> {
    let (kind, rest) = text.split_once(' ').unwrap_or((text, ""));
    match kind {
        "identity" => Some(IdMap::Identity),
        "subids" => {
            let (start, count) = rest.split_once(' ')?;
            Some(IdMap::SubIds(IdRange { start: start.parse().ok()?, count: count.parse().ok()? }))
        }
        "single" => Some(IdMap::Single(rest.to_string())),
        _ => None,
    }
}

/// Maps only the caller, to 0, with groups denied: what the kernel lets the namespace's owner write for
/// itself (root too, provided it holds CAP_SETFCAP, as mapping the host's root requires).
fn map_single(child: Pid, uid: u32, gid: u32) -> Result<(), String> {
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/{child}/{file}"), text).map_err(|e| format!("write {file}: {e}"))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("0 {uid} 1"))?;
    write("gid_map", format!("0 {gid} 1"))
}

fn parent(child: Pid, uid: u32, gid: u32, ready: OwnedFd, go: OwnedFd) -> Option<ExitCode> {
    let mut status = Vec::new();
    let _ = std::fs::File::from(ready).read_to_end(&mut status);
    if status != b"+" {
        let reason = String::from_utf8_lossy(&status).into_owned();
        let _ = waitpid(child, None);
        let _ = STATE.set(unavailable(uid, explain(&reason)));
        return supervise_if_pid1();
    }
    let full = if uid == 0 {
        map_identity(child).map(|()| IdMap::Identity)
    } else {
        map_with_helpers(child, uid, gid).map(IdMap::SubIds)
    };
    let map =
        full.or_else(|why| map_single(child, uid, gid).map(|()| IdMap::Single(why.clone())).map_err(|e| (why, e)));
    match map {
        Ok(map) => {
            let _ = std::fs::File::from(go).write_all(encode(&map).as_bytes());
            Some(supervise(child))
        }
        Err((why, single)) => {
            drop(go);
            let _ = waitpid(child, None);
            let reason = if uid == 0 {
                format!("mapping root needs CAP_SETUID, CAP_SETGID and CAP_SETFCAP ({single})")
            } else {
                format!("{why}; {single}")
            };
            let _ = STATE.set(unavailable(uid, format!("cannot map a user namespace: {reason}")));
            supervise_if_pid1()
        }
    }
}

/// Root maps every id it has to itself in the child's namespace (it holds CAP_SETUID and CAP_SETGID in
/// its own, which is all the kernel asks); the ids are read from this process's own maps.
fn map_identity(child: Pid) -> Result<(), String> {
    for file in ["uid_map", "gid_map"] {
        let own = std::fs::read_to_string(format!("/proc/self/{file}")).map_err(|e| format!("read {file}: {e}"))?;
        let map = identity_map(&own);
        std::fs::write(format!("/proc/{child}/{file}"), map).map_err(|e| format!("write {file}: {e}"))?;
    }
    Ok(())
}

/// `inside inside count` for every `inside outside count` line of a map: each id seen here, to itself.
fn identity_map(own: &str) -> String {
    own.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (inside, _, count) = (f.next()?, f.next()?, f.next()?);
            Some(format!("{inside} {inside} {count}\n"))
        })
        .collect()
}

/// Runs newuidmap/newgidmap for the caller's sub-id ranges; why not when either is missing or refuses.
fn map_with_helpers(child: Pid, uid: u32, gid: u32) -> Result<IdRange, String> {
    let name = nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|u| u.name).unwrap_or_default();
    let group = nix::unistd::Group::from_gid(gid.into()).ok().flatten().map(|g| g.name).unwrap_or_default();
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let uids =
        find_range(&read("/etc/subuid"), &name, uid).ok_or_else(|| format!("no range for uid {uid} in /etc/subuid"))?;
    let gids = find_range(&read("/etc/subgid"), &name, uid)
        .or_else(|| find_range(&read("/etc/subgid"), &group, gid))
        .ok_or_else(|| format!("no range for uid {uid} in /etc/subgid"))?;
    let map = |tool: &str, own: u32, range: IdRange| -> Result<(), String> {
        let out = std::process::Command::new(tool)
            .arg(child.as_raw().to_string())
            .args(["0", &own.to_string(), "1", "1", &range.start.to_string(), &range.count.to_string()])
            .output()
            .map_err(|e| format!("{tool}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
        // A setuid helper without its privilege (no_new_privs, a nosuid mount) says only that a write failed.
        let hint = if no_new_privs() {
            " (no_new_privs is set: setuid and file-capability helpers get no privilege)"
        } else {
            ""
        };
        Err(format!("{tool} failed: {said}{hint}"))
    };
    map("newuidmap", uid, uids)?;
    map("newgidmap", gid, gids)?;
    Ok(uids)
}

/// This process's `NoNewPrivs:` flag.
fn no_new_privs() -> bool {
    status_field("NoNewPrivs").as_deref() == Some("1")
}

fn status_field(name: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(|v| v.trim().to_string()))
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
    if reason.contains("not permitted") && status_field("Seccomp").as_deref() == Some("2") {
        return format!(
            "cannot create a user namespace: {reason} (this process runs under a seccomp filter; Docker's and \
             containerd's default profiles refuse unshare(CLONE_NEWUSER): give the pod a profile that allows it, \
             such as podman's/CRI-O's default, or Unconfined)"
        );
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

    #[test]
    fn identity_maps_each_id_seen_here_to_itself() {
        assert_eq!(identity_map("         0          0 4294967295\n"), "0 0 4294967295\n");
        // Root of a pod that itself runs in a user namespace (Kubernetes hostUsers: false).
        assert_eq!(identity_map("0 100000 65536\n70000 300000 10\n"), "0 0 65536\n70000 70000 10\n");
    }

    #[test]
    fn the_answer_to_the_child_round_trips() {
        for map in [
            IdMap::Identity,
            IdMap::SubIds(IdRange { start: 100000, count: 65536 }),
            IdMap::Single("no range for uid 5 in /etc/subuid".into()),
        ] {
            assert_eq!(decode(&encode(&map)), Some(map));
        }
    }
}
