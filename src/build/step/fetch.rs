//! ADD's remote sources: downloading an http(s) URL into a temp file, with `--checksum` verification and
//! the reference's metadata rules (mode 0600, mtime from `Last-Modified`). A server that cannot be reached,
//! or that stops sending mid-way, ends the download after [`Timeouts`] instead of hanging the build.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server could not be reached or the transfer broke.
    #[error("cannot download {url}: {message}")]
    Transfer {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The server answered with an error status.
    #[error("cannot download {url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// `--checksum` did not match.
    #[error("checksum mismatch for {url}: expected {expected}, got {actual}")]
    Checksum {
        /// The URL.
        url: String,
        /// The digest given with `--checksum`.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// `--checksum` is not a sha256 digest.
    #[error("unsupported --checksum {0:?}: expected sha256:<64 hex digits>")]
    BadChecksum(String),
    /// The server could not be reached in time, or sent nothing for too long.
    #[error("cannot download {url}: {what} for {seconds} s (timed out)")]
    Timeout {
        /// The URL.
        url: String,
        /// What did not happen (`no connection`, `no data from the server`).
        what: &'static str,
        /// The limit that was reached.
        seconds: u64,
    },
    /// The HTTP client could not be set up.
    #[error("cannot set up the HTTP client for ADD: {0}")]
    Client(String),
    /// Writing the temp file failed.
    #[error("cannot write the download of {url}: {source}")]
    Write {
        /// The URL.
        url: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// How long a download waits: for the connection, and — once connected — for each next piece of data
/// (an idle limit, not a limit on the whole transfer, so big files on slow links still arrive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP (and TLS) connection set-up.
    pub connect: Duration,
    /// Longest silence while waiting for response headers or body data.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(30), idle: Duration::from_secs(60) }
    }
}

impl Timeouts {
    /// The same limit for both.
    pub fn both(limit: Duration) -> Timeouts {
        Timeouts { connect: limit, idle: limit }
    }
}

/// The HTTP client ADD downloads with, and its limits.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    timeouts: Timeouts,
}

impl Http {
    /// A client that trusts `roots` (the registry client's: with none, plain HTTP still works) and gives
    /// up after `timeouts`.
    pub fn new(timeouts: Timeouts, roots: &crate::registry::Roots) -> Result<Http, FetchError> {
        let client = roots
            .apply(reqwest::Client::builder())
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.idle)
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        Ok(Http { client, timeouts })
    }
}

/// What a download produced.
#[derive(Debug)]
pub struct Downloaded {
    /// The file name to use when the destination is a directory (last URL path segment).
    pub file_name: String,
    /// Modification time from `Last-Modified`, when the server sent one.
    pub mtime: Option<i64>,
    /// The HTTP status the server answered.
    pub status: u16,
    /// Bytes received.
    pub bytes: u64,
    /// The content's sha256 (hex).
    pub sha256: String,
}

/// True when an ADD source is a remote URL.
pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// True when an ADD source is a git repository (`git@...`, `*.git`, `git://`), which kiln does not fetch yet.
pub fn is_git(source: &str) -> bool {
    source.starts_with("git@") || source.starts_with("git://") || (is_url(source) && source.ends_with(".git"))
}

/// Downloads `url` into `into`, verifying `checksum` (`sha256:<hex>`) when given.
pub async fn download(http: &Http, url: &str, checksum: Option<&str>, into: &Path) -> Result<Downloaded, FetchError> {
    let expected = checksum.map(parse_checksum).transpose()?;
    let transfer = |e: reqwest::Error| transfer_error(url, http.timeouts, e);
    let response = http.client.get(url).send().await.map_err(transfer)?;
    if !response.status().is_success() {
        return Err(FetchError::Status { url: url.to_string(), status: response.status().as_u16() });
    }
    let mtime = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64);
    let write = |source| FetchError::Write { url: url.to_string(), source };
    let mut file = std::io::BufWriter::new(std::fs::File::create(into).map_err(write)?);
    let status = response.status().as_u16();
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(transfer)?;
        bytes += chunk.len() as u64;
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(write)?;
    }
    file.flush().map_err(write)?;
    let actual = hex::encode(hasher.finalize());
    if let Some(expected) = expected
        && expected != actual
    {
        return Err(FetchError::Checksum {
            url: url.to_string(),
            expected: format!("sha256:{expected}"),
            actual: format!("sha256:{actual}"),
        });
    }
    Ok(Downloaded { file_name: file_name_of(url), mtime, status, bytes, sha256: actual })
}

fn transfer_error(url: &str, timeouts: Timeouts, e: reqwest::Error) -> FetchError {
    let url = url.to_string();
    match (e.is_timeout(), e.is_connect()) {
        (true, true) => FetchError::Timeout { url, what: "no connection", seconds: timeouts.connect.as_secs() },
        (true, false) => FetchError::Timeout { url, what: "no data from the server", seconds: timeouts.idle.as_secs() },
        _ => FetchError::Transfer { url, message: e.to_string() },
    }
}

fn parse_checksum(text: &str) -> Result<String, FetchError> {
    let hex = text.strip_prefix("sha256:").ok_or_else(|| FetchError::BadChecksum(text.to_string()))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FetchError::BadChecksum(text.to_string()));
    }
    Ok(hex.to_ascii_lowercase())
}

/// The last non-empty path segment of a URL, without query or fragment (`index.html` when there is none).
pub fn file_name_of(url: &str) -> String {
    let path = url::Url::parse(url).map(|u| u.path().to_string()).unwrap_or_default();
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("index.html").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_come_from_the_url_path() {
        assert_eq!(file_name_of("https://example.org/a/b/tool.tar.gz?x=1#f"), "tool.tar.gz");
        assert_eq!(file_name_of("https://example.org/"), "index.html");
    }

    #[test]
    fn checksums_must_be_sha256() {
        assert!(parse_checksum("sha256:abc").is_err());
        assert!(parse_checksum("md5:00").is_err());
        let good = format!("sha256:{}", "A".repeat(64));
        assert_eq!(parse_checksum(&good).unwrap(), "a".repeat(64));
    }

    /// A server that answers with headers and then goes silent.
    fn stalling_server() -> (String, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/stall.bin", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut request);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nsome");
            std::thread::sleep(Duration::from_secs(3));
        });
        (url, handle)
    }

    #[test]
    fn a_stalled_download_times_out() {
        let (url, server) = stalling_server();
        let timeouts = Timeouts::both(Duration::from_millis(500));
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let result = runtime.block_on(download(
            &Http::new(timeouts, &crate::registry::Roots::load(&[]).unwrap()).unwrap(),
            &url,
            None,
            &dir.path().join("f"),
        ));
        let err = result.unwrap_err();
        assert!(matches!(err, FetchError::Timeout { what: "no data from the server", .. }), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn git_sources_are_recognised() {
        assert!(is_git("git@github.com:moby/buildkit.git"));
        assert!(is_git("https://github.com/moby/buildkit.git"));
        assert!(!is_git("https://example.org/file.tar"));
    }
}
