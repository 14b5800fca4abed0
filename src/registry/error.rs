//! Registry errors: each names the registry, the operation and, where there is one, the HTTP status and
//! the registry's own error code. Credentials never appear in them.

/// Why talking to a registry failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an error status.
    #[error("registry {registry} refused {op}: {status}{detail}")]
    Status {
        /// Host (and port) of the registry.
        registry: String,
        /// What was being done (`GET manifest docker.io/library/x:1`).
        op: String,
        /// HTTP status code.
        status: u16,
        /// The registry's error code and message, when it sent them (starts with a space).
        detail: String,
    },
    /// The registry could not be reached or the connection broke.
    #[error("registry {registry} unreachable during {op}: {message}")]
    Connect {
        /// Host of the registry.
        registry: String,
        /// What was being done.
        op: String,
        /// What the HTTP stack said.
        message: String,
        /// What kind of failure it was, read from the error types.
        failure: NetFailure,
    },
    /// A blob or manifest did not match its digest.
    #[error("registry {registry} sent wrong content for {repository}@{expected}: got {actual}")]
    DigestMismatch {
        /// Host of the registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// No manifest for this platform in an index.
    #[error("{reference} has no image for {platform} (it has: {available})")]
    NoPlatform {
        /// The reference pulled.
        reference: String,
        /// The platform wanted.
        platform: String,
        /// The platforms offered.
        available: String,
    },
    /// A manifest or token response could not be decoded.
    #[error("registry {registry} sent an invalid {what}: {message}")]
    BadResponse {
        /// Host of the registry.
        registry: String,
        /// What was being decoded.
        what: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// A local file (blob to push, auth file, CA file) could not be used.
    #[error("cannot {op} {path}: {source}")]
    Local {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS or HTTP client could not be set up.
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

/// The kind of a network failure, decided from error types (reqwest, hyper, `std::io`), not messages:
/// callers retrying whole operations (`kiln bake`) retry only timeouts and broken connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetFailure {
    /// The request or the connection timed out.
    Timeout,
    /// The connection was reset, aborted or closed before the answer was complete.
    Reset,
    /// Anything else (refused, DNS, TLS, protocol): retrying will not help by itself.
    Other,
}

impl RegistryError {
    /// Why another attempt might succeed: a 5xx, 429 or 408 answer, a timeout, a reset connection.
    pub fn transient(&self) -> Option<String> {
        match self {
            RegistryError::Status { registry, op, status, .. }
                if *status >= 500 || *status == 429 || *status == 408 =>
            {
                Some(format!("registry {registry} answered {status} to {op}"))
            }
            RegistryError::Connect { registry, op, failure: NetFailure::Timeout, .. } => {
                Some(format!("registry {registry} timed out during {op}"))
            }
            RegistryError::Connect { registry, op, failure: NetFailure::Reset, .. } => {
                Some(format!("the connection to registry {registry} broke during {op}"))
            }
            _ => None,
        }
    }
}

/// The failure kind of a reqwest error: its own timeout flag, then the io and hyper errors in its chain.
pub fn net_failure(error: &reqwest::Error) -> NetFailure {
    use std::io::ErrorKind;
    if error.is_timeout() {
        return NetFailure::Timeout;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::TimedOut => return NetFailure::Timeout,
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof => return NetFailure::Reset,
                _ => {}
            }
        }
        if let Some(h) = cause.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return NetFailure::Timeout;
            }
            if h.is_incomplete_message() || h.is_canceled() {
                return NetFailure::Reset;
            }
        }
        source = cause.source();
    }
    NetFailure::Other
}

/// A connection error with its whole cause chain (reqwest's own message hides the TLS reason) and, for a
/// certificate problem, what to do about it.
pub fn connect_error(registry: &str, op: &str, error: &reqwest::Error) -> RegistryError {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if message.to_lowercase().contains("certificate") {
        message.push_str(
            " (a registry with a private CA needs --cert-dir DIR or --ca-file FILE; --tls-verify=false skips the check)",
        );
    }
    RegistryError::Connect { registry: registry.to_string(), op: op.to_string(), message, failure: net_failure(error) }
}
