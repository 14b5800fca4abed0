//! "What the build fetched": one record per request, the common input of provenance (every URL becomes a
//! resolved dependency) and policy (every host must be Nexus). Two producers feed it:
//!
//! - ADD of a URL: the builder records the URL, status, size and the content's sha256 (`via: add`);
//! - the proxy-only network (`--fetch-log FILE`, issue 11): one JSON object per line with `step`, `method`,
//!   `host`, `path`, `status`, `bytes`, `time` (`via` absent → `proxy`). [`read_fetch_log`] reads such a file;
//!   unknown fields are ignored, `step` and `time` may be strings or numbers.

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

/// Who made the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// kiln itself, for an `ADD <url>`.
    Add,
    /// A RUN step, through kiln's forward proxy.
    #[default]
    Proxy,
}

/// One request a build made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRecord {
    /// The step that made it (`Dockerfile:7`, a step number, a stage/step label).
    #[serde(default, deserialize_with = "text_or_number")]
    pub step: Option<String>,
    /// HTTP method (`GET`, `CONNECT` for a TLS tunnel).
    #[serde(default = "get")]
    pub method: String,
    /// `host` or `host:port`.
    pub host: String,
    /// Request path (or the CONNECT target), when known.
    #[serde(default)]
    pub path: Option<String>,
    /// The full URL, when the producer knows it (ADD does).
    #[serde(default)]
    pub url: Option<String>,
    /// HTTP status.
    #[serde(default)]
    pub status: Option<u16>,
    /// Bytes transferred.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// When (RFC 3339, or seconds since the epoch as written).
    #[serde(default, deserialize_with = "text_or_number")]
    pub time: Option<String>,
    /// The content's sha256 (hex), when known.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Who made the request.
    #[serde(default)]
    pub via: Via,
}

fn get() -> String {
    "GET".to_string()
}

fn text_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

impl FetchRecord {
    /// A record for an ADD download.
    pub fn from_add(url: &str, step: &str, status: u16, bytes: u64, sha256: &str) -> FetchRecord {
        let parsed = url::Url::parse(url).ok();
        let host = parsed
            .as_ref()
            .map(|u| match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                _ => String::new(),
            })
            .unwrap_or_default();
        FetchRecord {
            step: Some(step.to_string()),
            method: "GET".to_string(),
            host,
            path: parsed.as_ref().map(|u| u.path().to_string()),
            url: Some(url.to_string()),
            status: Some(status),
            bytes: Some(bytes),
            time: None,
            sha256: Some(sha256.to_string()),
            via: Via::Add,
        }
    }

    /// The host without its port.
    pub fn hostname(&self) -> &str {
        let h = self.host.as_str();
        if h.starts_with('[') {
            return h.split(']').next().map_or(h, |s| s.trim_start_matches('['));
        }
        h.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(h, |(h, _)| h)
    }

    /// The URL fetched (`https://host/path`; a CONNECT tunnel is `https://host`).
    pub fn uri(&self) -> String {
        if let Some(url) = &self.url {
            return url.clone();
        }
        if self.method.eq_ignore_ascii_case("CONNECT") {
            return format!("https://{}", self.host);
        }
        let path = self.path.as_deref().unwrap_or("/");
        let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
        format!("http://{}{path}", self.host)
    }
}

/// Why a fetch log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchLogError {
    /// The file could not be read.
    #[error("cannot read the fetch log {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line is not a fetch record.
    #[error("{path}:{line}: not a fetch-log record: {message}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What the JSON decoder said.
        message: String,
    },
}

/// Reads a fetch log (JSON lines; blank lines skipped).
pub fn read_fetch_log(path: &Path) -> Result<Vec<(usize, FetchRecord)>, FetchLogError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FetchLogError::Read { path: shown.clone(), source })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let record = serde_json::from_str(line).map_err(|e| FetchLogError::Line {
            path: shown.clone(),
            line: i + 1,
            message: e.to_string(),
        })?;
        out.push((i + 1, record));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_lines_and_add_records() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("fetch.jsonl");
        std::fs::write(
            &log,
            "{\"step\":3,\"method\":\"CONNECT\",\"host\":\"nexus.corp:443\",\"status\":200,\"bytes\":1200,\"time\":\"2026-01-01T00:00:00Z\"}\n\n\
{\"step\":\"Dockerfile:9\",\"method\":\"GET\",\"host\":\"pypi.org\",\"path\":\"/simple/flask/\",\"status\":403,\"extra\":1}\n",
        )
        .unwrap();
        let records = read_fetch_log(&log).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].1.step.as_deref(), Some("3"));
        assert_eq!(records[0].1.hostname(), "nexus.corp");
        assert_eq!(records[0].1.uri(), "https://nexus.corp:443");
        assert_eq!(records[1].0, 3);
        assert_eq!(records[1].1.uri(), "http://pypi.org/simple/flask/");
        std::fs::write(&log, "{\"host\":\"a\"}\nnot json\n").unwrap();
        assert!(read_fetch_log(&log).unwrap_err().to_string().contains("fetch.jsonl:2:"));
        let add = FetchRecord::from_add("https://example.com:8443/a.tgz", "Dockerfile:4", 200, 10, "ab");
        assert_eq!((add.host.as_str(), add.via), ("example.com:8443", Via::Add));
    }
}
