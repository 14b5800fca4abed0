//! Ctrl-C, `kill` and a closed terminal (SIGINT, SIGTERM, SIGHUP): kiln stops what it started and removes
//! the temporary files of this run — work trees, half-written blobs, snapshots being filled — before it
//! exits with 128 + the signal's number, as a shell reports it.
//!
//! The signals are blocked in the main thread before any other thread exists (every later thread inherits
//! the mask; `std::process::Command` clears it for the programs it starts), and one thread waits for them
//! with `sigwait`: the clean-up then runs as ordinary code, not in a signal handler. Children get the same
//! signal first (a sandbox child passes it to the step; a `bake` worker cleans up after itself the same
//! way), and SIGKILL after a grace period. A kill -9 cannot be caught; the next start removes what such a
//! run left (`store::Store::open`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::unistd::{Pid, getpgid};

use crate::store::Store;

/// How long children may take to stop after the signal before they are killed.
const GRACE: Duration = Duration::from_secs(5);

/// Tells `main` whether an interrupt is being handled, so it neither prints the failure the interrupted
/// command returns nor exits before the clean-up is done.
#[derive(Clone, Default)]
pub struct Interrupts {
    stopping: Arc<AtomicBool>,
}

impl Interrupts {
    /// Blocks SIGINT, SIGTERM and SIGHUP and starts the thread that acts on them; an interrupt removes
    /// this process's temp files in the store at `store_root`.
    ///
    /// Must be called while the process is single-threaded, so that every thread inherits the mask.
    pub fn install(store_root: PathBuf) -> Interrupts {
        let interrupts = Interrupts::default();
        let set = signals();
        if set.thread_block().is_err() {
            return interrupts;
        }
        let stopping = interrupts.stopping.clone();
        std::thread::spawn(move || {
            if let Ok(signal) = set.wait() {
                stopping.store(true, Ordering::SeqCst);
                stop(signal, &store_root);
            }
        });
        interrupts
    }

    /// Returns at once unless an interrupt is being handled; then never (the handler ends the process).
    pub fn hold_if_stopping(&self) {
        while self.stopping.load(Ordering::SeqCst) {
            std::thread::park_timeout(Duration::from_secs(1));
        }
    }
}

fn signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Ends the run: children first (their mounts go with their namespaces), then this run's files.
fn stop(signal: Signal, store_root: &Path) -> ! {
    signal_children(signal);
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline && !live_children().is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
    signal_children(Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline && !live_children().is_empty() {
        std::thread::sleep(Duration::from_millis(10));
    }
    Store::clean_up_after_interrupt(store_root, std::process::id());
    eprintln!("kiln: stopped by {signal}; the temporary files of this run are removed");
    std::process::exit(128 + signal as i32)
}

/// Sends `signal` to every child, to its whole process group when it leads one (a `bake` worker).
fn signal_children(signal: Signal) {
    for pid in live_children() {
        let pid = Pid::from_raw(pid);
        let _ = match getpgid(Some(pid)) {
            Ok(group) if group == pid => killpg(group, signal),
            _ => kill(pid, signal),
        };
    }
}

/// This process's children that have not exited (zombies have, and have dropped their locks).
fn live_children() -> Vec<i32> {
    let tasks = std::fs::read_dir("/proc/self/task").into_iter().flatten().filter_map(Result::ok);
    let mut out = Vec::new();
    for task in tasks {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state follows the parenthesised command name.
            let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
            if !matches!(state, None | Some('Z') | Some('X')) {
                out.push(pid);
            }
        }
    }
    out
}
