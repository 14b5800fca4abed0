//! The fetch log: one JSON object per request the proxy saw, written as a line to `--fetch-log FILE` the
//! moment the request ends, and kept for the build's closing summary. The schema is documented in
//! docs/ARCHITECTURE.md ("The fetch log"); provenance and inventory read it, so fields are only ever added.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Version of the line format, the first field of every line.
pub const SCHEMA: u32 = 1;

/// One request through the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Line format version ([`SCHEMA`]).
    pub schema: u32,
    /// When the request started (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The step that made it: `Dockerfile:LINE RUN ...`.
    pub step: String,
    /// `CONNECT` for TLS tunnels, else the HTTP method.
    pub method: String,
    /// Destination host (no brackets for IPv6).
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// `host:port` for CONNECT, the absolute URL for plain HTTP.
    pub target: String,
    /// The request path (plain HTTP only; a tunnel's content is not looked into).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub path: Option<String>,
    /// Whether the allow-list let it through.
    pub allowed: bool,
    /// HTTP status: the upstream's, 200 for an established tunnel, 403 refused, 502 unreachable.
    pub status: u16,
    /// Bytes from the step to the destination (request bodies, or the client side of a tunnel).
    pub bytes_sent: u64,
    /// Bytes from the destination to the step (response bodies, or the server side of a tunnel).
    pub bytes_received: u64,
    /// The same as `bytes_received`, under the name `attest::fetched` reads.
    pub bytes: u64,
    /// The URL: the absolute one for plain HTTP, `https://host:port` for a tunnel (what provenance lists).
    pub url: String,
    /// Milliseconds from the request to its end.
    pub duration_ms: u64,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// Made by kiln itself for the step (an `ADD <url>` download), not by the step through the proxy.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub by_kiln: bool,
}

/// The records of one build, and the file they go to.
#[derive(Debug)]
pub struct FetchLog {
    path: Option<PathBuf>,
    file: Option<Mutex<std::fs::File>>,
    records: Mutex<Vec<Record>>,
}

impl FetchLog {
    /// A log that also appends to `path` (created when missing): the builds of one `kiln bake` share a file,
    /// each line written whole with `O_APPEND`.
    pub fn create(path: Option<&Path>) -> std::io::Result<FetchLog> {
        let file = match path {
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                Some(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(p)?))
            }
            None => None,
        };
        Ok(FetchLog { path: path.map(Path::to_path_buf), file, records: Mutex::new(Vec::new()) })
    }

    /// Records one finished request (and writes its line).
    pub fn push(&self, record: Record) {
        if let Some(file) = &self.file {
            let mut line = serde_json::to_string(&record).unwrap_or_default();
            line.push('\n');
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            // A full disk must not fail the build's network; the summary still counts the request.
            let _ = file.write_all(line.as_bytes()).and_then(|()| file.flush());
        }
        self.records.lock().unwrap_or_else(|e| e.into_inner()).push(record);
    }

    /// The records so far.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// One line for the end of the build: requests, refusals, bytes, per destination.
    pub fn summary(&self) -> String {
        let records = self.records();
        let refused = records.iter().filter(|r| !r.allowed).count();
        let received: u64 = records.iter().map(|r| r.bytes_received).sum();
        let mut by_host: BTreeMap<String, (usize, bool)> = BTreeMap::new();
        for r in &records {
            let entry = by_host.entry(format!("{}:{}", r.host, r.port)).or_insert((0, r.allowed));
            entry.0 += 1;
        }
        let hosts: Vec<String> = by_host
            .iter()
            .map(|(h, (n, allowed))| if *allowed { format!("{h} ({n})") } else { format!("{h} (refused {n})") })
            .collect();
        let mut line = format!(
            "network (proxy-only): {} requests, {refused} refused, {} received",
            records.len(),
            human_bytes(received)
        );
        if !hosts.is_empty() {
            line.push_str(&format!(": {}", hosts.join(", ")));
        }
        if let Some(path) = &self.path {
            line.push_str(&format!("; fetch log: {}", path.display()));
        }
        line
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// Now as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = crate::build::rfc3339(now.as_secs() as i64);
    format!("{}.{:03}Z", secs.trim_end_matches('Z'), now.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(host: &str, allowed: bool, received: u64) -> Record {
        Record {
            schema: SCHEMA,
            time: now_rfc3339(),
            step: "Dockerfile:3 RUN pip install x".into(),
            method: "CONNECT".into(),
            host: host.into(),
            port: 443,
            target: format!("{host}:443"),
            path: None,
            allowed,
            status: if allowed { 200 } else { 403 },
            bytes_sent: 10,
            bytes_received: received,
            bytes: received,
            url: format!("https://{host}:443"),
            duration_ms: 5,
            error: None,
            by_kiln: false,
        }
    }

    #[test]
    fn lines_are_json_with_the_schema_first_and_the_summary_counts_them() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("logs/fetch.jsonl");
        let log = FetchLog::create(Some(&path)).unwrap();
        log.push(record("nexus", true, 2048));
        log.push(record("evil", false, 0));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("{\"schema\":1,"), "{}", lines[0]);
        let back: Record = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(back, log.records()[1]);
        let summary = log.summary();
        assert!(summary.contains("2 requests, 1 refused, 2.0 KiB received"), "{summary}");
        assert!(summary.contains("evil:443 (refused 1)") && summary.contains("nexus:443 (1)"), "{summary}");
    }
}
