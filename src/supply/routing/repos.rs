//! System package repositories through Nexus: the image's own apt sources and dnf/yum repository files,
//! read through the step's view, with every http(s) repository URL rewritten to its Nexus repository,
//! written into the step's scratch directory and bound read-only over the originals. The image's files
//! are never changed; a step that tries to add a repository file while routing is on gets a read-only
//! error instead of a file that would silently vanish.

use std::path::Path;

use super::RoutingError;
use crate::supply::{ImageView, StepSupply};

/// What a repository URL template can use.
#[derive(Debug, Default)]
pub struct Vars {
    /// Host (and `:port` when not the default) of the original URL.
    pub host: String,
    /// Its path, without the leading or trailing `/`.
    pub path: String,
    /// The last segment of that path.
    pub last: String,
    /// The dnf repository id (empty for apt).
    pub repoid: String,
}

impl Vars {
    /// The variables of `url` (`None` when it is not http or https).
    pub fn of(url: &str, repoid: &str) -> Option<Vars> {
        let parsed = url::Url::parse(url).ok().filter(|u| matches!(u.scheme(), "http" | "https"))?;
        let host = match parsed.port() {
            Some(port) => format!("{}:{port}", parsed.host_str()?),
            None => parsed.host_str()?.to_string(),
        };
        // dnf variables ($basearch) arrive percent-encoded by the URL parser; keep them as written.
        let path = url[url.find(&host).map_or(0, |i| i + host.len())..].trim_matches('/').to_string();
        let last = path.rsplit('/').next().unwrap_or_default().to_string();
        Some(Vars { host, path, last, repoid: repoid.to_string() })
    }

    /// `template` with `{host}`, `{path}`, `{last}` and `{repoid}` filled in.
    pub fn fill(&self, template: &str) -> String {
        template
            .replace("{host}", &self.host)
            .replace("{path}", &self.path)
            .replace("{last}", &self.last)
            .replace("{repoid}", &self.repoid)
    }
}

/// The URL a repository goes to, from its variables.
pub type Rewrite<'a> = dyn Fn(&Vars) -> String + 'a;

/// Rewrites the image's apt sources (`sources.list`, `sources.list.d/*.list` and `*.sources`).
pub fn apt(view: &ImageView, rewrite: &Rewrite<'_>, scratch: &Path, out: &mut StepSupply) -> Result<(), RoutingError> {
    if let Some(text) = view.read("/etc/apt/sources.list") {
        mkdir(scratch)?;
        let path = scratch.join("apt-sources.list");
        write(&path, &rewrite_list(&String::from_utf8_lossy(&text), rewrite))?;
        out.bind(&path, "/etc/apt/sources.list");
    }
    if view.is_dir("/etc/apt/sources.list.d") {
        let dir = scratch.join("apt-sources.list.d");
        mkdir(&dir)?;
        for name in view.list("/etc/apt/sources.list.d") {
            let Some(text) = view.read(&format!("/etc/apt/sources.list.d/{name}")) else { continue };
            let text = String::from_utf8_lossy(&text);
            let rewritten = if name.ends_with(".sources") {
                rewrite_deb822(&text, rewrite)
            } else if name.ends_with(".list") {
                rewrite_list(&text, rewrite)
            } else {
                text.into_owned()
            };
            write(&dir.join(&name), &rewritten)?;
        }
        out.bind(&dir, "/etc/apt/sources.list.d");
    }
    Ok(())
}

/// Rewrites the image's dnf/yum repository files (`/etc/yum.repos.d/*.repo`).
pub fn dnf(view: &ImageView, rewrite: &Rewrite<'_>, scratch: &Path, out: &mut StepSupply) -> Result<(), RoutingError> {
    if !view.is_dir("/etc/yum.repos.d") {
        return Ok(());
    }
    let dir = scratch.join("yum.repos.d");
    mkdir(&dir)?;
    for name in view.list("/etc/yum.repos.d") {
        let Some(text) = view.read(&format!("/etc/yum.repos.d/{name}")) else { continue };
        let text = String::from_utf8_lossy(&text);
        let rewritten = if name.ends_with(".repo") { rewrite_repo(&text, rewrite) } else { text.into_owned() };
        write(&dir.join(&name), &rewritten)?;
    }
    out.bind(&dir, "/etc/yum.repos.d");
    Ok(())
}

/// One-line apt sources: `deb [options] URI suite components...`.
pub fn rewrite_list(text: &str, rewrite: &Rewrite<'_>) -> String {
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(&rewrite_list_line(line, rewrite).unwrap_or_else(|| line.to_string()));
        out.push('\n');
    }
    out
}

fn rewrite_list_line(line: &str, rewrite: &Rewrite<'_>) -> Option<String> {
    let trimmed = line.trim_start();
    if !(trimmed.starts_with("deb ") || trimmed.starts_with("deb-src ") || trimmed.starts_with("deb\t")) {
        return None;
    }
    // The URI is the first word after the type and an optional `[ ... ]` block.
    let after_type = trimmed.find(char::is_whitespace)?;
    let rest = trimmed[after_type..].trim_start();
    let rest = match rest.strip_prefix('[') {
        Some(options) => options[options.find(']')? + 1..].trim_start(),
        None => rest,
    };
    let uri = rest.split_whitespace().next()?;
    let new = rewrite(&Vars::of(uri, "")?);
    let at = line.len() - rest.len();
    Some(format!("{}{}{}", &line[..at], new, &rest[uri.len()..]))
}

/// deb822 apt sources: the `URIs:` field of each stanza.
pub fn rewrite_deb822(text: &str, rewrite: &Rewrite<'_>) -> String {
    let mut out = String::new();
    for line in text.lines() {
        match line.split_once(':') {
            Some((field, value)) if field.eq_ignore_ascii_case("URIs") => {
                let uris: Vec<String> = value
                    .split_whitespace()
                    .map(|u| Vars::of(u, "").map(|v| rewrite(&v)).unwrap_or_else(|| u.to_string()))
                    .collect();
                out.push_str(&format!("{field}: {}", uris.join(" ")));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// A `.repo` file: in each section, `baseurl` becomes the Nexus repository (computed from the first
/// http(s) URL of `baseurl`, else of `metalink`/`mirrorlist`), and `metalink`/`mirrorlist` go, since
/// they would send dnf to the upstream mirrors.
pub fn rewrite_repo(text: &str, rewrite: &Rewrite<'_>) -> String {
    let mut out = String::new();
    let mut section: Vec<&str> = Vec::new();
    let flush = |section: &mut Vec<&str>, out: &mut String| {
        out.push_str(&rewrite_section(section, rewrite));
        section.clear();
    };
    for line in text.lines() {
        if line.trim_start().starts_with('[') {
            flush(&mut section, &mut out);
        }
        section.push(line);
    }
    flush(&mut section, &mut out);
    out
}

fn rewrite_section(lines: &[&str], rewrite: &Rewrite<'_>) -> String {
    let header = lines.first().map(|l| l.trim()).filter(|l| l.starts_with('['));
    let repoid = header.map(|h| h.trim_matches(|c| c == '[' || c == ']').to_string()).unwrap_or_default();
    let key_of = |line: &str| line.split_once('=').map(|(k, _)| k.trim().to_ascii_lowercase());
    let url_of = |key: &str| {
        lines.iter().filter(|l| key_of(l).as_deref() == Some(key)).find_map(|l| {
            let value = l.split_once('=')?.1;
            value
                .split([' ', ',', '\t'])
                .find(|u| u.starts_with("http://") || u.starts_with("https://"))
                .map(str::to_string)
        })
    };
    let source = url_of("baseurl").or_else(|| url_of("metalink")).or_else(|| url_of("mirrorlist"));
    let Some(new) = source.and_then(|u| Vars::of(&u, &repoid)).map(|v| rewrite(&v)) else {
        return lines.iter().map(|l| format!("{l}\n")).collect();
    };
    let mut out = String::new();
    let mut placed = false;
    let mut skipping = false;
    for line in lines {
        let key = key_of(line);
        // Continuation lines (indented) belong to the key before them.
        if skipping && line.starts_with([' ', '\t']) && key.is_none() {
            continue;
        }
        skipping = false;
        match key.as_deref() {
            Some("baseurl" | "metalink" | "mirrorlist") => {
                skipping = true;
                if !placed {
                    out.push_str(&format!("baseurl={new}\n"));
                    placed = true;
                }
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn write(path: &Path, text: &str) -> Result<(), RoutingError> {
    std::fs::write(path, text).map_err(|source| RoutingError::Write { what: "repository files", source })
}

fn mkdir(dir: &Path) -> Result<(), RoutingError> {
    std::fs::create_dir_all(dir).map_err(|source| RoutingError::Write { what: "repository files", source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nexus(v: &Vars) -> String {
        format!("https://nexus/{}", v.fill("repository/{last}/"))
    }

    #[test]
    fn one_line_sources_keep_options_suites_and_comments() {
        let text = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://deb.example.org/debian bookworm main\n\
                    deb-src http://deb.example.org/debian-security bookworm-security main\ndeb cdrom:[x]/ bookworm main\n";
        let out = rewrite_list(text, &nexus);
        assert_eq!(
            out,
            "# comment\ndeb [arch=amd64 signed-by=/k.gpg] https://nexus/repository/debian/ bookworm main\n\
             deb-src https://nexus/repository/debian-security/ bookworm-security main\ndeb cdrom:[x]/ bookworm main\n"
        );
    }

    #[test]
    fn deb822_sources_rewrite_their_uris_only() {
        let text = "Types: deb\nURIs: http://deb.example.org/debian\nSuites: bookworm bookworm-updates\n\
                    Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
        let out = rewrite_deb822(text, &nexus);
        assert!(out.contains("URIs: https://nexus/repository/debian/\n"), "{out}");
        assert!(out.contains("Suites: bookworm bookworm-updates\n"));
    }

    #[test]
    fn repo_files_get_one_baseurl_and_lose_their_mirror_lists() {
        let text = "[ubi-9-baseos-rpms]\nname = UBI 9 BaseOS\n\
                    baseurl = https://cdn.example.com/ubi9/9/$basearch/baseos/os\n  https://other/mirror\n\
                    enabled = 1\ngpgcheck = 1\n\n[epel]\nmetalink=https://mirrors.example.org/metalink?repo=epel-9&arch=$basearch\n";
        let template = "repository/{repoid}/";
        let out = rewrite_repo(text, &|v: &Vars| format!("https://nexus/{}", v.fill(template)));
        assert_eq!(
            out,
            "[ubi-9-baseos-rpms]\nname = UBI 9 BaseOS\nbaseurl=https://nexus/repository/ubi-9-baseos-rpms/\n\
             enabled = 1\ngpgcheck = 1\n\n[epel]\nbaseurl=https://nexus/repository/epel/\n"
        );
    }

    #[test]
    fn templates_see_host_path_and_last_segment() {
        let v = Vars::of("http://deb.example.org:8080/debian-security/", "").unwrap();
        assert_eq!(v.fill("{host}/{path}"), "deb.example.org:8080/debian-security");
        assert_eq!(v.last, "debian-security");
        let v = Vars::of("https://cdn.example.com/ubi9/9/$basearch/os", "x").unwrap();
        assert_eq!(v.path, "ubi9/9/$basearch/os", "dnf variables stay as written");
    }
}
