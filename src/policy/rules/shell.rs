//! Reading shell command text the way a reviewer would: URLs and their hosts, and "download then run"
//! pipelines. Heuristics over the text as written (no expansion): variables in a host are not judged.

/// The http(s) URLs in `text`, with their host names (lower case, no port, no user info).
pub fn urls(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("http://").into_iter().chain(rest.find("https://")).min() {
        let tail = &rest[start..];
        let end = tail.find(|c: char| c.is_whitespace() || "\"'<>|;`()\\".contains(c)).unwrap_or(tail.len());
        let url = &tail[..end];
        rest = &tail[end..];
        let after = url.split_once("://").map_or("", |(_, a)| a);
        let authority = after.split(['/', '?', '#']).next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
        if host.is_empty() || host.contains(['$', '{', '%']) {
            continue;
        }
        out.push((url.to_string(), host.to_ascii_lowercase()));
    }
    out
}

const FETCHERS: [&str; 2] = ["curl", "wget"];
const SHELLS: [&str; 10] = ["sh", "bash", "zsh", "dash", "ash", "ksh", "python", "python3", "perl", "ruby"];

fn base(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// The first command word of a pipeline segment (after `sudo`, `env` and `VAR=value` prefixes).
fn command_word(segment: &str) -> Option<&str> {
    segment
        .split_whitespace()
        .map(|w| w.trim_start_matches(['(', '{']))
        .find(|w| !w.is_empty() && !w.contains('=') && *w != "sudo" && *w != "env" && *w != "exec")
}

/// Whether `text` downloads something and runs it in the same command (`curl ... | sh`,
/// `sh -c "$(curl ...)"`, `bash <(wget ...)`).
pub fn pipes_to_shell(text: &str) -> bool {
    let normal: String = text.replace("\\\n", " ");
    for command in normal.split(['\n', ';']).flat_map(|c| c.split("&&")).flat_map(|c| c.split("||")) {
        let segments: Vec<&str> = command.split('|').collect();
        for pair in segments.windows(2) {
            let fetches = pair[0].split_whitespace().any(|w| FETCHERS.contains(&base(w)));
            if fetches && command_word(pair[1]).is_some_and(|w| SHELLS.contains(&base(w))) {
                return true;
            }
        }
        if let Some(first) = command_word(command)
            && SHELLS.contains(&base(first))
        {
            let substituted = ["$(curl", "$(wget", "<(curl", "<(wget", "`curl", "`wget"];
            if substituted.iter().any(|s| command.contains(s)) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_and_run_patterns() {
        assert!(pipes_to_shell("curl -fsSL https://get.example.com | sh"));
        assert!(pipes_to_shell("set -e; wget -qO- https://x/install.sh | sudo bash -s --"));
        assert!(pipes_to_shell("apt-get update && curl -s https://x | /bin/bash"));
        assert!(pipes_to_shell("sh -c \"$(curl -fsSL https://x/install.sh)\""));
        assert!(pipes_to_shell("bash <(wget -qO- https://x)"));
        assert!(!pipes_to_shell("curl -fsSLo /tmp/i.sh https://x && sha256sum -c sums && sh /tmp/i.sh"));
        assert!(!pipes_to_shell("cat file | sh"));
        assert!(!pipes_to_shell("curl https://x || true"));
    }

    #[test]
    fn urls_and_hosts() {
        let found = urls(
            "pip install -i https://user:pw@nexus.corp:8443/repository/pypi/simple flask && curl \"http://evil.example/x\"",
        );
        let hosts: Vec<&str> = found.iter().map(|(_, h)| h.as_str()).collect();
        assert_eq!(hosts, ["nexus.corp", "evil.example"]);
        assert!(urls("curl https://${NEXUS}/x").is_empty());
    }
}
