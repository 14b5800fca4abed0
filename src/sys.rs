//! kiln's only `unsafe` code: for the sandbox, fork, signal forwarding, the capability bounding set and the
//! loopback interface; for reading trees, listxattrat(2), which no crate wraps yet. Each function states the
//! invariant its caller must keep. A leaf: it imports nothing of kiln, and any module may use it.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::unistd::{ForkResult, Pid};

/// Forks the calling process.
///
/// Invariant: the caller is single-threaded (the sandbox child is a fresh `exec` of kiln that starts no
/// threads), so the child inherits no lock held by another thread and may run ordinary Rust code.
pub fn fork() -> nix::Result<ForkResult> {
    // SAFETY: single-threaded caller, see above.
    unsafe { nix::unistd::fork() }
}

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe; the pid was stored before the handler was installed.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Makes the signals a user or a supervisor sends (INT, TERM, HUP, QUIT, USR1, USR2) go to `pid` instead.
///
/// Invariant: called once per process, after `pid` is known; the handler only reads an atomic and calls
/// kill(2), both async-signal-safe.
pub fn forward_signals_to(pid: Pid) {
    FORWARD_TO.store(pid.as_raw(), Ordering::Relaxed);
    let action = SigAction::new(SigHandler::Handler(forward), SaFlags::SA_RESTART, SigSet::empty());
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2] {
        // SAFETY: the handler is async-signal-safe (see above).
        let _ = unsafe { sigaction(signal, &action) };
    }
}

/// Restores the default action of the forwarded signals (before exec of the step's command).
pub fn default_signals() {
    let action = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2] {
        // SAFETY: SIG_DFL installs no code of ours.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

/// Removes every capability not in `keep` from the bounding set, so no exec can gain it back. Only those
/// still in the set are dropped: a process without CAP_SETPCAP (chroot mode in a pod whose capabilities
/// were all dropped) may not drop any, and needs to drop none when the set already holds only `keep`.
///
/// Invariant: none; prctl(PR_CAPBSET_READ/DROP) only read or affect the calling thread's future execs.
pub fn drop_bounding_caps(keep: &[u32]) -> std::io::Result<()> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(40);
    for cap in (0..=last).filter(|c| !keep.contains(c)) {
        // SAFETY: plain prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) } == 0 {
            continue;
        }
        // SAFETY: plain prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            // EINVAL: a capability this kernel does not know.
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(err);
            }
        }
    }
    Ok(())
}

/// Brings the loopback interface of a fresh network namespace up (Docker's `--network none` has it up).
///
/// Invariant: none; the ioctls read and write a stack `ifreq` of the right size.
pub fn loopback_up() -> std::io::Result<()> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain data; zero is a valid value for every field.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: fd is a valid socket and req a valid ifreq for both requests.
    let result = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
        }
    };
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
    result
}

/// listxattrat(2)'s number: Linux 6.13 gave it the same one on every architecture (as every call since 424).
const SYS_LISTXATTRAT: libc::c_long = 465;

/// Set once listxattrat turned out to be missing (an older kernel, or a seccomp profile that refuses it).
static NO_LISTXATTRAT: AtomicBool = AtomicBool::new(false);

/// The NUL-separated names of the extended attributes of `name` in `dir`, not following a symlink, in one
/// system call relative to `dir`; `None` when the kernel (or a seccomp filter) does not offer listxattrat,
/// so the caller falls back to a path. An empty list is the common answer, so no buffer is allocated for it.
///
/// Invariant: none; the kernel writes at most `list.len()` bytes into `list`, and `name` is NUL-terminated.
pub fn list_xattrs_at(dir: BorrowedFd<'_>, name: &CStr) -> Option<std::io::Result<Vec<u8>>> {
    if NO_LISTXATTRAT.load(Ordering::Relaxed) {
        return None;
    }
    let call = |list: &mut [u8]| {
        // SAFETY: dir is an open descriptor, name a C string, and list valid for list.len() bytes.
        let rc = unsafe {
            libc::syscall(
                SYS_LISTXATTRAT,
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
                list.as_mut_ptr(),
                list.len(),
            )
        };
        usize::try_from(rc).map_err(|_| std::io::Error::last_os_error())
    };
    let unsupported = |e: &std::io::Error| matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM));
    loop {
        let needed = match call(&mut []) {
            Ok(0) => return Some(Ok(Vec::new())),
            Ok(n) => n,
            Err(e) if unsupported(&e) => break,
            Err(e) => return Some(Err(e)),
        };
        let mut list = vec![0; needed];
        match call(&mut list) {
            Ok(n) => {
                list.truncate(n);
                return Some(Ok(list));
            }
            // An attribute was added between the two calls: ask for the size again.
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
            Err(e) if unsupported(&e) => break,
            Err(e) => return Some(Err(e)),
        }
    }
    NO_LISTXATTRAT.store(true, Ordering::Relaxed);
    None
}

/// Starts writing `len` bytes of `file` from `offset` back to the disk, without waiting for it
/// (sync_file_range(2) with `SYNC_FILE_RANGE_WRITE`, which no safe wrapper offers): a large file written
/// this way is mostly on disk by the time it is fsynced. Only a hint: failures are ignored.
///
/// Invariant: none; integer arguments and a descriptor the caller holds open.
pub fn start_writeback(file: BorrowedFd<'_>, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (libc::off64_t::try_from(offset), libc::off64_t::try_from(len)) else { return };
    // SAFETY: see above; the call reads no memory of ours.
    unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
}
