//! The allow-list of proxy-only builds: `host` (any port), `host:port`, `*.domain` (any name under the
//! domain, not the domain itself) and `*.domain:port`; names compare case-insensitively, IPv6 addresses are
//! written in brackets (`[::1]:8443`).

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// The name, lower case, without brackets; a leading `*.` for a domain pattern.
    host: String,
    /// The port, when the entry names one.
    port: Option<u16>,
}

/// The hosts RUN steps may reach through the proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

impl AllowList {
    /// An allow-list of `patterns`; an unreadable pattern is an error naming it.
    pub fn new(patterns: &[String]) -> Result<AllowList, String> {
        let mut entries = Vec::new();
        for pattern in patterns {
            let (host, port) = split_host_port(pattern.trim())
                .ok_or_else(|| format!("--allow-host {pattern:?}: expected HOST, HOST:PORT or *.DOMAIN"))?;
            let entry = Entry { host: host.to_ascii_lowercase(), port };
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
        Ok(AllowList { entries })
    }

    /// Whether `host:port` may be reached.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        self.entries.iter().any(|e| {
            let name = match e.host.strip_prefix("*.") {
                Some(domain) => host.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
                None => e.host == host,
            };
            name && e.port.is_none_or(|p| p == port)
        })
    }

    /// The entries as written back (`host:port`), for messages.
    pub fn describe(&self) -> String {
        if self.entries.is_empty() {
            return "nothing".to_string();
        }
        let names: Vec<String> = self
            .entries
            .iter()
            .map(|e| {
                let host = if e.host.contains(':') { format!("[{}]", e.host) } else { e.host.clone() };
                match e.port {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                }
            })
            .collect();
        names.join(", ")
    }
}

/// `host` / `host:port` / `[v6]` / `[v6]:port`.
fn split_host_port(text: &str) -> Option<(String, Option<u16>)> {
    if text.is_empty() || text.contains('/') || text.contains(char::is_whitespace) {
        return None;
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host.to_string(), Some(port.parse().ok()?))),
        Some(_) => Some((text.to_string(), None)),
        None => Some((text.to_string(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(p: &[&str]) -> AllowList {
        AllowList::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn hosts_ports_and_domains() {
        let allow = list(&["nexus.example.com:8443", "GitHub.com", "*.corp.example", "[::1]:9000"]);
        assert!(allow.allows("nexus.example.com", 8443));
        assert!(!allow.allows("nexus.example.com", 443), "the port is part of the entry");
        assert!(allow.allows("github.com", 443) && allow.allows("GITHUB.COM", 22));
        assert!(allow.allows("a.b.corp.example", 443));
        assert!(!allow.allows("corp.example", 443), "a domain pattern does not match the domain itself");
        assert!(!allow.allows("evilcorp.example", 443));
        assert!(allow.allows("[::1]", 9000) && allow.allows("::1", 9000));
        assert!(!allow.allows("127.0.0.1", 9000));
    }

    #[test]
    fn bad_patterns_are_named() {
        let err = AllowList::new(&["https://x/".to_string()]).unwrap_err();
        assert!(err.contains("https://x/"), "{err}");
        assert!(AllowList::new(&["host:notaport".to_string()]).is_err());
    }
}
