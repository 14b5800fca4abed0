//! Nothing else gets out (`--network proxy-only`): each RUN step gets a network namespace of its own with
//! only loopback, and one listening socket in it — the relay — at [`STEP_PROXY`]. kiln makes that socket
//! from its own side (a short-lived thread enters the new namespace, binds, leaves), so connections to it
//! are accepted by kiln outside the sandbox and served by the forward proxy ([`proxy`]) with the host's
//! network. The step joins the namespace through its [`StepSession`]; anything it tries to reach directly
//! fails at once (no route), anything through the proxy is checked against the allow-list ([`allow`]) —
//! the Nexus hosts plus `--allow-host` — and recorded in the fetch log ([`log`]).
//!
//! Input: a policy; output: a namespace path, proxy variables, records. Knows nothing of images.

pub mod allow;
pub mod log;
pub mod proxy;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

/// Where a proxy-only step reaches kiln's proxy, inside its own network namespace.
pub const STEP_PROXY: &str = "127.0.0.1:3128";

/// What proxy-only builds may reach, and where requests are logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Allowed destinations (`host`, `host:port`, `*.domain`); the Nexus hosts are added by the build.
    pub allow: Vec<String>,
    /// `--fetch-log FILE`: JSON lines, one per request.
    pub fetch_log: Option<PathBuf>,
}

/// Why the network policy could not be set up or enforced.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The allow-list has an unreadable entry.
    #[error("{0}")]
    AllowList(String),
    /// The fetch log cannot be written.
    #[error("--fetch-log {path}: {source}")]
    FetchLog {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The proxy could not start.
    #[error("cannot start the egress proxy: {0}")]
    Start(#[source] std::io::Error),
    /// The step's network namespace could not be made.
    #[error("--network proxy-only: cannot create the step's network namespace: {0}")]
    Namespace(#[source] std::io::Error),
}

/// The proxy of one build.
pub struct Egress {
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<proxy::Shared>,
}

impl Egress {
    /// Starts the proxy's runtime (its own threads: RUN steps block the build's).
    pub fn start(policy: Policy) -> Result<Egress, EgressError> {
        let allow = allow::AllowList::new(&policy.allow).map_err(EgressError::AllowList)?;
        let log = log::FetchLog::create(policy.fetch_log.as_deref())
            .map_err(|source| EgressError::FetchLog { path: policy.fetch_log.clone().unwrap_or_default(), source })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kiln-egress")
            .enable_all()
            .build()
            .map_err(EgressError::Start)?;
        Ok(Egress { runtime: Some(runtime), shared: Arc::new(proxy::Shared { allow, log }) })
    }

    /// A network namespace for the step `label`, with the relay listening in it.
    pub fn open_step(&self, label: &str) -> Result<StepSession, EgressError> {
        let (netns, listener) = crate::sandbox::loopback_netns(|| {
            let listener = std::net::TcpListener::bind(STEP_PROXY)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .map_err(EgressError::Namespace)?;
        let runtime = self.runtime.as_ref().ok_or_else(|| EgressError::Start(std::io::Error::other("stopped")))?;
        let ctx = Arc::new(proxy::StepCtx { shared: self.shared.clone(), step: label.to_string() });
        let task = runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(proxy::serve(stream, ctx.clone()));
            }
        });
        Ok(StepSession { netns, accept: task.abort_handle(), label: label.to_string(), shared: self.shared.clone() })
    }

    /// The closing summary line.
    pub fn summary(&self) -> String {
        self.shared.log.summary()
    }

    /// The records so far.
    pub fn records(&self) -> Vec<log::Record> {
        self.shared.log.records()
    }

    /// Checks one of kiln's own downloads for `step` (an ADD URL) against the allow-list, as the proxy
    /// checks a step's requests: a refusal is logged and returned as the message to show.
    pub fn admit(&self, step: &str, url: &url::Url) -> Result<(), String> {
        let (host, port) = host_port(url);
        if self.shared.allow.allows(&host, port) {
            return Ok(());
        }
        let record = own_download(step, url, false, 403, 0, 0, Some("not in the allow-list".to_string()));
        self.shared.log.push(record);
        Err(format!(
            "--network proxy-only refused {host}:{port}: not in the allow-list ({}); allow it with --allow-host {host}",
            self.shared.allow.describe()
        ))
    }

    /// Logs one of kiln's own downloads for `step` that the allow-list admitted.
    pub fn record(&self, step: &str, url: &url::Url, status: u16, bytes: u64, duration_ms: u64) {
        self.shared.log.push(own_download(step, url, true, status, bytes, duration_ms, None));
    }
}

fn host_port(url: &url::Url) -> (String, u16) {
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
    (host, url.port_or_known_default().unwrap_or(0))
}

fn own_download(
    step: &str,
    url: &url::Url,
    allowed: bool,
    status: u16,
    bytes: u64,
    duration_ms: u64,
    error: Option<String>,
) -> log::Record {
    let (host, port) = host_port(url);
    log::Record {
        schema: log::SCHEMA,
        time: log::now_rfc3339(),
        step: step.to_string(),
        method: "GET".to_string(),
        host,
        port,
        target: url.to_string(),
        path: Some(url.path().to_string()),
        allowed,
        status,
        bytes_sent: 0,
        bytes_received: bytes,
        bytes,
        url: url.to_string(),
        duration_ms,
        error,
        by_kiln: true,
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        // Dropped inside the build's own runtime: a blocking shutdown would panic there.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One step's network: the namespace it joins and the relay accepting in it. Dropping it stops the relay.
pub struct StepSession {
    netns: OwnedFd,
    accept: tokio::task::AbortHandle,
    label: String,
    shared: Arc<proxy::Shared>,
}

impl StepSession {
    /// A path the sandbox child can open to join the namespace (kiln keeps the descriptor open).
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), self.netns.as_raw_fd()))
    }

    /// What the proxy refused for this step, one line each (`host:port (N times)`).
    pub fn refusals(&self) -> Vec<String> {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for r in self.shared.log.records().iter().filter(|r| !r.allowed && r.step == self.label) {
            *counts.entry(format!("{}:{}", r.host, r.port)).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(host, n)| {
                format!(
                    "--network proxy-only refused {host} ({n} request{}): not in the allow-list ({}); add --allow-host",
                    if n == 1 { "" } else { "s" },
                    self.shared.allow.describe()
                )
            })
            .collect()
    }
}

impl Drop for StepSession {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The proxy variables of a proxy-only step (both spellings: curl reads only the lower-case ones). No
/// `no_proxy`: the step's loopback is its own, so every name — `localhost` included — means the outside
/// world, which only the proxy reaches.
pub fn proxy_env() -> Vec<(&'static str, String)> {
    let url = format!("http://{STEP_PROXY}");
    vec![("http_proxy", url.clone()), ("https_proxy", url.clone()), ("HTTP_PROXY", url.clone()), ("HTTPS_PROXY", url)]
}

/// JVM system properties that send Java's HTTP clients (and Gradle) through the proxy.
pub fn java_proxy_options() -> String {
    let (host, port) = STEP_PROXY.split_once(':').unwrap_or(("127.0.0.1", "3128"));
    format!(
        "-Dhttp.proxyHost={host} -Dhttp.proxyPort={port} -Dhttps.proxyHost={host} -Dhttps.proxyPort={port} \
         -Dhttp.nonProxyHosts="
    )
}
