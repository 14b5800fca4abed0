//! SARIF 2.1.0 (OASIS): one run, kiln as the tool with every rule described, one result per finding.
//! Dockerfile and fetch-log findings point at the file and line; image findings at the path inside the
//! image, relative to the `IMAGEROOT` base whose description names the image.

use serde_json::{Value, json};

use crate::policy::rules::RULES;
use crate::policy::{Finding, Location};

/// The schema URI SARIF files name.
pub const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// The findings as a SARIF log.
pub fn sarif(findings: &[Finding]) -> Value {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.id,
                "shortDescription": {"text": r.description},
                "help": {"text": r.hint},
                "defaultConfiguration": {"level": r.default.name()},
            })
        })
        .collect();
    let images: Vec<&str> = findings
        .iter()
        .filter_map(|f| match &f.location {
            Location::Image { image, .. } => Some(image.as_str()),
            _ => None,
        })
        .collect();
    let results: Vec<Value> = findings.iter().map(result).collect();
    let mut run = json!({
        "tool": {"driver": {
            "name": "kiln",
            "version": env!("CARGO_PKG_VERSION"),
            "rules": rules,
        }},
        "results": results,
    });
    if let Some(image) = images.first() {
        run["originalUriBaseIds"] =
            json!({"IMAGEROOT": {"uri": "file:///", "description": {"text": format!("the root of image {image}")}}});
    }
    json!({"$schema": SCHEMA, "version": "2.1.0", "runs": [run]})
}

fn result(f: &Finding) -> Value {
    let index = RULES.iter().position(|r| r.id == f.rule).unwrap_or(0);
    let location = match &f.location {
        Location::Dockerfile { file, line } | Location::FetchLog { file, line } => json!({
            "physicalLocation": {
                "artifactLocation": {"uri": uri_reference(file)},
                "region": {"startLine": line},
            }
        }),
        Location::Image { image, path } => json!({
            "physicalLocation": {"artifactLocation": {"uri": uri_reference(path.trim_start_matches('/')), "uriBaseId": "IMAGEROOT"}},
            "logicalLocations": [{"fullyQualifiedName": format!("{image}:{path}"), "kind": "resource"}],
        }),
    };
    json!({
        "ruleId": f.rule,
        "ruleIndex": index,
        "level": f.severity.name(),
        "message": {"text": format!("{} (hint: {})", f.message, f.hint)},
        "locations": [location],
    })
}

/// A path as a URI reference: percent-encodes what a URI may not hold (spaces, `%`, `#`, `?`, non-ASCII).
fn uri_reference(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:@!$&'()*+,;=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Severity;

    #[test]
    fn results_point_at_lines_and_image_paths() {
        let findings = [
            Finding {
                rule: "user-root",
                severity: Severity::Error,
                message: "m".into(),
                location: Location::Dockerfile { file: "dir/Docker file".into(), line: 3 },
                hint: "h".into(),
            },
            Finding {
                rule: "python-version",
                severity: Severity::Note,
                message: "m".into(),
                location: Location::Image { image: "app:1".into(), path: "/usr/libexec/platform-python3.6".into() },
                hint: "h".into(),
            },
        ];
        let log = sarif(&findings);
        let results = &log["runs"][0]["results"];
        assert_eq!(results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"], "dir/Docker%20file");
        assert_eq!(results[0]["locations"][0]["physicalLocation"]["region"]["startLine"], 3);
        assert_eq!(results[1]["level"], "note");
        assert_eq!(results[1]["ruleIndex"], RULES.iter().position(|r| r.id == "python-version").unwrap());
        assert_eq!(log["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap().len(), RULES.len());
    }
}
