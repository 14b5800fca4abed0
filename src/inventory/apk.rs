//! Alpine packages from apk's `installed` database: one-letter keys (`P:` name, `V:` version, `A:` arch,
//! `L:` license, `o:` origin), blank lines between packages.

use super::scan::OsPackage;

/// Parses apk's installed database.
pub fn parse_installed(text: &str) -> Vec<OsPackage> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut p = OsPackage {
            name: String::new(),
            version: String::new(),
            release: None,
            epoch: None,
            arch: None,
            license: None,
            source: None,
        };
        for line in block.lines() {
            let Some((k, v)) = line.split_once(':') else { continue };
            let v = v.to_string();
            match k {
                "P" => p.name = v,
                "V" => p.version = v,
                "A" => p.arch = Some(v),
                "L" => p.license = Some(v),
                "o" => p.source = Some(v),
                _ => {}
            }
        }
        if !p.name.is_empty() && !p.version.is_empty() {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_blocks() {
        let p =
            super::parse_installed("C:Q1x\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\n\nP:busybox\nV:1.36.1-r5\n");
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].name.as_str(), p[0].license.as_deref()), ("musl", Some("MIT")));
    }
}
