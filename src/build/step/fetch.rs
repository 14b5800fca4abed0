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
    #[error("digest mismatch for {url}: expected {expected}, got {actual}")]
    Checksum {
        /// The URL.
        url: String,
        /// The digest given with `--checksum`.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// `--checksum` is not a digest (go-digest's messages: invalid format, unsupported algorithm, length).
    #[error("--checksum {0:?}: {1}")]
    BadChecksum(String, &'static str),
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
    /// Built at the first download (most builds have none), with the roots read then.
    client: std::sync::OnceLock<Result<reqwest::Client, String>>,
    roots: crate::registry::Roots,
    timeouts: Timeouts,
}

impl Http {
    /// A client that trusts `roots` (the registry client's: with none, plain HTTP still works) and gives
    /// up after `timeouts`.
    pub fn new(timeouts: Timeouts, roots: &crate::registry::Roots) -> Http {
        Http { client: std::sync::OnceLock::new(), roots: roots.clone(), timeouts }
    }

    fn client(&self) -> Result<&reqwest::Client, FetchError> {
        let built = self.client.get_or_init(|| {
            let builder =
                reqwest::Client::builder().connect_timeout(self.timeouts.connect).read_timeout(self.timeouts.idle);
            self.roots.apply(builder).build().map_err(|e| e.to_string())
        });
        built.as_ref().map_err(|e| FetchError::Client(e.clone()))
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
    /// The URL the content came from, after redirects.
    pub final_url: String,
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
    let expected = checksum.map(Checksum::parse).transpose()?;
    let transfer = |e: reqwest::Error| transfer_error(url, http.timeouts, e);
    let response = http.client()?.get(url).send().await.map_err(transfer)?;
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
    let final_url = response.url().to_string();
    // sha256 always (provenance records it); the checksum's own algorithm too when it is another.
    let algorithm = expected.as_ref().map_or("sha256", |c| c.algorithm);
    let mut sha256 = Sha256::new();
    let mut checked = (algorithm != "sha256").then(|| Hasher::new(algorithm));
    let mut bytes = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(transfer)?;
        bytes += chunk.len() as u64;
        sha256.update(&chunk);
        if let Some(h) = &mut checked {
            h.update(&chunk);
        }
        file.write_all(&chunk).map_err(write)?;
    }
    file.flush().map_err(write)?;
    let sha256 = hex::encode(sha256.finalize());
    let actual = checked.map_or_else(|| sha256.clone(), Hasher::finish);
    if let Some(expected) = expected
        && expected.hex != actual
    {
        return Err(FetchError::Checksum {
            url: url.to_string(),
            expected: format!("{algorithm}:{}", expected.hex),
            actual: format!("{algorithm}:{actual}"),
        });
    }
    Ok(Downloaded { file_name: file_name_of(url), mtime, status, bytes, sha256, final_url })
}

fn transfer_error(url: &str, timeouts: Timeouts, e: reqwest::Error) -> FetchError {
    let url = url.to_string();
    match (e.is_timeout(), e.is_connect()) {
        (true, true) => FetchError::Timeout { url, what: "no connection", seconds: timeouts.connect.as_secs() },
        (true, false) => FetchError::Timeout { url, what: "no data from the server", seconds: timeouts.idle.as_secs() },
        _ => FetchError::Transfer { url, message: e.to_string() },
    }
}

/// The time a remote source gives `SOURCE_DATE_EPOCH` (BuildKit's `resolveSourceDateEpochFromState`):
/// its `Last-Modified`, else — when it is a tar archive, compressed or not — its newest regular file's
/// modification time, else none.
pub async fn source_time(http: &Http, url: &str, checksum: Option<&str>) -> Result<Option<i64>, FetchError> {
    let scratch =
        tempfile::NamedTempFile::new().map_err(|source| FetchError::Write { url: url.to_string(), source })?;
    let got = download(http, url, checksum, scratch.path()).await?;
    if got.mtime.is_some() {
        return Ok(got.mtime);
    }
    let newest = std::fs::File::open(scratch.path())
        .ok()
        .and_then(|f| crate::layer::decompress(std::io::BufReader::new(f)).ok())
        .and_then(|reader| newest_file_time(reader).ok().flatten());
    Ok(newest)
}

/// The newest regular file's mtime in a tar stream; `Err` when it is not one.
fn newest_file_time(reader: impl std::io::Read) -> std::io::Result<Option<i64>> {
    let mut archive = tar::Archive::new(reader);
    let mut newest = None;
    for entry in archive.entries()? {
        let entry = entry?;
        if entry.header().entry_type().is_file() {
            let mtime = entry.header().mtime()? as i64;
            newest = Some(newest.map_or(mtime, |n: i64| n.max(mtime)));
        }
    }
    Ok(newest)
}

/// A `--checksum` digest: the algorithms BuildKit accepts (go-digest's sha256, sha384, sha512).
#[derive(Debug, PartialEq, Eq)]
struct Checksum {
    algorithm: &'static str,
    hex: String,
}

impl Checksum {
    /// Parses `algorithm:hex` with go-digest's rules and messages.
    fn parse(text: &str) -> Result<Checksum, FetchError> {
        let bad = |why| FetchError::BadChecksum(text.to_string(), why);
        let Some((algorithm, hex)) = text.split_once(':').filter(|(a, h)| !a.is_empty() && !h.is_empty()) else {
            return Err(bad("invalid checksum digest format"));
        };
        let (algorithm, len) = match algorithm {
            "sha256" => ("sha256", 64),
            "sha384" => ("sha384", 96),
            "sha512" => ("sha512", 128),
            _ => return Err(bad("unsupported digest algorithm")),
        };
        if !hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(bad("invalid checksum digest format"));
        }
        if hex.len() != len {
            return Err(bad("invalid checksum digest length"));
        }
        Ok(Checksum { algorithm, hex: hex.to_string() })
    }
}

/// One of the digests [`Checksum`] allows, fed as the download streams.
enum Hasher {
    Sha256(Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(algorithm: &str) -> Hasher {
        match algorithm {
            "sha384" => Hasher::Sha384(sha2::Sha384::new()),
            "sha512" => Hasher::Sha512(sha2::Sha512::new()),
            _ => Hasher::Sha256(Sha256::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha384(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha384(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// The file name BuildKit gives a download: the URL path's last element (Go's `path.Base`), or
/// `__unnamed__` when the path has none (`http://host/`).
pub fn file_name_of(url: &str) -> String {
    let path = url::Url::parse(url).map(|u| u.path().to_string()).unwrap_or_default();
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("__unnamed__").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_come_from_the_url_path() {
        assert_eq!(file_name_of("https://example.org/a/b/tool.tar.gz?x=1#f"), "tool.tar.gz");
        assert_eq!(file_name_of("https://example.org/"), "__unnamed__");
        assert_eq!(file_name_of("https://example.org/dir/"), "dir");
    }

    /// BuildKit's testAddChecksum: go-digest's messages.
    #[test]
    fn checksums_are_digests() {
        let why = |text: &str| match Checksum::parse(text) {
            Err(FetchError::BadChecksum(_, why)) => why,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(why("md5:7e55db001d319a94b0b713529a756623"), "unsupported digest algorithm");
        assert_eq!(why(&format!("unknown:{}", "a".repeat(64))), "unsupported digest algorithm");
        assert_eq!(why(&"a".repeat(64)), "invalid checksum digest format");
        assert_eq!(why("sha256:abc"), "invalid checksum digest length");
        let good = format!("sha512:{}", "a".repeat(128));
        assert_eq!(Checksum::parse(&good).unwrap(), Checksum { algorithm: "sha512", hex: "a".repeat(128) });
    }

    #[test]
    fn the_newest_file_of_an_archive() {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, mtime) in [("a", 1_700_000_401u64), ("b", 1_700_000_402), ("c/", 1_800_000_000)] {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(if name.ends_with('/') {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            });
            header.set_mtime(mtime);
            header.set_size(0);
            builder.append_data(&mut header, name, std::io::empty()).unwrap();
        }
        let bytes = builder.into_inner().unwrap();
        assert_eq!(newest_file_time(bytes.as_slice()).unwrap(), Some(1_700_000_402), "directories do not count");
        let text = b"a plain file, not an archive".repeat(40);
        assert!(!matches!(newest_file_time(text.as_slice()), Ok(Some(_))), "a non-archive gives no time");
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
            &Http::new(timeouts, &crate::registry::Roots::load(&[]).unwrap()),
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
