//! Python distributions: the core-metadata headers (`Name`, `Version`, `License`) of `*.dist-info/METADATA`,
//! `*.egg-info/PKG-INFO` and single-file `*.egg-info`. The body after the first blank line is the
//! description and is not read.

use super::scan::Fact;

/// Parses core metadata; `None` without a name and a version.
pub fn parse_metadata(text: &str) -> Option<Fact> {
    let (mut name, mut version, mut license) = (None, None, None);
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        match k {
            "Name" => name = Some(v.to_string()),
            "Version" => version = Some(v.to_string()),
            "License" if !v.is_empty() && v != "UNKNOWN" => license = Some(v.to_string()),
            "License-Expression" => license = Some(v.to_string()),
            _ => {}
        }
    }
    Some(Fact::PythonDist { name: name?, version: version?, license })
}

/// The name as PyPI and package URLs normalise it (PEP 503: lower case, runs of `-_.` → `-`).
pub fn normalise_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
            continue;
        }
        if dash && !out.is_empty() {
            out.push('-');
        }
        dash = false;
        out.extend(c.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_until_the_body() {
        let text = "Metadata-Version: 2.1\nName: Flask_Login\nVersion: 0.6.3\nLicense: MIT\n\nName: not-me\n";
        assert_eq!(
            parse_metadata(text),
            Some(Fact::PythonDist { name: "Flask_Login".into(), version: "0.6.3".into(), license: Some("MIT".into()) })
        );
        assert_eq!(normalise_name("Flask_Login"), "flask-login");
        assert_eq!(normalise_name("zope.interface"), "zope-interface");
        assert_eq!(parse_metadata("Name: x\n"), None);
    }
}
