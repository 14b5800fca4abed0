//! Ctrl-C, `kill` and a closed terminal (SIGINT, SIGTERM, SIGHUP): kiln stops its RUN steps and removes
//! the temporary files of this run — work trees, half-written blobs, snapshots being filled — before it
//! exits with 128 + the signal's number, as a shell reports it.
//!
//! The signals are blocked in the main thread before any other thread exists (every later thread inherits
//! the mask; `std::process::Command` clears it for the programs it starts), and one thread waits for them
//! with `sigwait`: the clean-up then runs as ordinary code, not in a signal handler. A kill -9 cannot be
//! caught; the next start removes what such a run left (`store::Store::open`).

use std::path::PathBuf;

use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;

use crate::store::Store;

/// Blocks SIGINT, SIGTERM and SIGHUP and starts the thread that acts on them; an interrupt removes this
/// process's temp files in the store at `store_root`.
///
/// Must be called while the process is single-threaded, so that every thread inherits the mask.
pub fn install(store_root: PathBuf) {
    let set = signals();
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || {
        if let Ok(signal) = set.wait() {
            stop(signal, &store_root);
        }
    });
}

fn signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Ends the run: children first (their mounts go with their namespaces), then this run's files.
fn stop(signal: Signal, store_root: &std::path::Path) -> ! {
    kill_children();
    Store::abandon_sessions_of(store_root, std::process::id());
    eprintln!("kiln: stopped by {signal}; the temporary files of this run are removed");
    std::process::exit(128 + signal as i32)
}

/// SIGKILLs every child of this process: sandbox children take their steps (pid namespace, mounts) with
/// them through their parent-death signal.
fn kill_children() {
    let tasks = std::fs::read_dir("/proc/self/task").into_iter().flatten().filter_map(Result::ok);
    for task in tasks {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}
