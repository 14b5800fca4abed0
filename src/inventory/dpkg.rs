//! Debian packages from dpkg's `status` file (and distroless images' `status.d/` files): RFC 822-style
//! paragraphs; only packages whose `Status` says `installed` count.

use super::scan::OsPackage;

/// Parses dpkg's status text into the installed packages.
pub fn parse_status(text: &str) -> Vec<OsPackage> {
    let mut out = Vec::new();
    for paragraph in text.split("\n\n") {
        let mut fields: Vec<(&str, String)> = Vec::new();
        for line in paragraph.lines() {
            if line.starts_with(' ') || line.starts_with('\t') {
                continue; // continuation lines belong to descriptions and conffiles
            }
            if let Some((k, v)) = line.split_once(':') {
                fields.push((k.trim(), v.trim().to_string()));
            }
        }
        let get = |k: &str| fields.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
        let (Some(name), Some(version)) = (get("Package"), get("Version")) else { continue };
        // status.d files have no Status field: their presence means installed.
        if get("Status").is_some_and(|s| !s.ends_with(" installed")) {
            continue;
        }
        let source = get("Source").map(|s| s.split_whitespace().next().unwrap_or_default().to_string());
        out.push(OsPackage {
            name,
            version,
            release: None,
            epoch: None,
            arch: get("Architecture"),
            license: None,
            source,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_packages_only() {
        let text = "Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b2\n\
Description: shell\n more text\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
Package: libc6\nStatus: install ok installed\nSource: glibc (2.36-9)\nVersion: 2.36-9\nArchitecture: amd64\n";
        let p = parse_status(text);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "bash");
        assert_eq!(p[1].source.as_deref(), Some("glibc"));
    }
}
