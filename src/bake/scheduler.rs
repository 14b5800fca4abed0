//! Runs the builds of a graph on one machine: up to `jobs` at a time, each as a worker process (kiln
//! itself, told which build to run), dependencies first. A worker's stderr goes line by line to the
//! build's log file and to the caller as events; its stdout carries one [`WorkerResult`] line.
//!
//! Why processes and not tasks: a deadline must stop everything a build started (its RUN steps
//! included) — a process group can be killed whole, a future cannot; a cgroup holds processes; and a
//! crashed build must not take the others down. The store is shared: blobs, snapshots and step records
//! are safe for concurrent processes, and a step common to several builds runs once (the step lock).
//!
//! Retries: an attempt whose failure the worker classified as transient (registry 5xx, connection reset,
//! timeout — see `classify`) is retried after a back-off, up to `retries` times; a failing RUN, a
//! Dockerfile error or a deadline is final. When a build fails, what needs it is skipped.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cgroup::Cgroups;
use super::graph::Graph;
use super::report::{Attempt, BuildResult, Status};

/// What a worker prints on stdout when it ends: one JSON line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerResult {
    /// The image ID (config digest), on success.
    pub image_id: Option<String>,
    /// The manifest digest, on success.
    pub digest: Option<String>,
    /// Steps that ran or were reused.
    pub steps: usize,
    /// Steps taken from the cache.
    pub cached: usize,
    /// The image is the one its first tag already named: nothing changed.
    pub up_to_date: bool,
    /// The error, on failure (its whole chain, one line).
    pub error: Option<String>,
    /// Why the failure may pass on a retry (`registry 127.0.0.1:5000 answered 503`); `None` = final.
    pub transient: Option<String>,
}

/// How a worker process is started for a build.
pub trait Launcher: Sync {
    /// The command that runs `build` (stdout/stderr are set by the scheduler).
    fn command(&self, build: &str) -> Command;
}

/// Scheduling options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Builds at once.
    pub jobs: usize,
    /// Retries of transient failures per build.
    pub retries: u32,
    /// First back-off; doubled for each further retry, at most 30 s.
    pub backoff: Duration,
    /// Where `<build>.log` files go.
    pub log_dir: PathBuf,
    /// How long a worker may take to stop after SIGTERM before SIGKILL.
    pub grace: Duration,
}

/// Something the person watching should know.
#[derive(Debug, Clone)]
pub enum Event {
    /// An attempt started.
    Started {
        /// The build.
        build: String,
        /// 1-based attempt.
        attempt: u32,
    },
    /// A line of the build's output.
    Line {
        /// The build.
        build: String,
        /// The line.
        text: String,
    },
    /// An attempt failed transiently; the next starts after `wait`.
    Retrying {
        /// The build.
        build: String,
        /// The attempt that failed.
        attempt: u32,
        /// Back-off.
        wait: Duration,
        /// Why it is worth another try.
        reason: String,
    },
    /// A build ended (or was skipped).
    Finished(BuildResult),
    /// Something about the run as a whole (limits not applied, ...).
    Warning(String),
}

/// Runs `selection` (graph indices, dependencies first) and returns one result per build, in that order.
pub fn run(
    graph: &Graph,
    selection: &[usize],
    options: &Options,
    launcher: &dyn Launcher,
    cgroups: Option<&Cgroups>,
    on_event: &(dyn Fn(Event) + Sync),
) -> Vec<BuildResult> {
    let wanted: BTreeSet<usize> = selection.iter().copied().collect();
    let mut results: Vec<Option<BuildResult>> = vec![None; graph.builds.len()];
    let mut started: BTreeSet<usize> = BTreeSet::new();
    let (done_tx, done_rx) = mpsc::channel::<(usize, BuildResult)>();
    std::thread::scope(|scope| {
        let mut running = 0usize;
        loop {
            for &i in selection {
                if running >= options.jobs.max(1) {
                    break;
                }
                if started.contains(&i) || results[i].is_some() {
                    continue;
                }
                let needs: Vec<usize> = graph.needs[i].keys().copied().filter(|d| wanted.contains(d)).collect();
                if let Some(failed) = needs.iter().find(|&&d| results[d].as_ref().is_some_and(|r| !r.status.ok())) {
                    let result = BuildResult::skipped(&graph.builds[i].name, &graph.builds[*failed].name);
                    on_event(Event::Finished(result.clone()));
                    results[i] = Some(result);
                    continue;
                }
                if !needs.iter().all(|&d| results[d].as_ref().is_some_and(|r| r.status.ok())) {
                    continue;
                }
                started.insert(i);
                running += 1;
                let tx = done_tx.clone();
                scope.spawn(move || {
                    let result = run_build(graph, i, options, launcher, cgroups, on_event);
                    let _ = tx.send((i, result));
                });
            }
            if running == 0 {
                // Nothing runs and nothing could start: every selected build has a result.
                break;
            }
            let Ok((i, result)) = done_rx.recv() else { break };
            running -= 1;
            on_event(Event::Finished(result.clone()));
            results[i] = Some(result);
        }
    });
    selection.iter().filter_map(|&i| results[i].take()).collect()
}

/// One build with its retries.
fn run_build(
    graph: &Graph,
    i: usize,
    options: &Options,
    launcher: &dyn Launcher,
    cgroups: Option<&Cgroups>,
    on_event: &(dyn Fn(Event) + Sync),
) -> BuildResult {
    let spec = &graph.builds[i];
    let log = options.log_dir.join(format!("{}.log", spec.name));
    let started = Instant::now();
    let mut attempts = Vec::new();
    let mut attempt = 1u32;
    let _ = std::fs::remove_file(&log);
    loop {
        on_event(Event::Started { build: spec.name.clone(), attempt });
        let t = Instant::now();
        let outcome = attempt_once(spec, attempt, options, launcher, cgroups, &log, on_event);
        let elapsed = t.elapsed();
        let (status, worker) = match outcome {
            Ok(w) if w.error.is_none() => (if w.up_to_date { Status::UpToDate } else { Status::Built }, w),
            Ok(w) => (Status::Failed, w),
            Err(AttemptError::Deadline(d)) => (
                Status::TimedOut,
                WorkerResult {
                    error: Some(format!("deadline of {}s exceeded: the build was stopped", d.as_secs())),
                    ..Default::default()
                },
            ),
            Err(AttemptError::Launch(message)) => {
                (Status::Failed, WorkerResult { error: Some(message), ..Default::default() })
            }
        };
        let retry = status == Status::Failed && worker.transient.is_some() && attempt <= options.retries;
        attempts.push(Attempt {
            number: attempt,
            seconds: elapsed.as_secs_f64(),
            error: worker.error.clone(),
            retried_because: if retry { worker.transient.clone() } else { None },
        });
        if retry {
            let wait = (options.backoff * 2u32.pow(attempt - 1)).min(Duration::from_secs(30));
            let reason = worker.transient.clone().unwrap_or_default();
            on_event(Event::Retrying { build: spec.name.clone(), attempt, wait, reason });
            std::thread::sleep(wait);
            attempt += 1;
            continue;
        }
        return BuildResult {
            name: spec.name.clone(),
            status,
            seconds: started.elapsed().as_secs_f64(),
            steps: worker.steps,
            cached: worker.cached,
            image_id: worker.image_id,
            digest: worker.digest,
            tags: spec.tags.clone(),
            log: Some(log),
            error: worker.error,
            attempts,
        };
    }
}

enum AttemptError {
    /// The deadline passed and the worker was stopped.
    Deadline(Duration),
    /// The worker could not be started or said nothing.
    Launch(String),
}

/// One worker process: started in its own process group (and cgroup), its output logged, stopped at the
/// deadline.
fn attempt_once(
    spec: &super::BuildSpec,
    attempt: u32,
    options: &Options,
    launcher: &dyn Launcher,
    cgroups: Option<&Cgroups>,
    log_path: &std::path::Path,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<WorkerResult, AttemptError> {
    use std::os::unix::process::CommandExt as _;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(|e| AttemptError::Launch(format!("cannot open the log {}: {e}", log_path.display())))?;
    let _ = writeln!(log, "=== {} attempt {attempt} ===", spec.name);
    let mut command = launcher.command(&spec.name);
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = command.spawn().map_err(|e| AttemptError::Launch(format!("cannot start the build worker: {e}")))?;
    let cgroup = cgroups.and_then(|c| match c.place(&format!("{}-{attempt}", spec.name), child.id(), &spec.limits) {
        Ok(leaf) => Some(leaf),
        Err(warning) => {
            on_event(Event::Warning(format!("{}: limits not applied: {warning}", spec.name)));
            None
        }
    });
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let name = spec.name.clone();
    let (status, out) = std::thread::scope(|scope| {
        let out = scope.spawn(move || {
            let mut text = String::new();
            if let Some(mut s) = stdout {
                let _ = s.read_to_string(&mut text);
            }
            text
        });
        scope.spawn(move || {
            let Some(err) = stderr else { return };
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                on_event(Event::Line { build: name.clone(), text: line });
            }
        });
        let status = wait(&mut child, spec.deadline, options.grace);
        (status, out.join().unwrap_or_default())
    });
    if let (Some(c), Some(leaf)) = (cgroups, cgroup) {
        c.remove(&leaf);
    }
    let status = status?;
    let parsed = out.lines().rev().find_map(|l| serde_json::from_str::<WorkerResult>(l).ok());
    match parsed {
        Some(result) => Ok(result),
        None => Err(AttemptError::Launch(format!(
            "the build worker ended ({status}) without a result; see {}",
            log_path.display()
        ))),
    }
}

/// Waits for the worker; past the deadline, SIGTERM to its process group, SIGKILL after `grace`.
fn wait(
    child: &mut Child,
    deadline: Option<Duration>,
    grace: Duration,
) -> Result<std::process::ExitStatus, AttemptError> {
    let started = Instant::now();
    // A pidfd turns readable when the worker ends, so its end (and its dependents' start) is seen at once;
    // a bake of up-to-date builds otherwise spends ~10 ms per build waiting for the next 20 ms poll.
    let pidfd = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .and_then(|pid| rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok());
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(e) => return Err(AttemptError::Launch(format!("cannot wait for the build worker: {e}"))),
        }
        let left = deadline.map(|d| d.saturating_sub(started.elapsed()));
        if let (Some(d), Some(Duration::ZERO)) = (deadline, left) {
            stop(child, grace);
            return Err(AttemptError::Deadline(d));
        }
        match &pidfd {
            Some(fd) => until_readable(fd, left),
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Blocks until `fd` is readable or `timeout` passes (forever without one); an interrupted wait just returns,
/// and a failing one waits a poll interval instead, so the caller never spins.
fn until_readable(fd: &std::os::fd::OwnedFd, timeout: Option<Duration>) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let timeout = timeout.map(|t| Timespec { tv_sec: t.as_secs() as i64, tv_nsec: i64::from(t.subsec_nanos()) });
    match poll(&mut [PollFd::new(fd, PollFlags::IN)], timeout.as_ref()) {
        Ok(_) | Err(rustix::io::Errno::INTR) => {}
        Err(_) => std::thread::sleep(Duration::from_millis(20)),
    }
}

/// Ends the worker's whole process group (its RUN steps die with it through PR_SET_PDEATHSIG).
fn stop(child: &mut Child, grace: Duration) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let group = Pid::from_raw(child.id() as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if matches!(child.try_wait(), Ok(Some(_))) {
            let _ = killpg(group, Signal::SIGKILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait();
}
