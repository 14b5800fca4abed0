//! npm packages: `name`, `version` and `license` of `node_modules/**/package.json`.

use super::scan::Fact;

/// Parses a package manifest; `None` when it is not JSON or lacks a name or version.
pub fn parse_package_json(bytes: &[u8]) -> Option<Fact> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let name = value.get("name")?.as_str()?.to_string();
    let version = value.get("version")?.as_str()?.to_string();
    let license = match value.get("license") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Object(o)) => o.get("type").and_then(|t| t.as_str()).map(str::to_string),
        _ => None,
    };
    (!name.is_empty() && !version.is_empty()).then_some(Fact::Npm { name, version, license })
}

#[cfg(test)]
mod tests {
    #[test]
    fn scoped_and_object_licenses() {
        let fact = super::parse_package_json(br#"{"name":"@types/node","version":"20.1.0","license":{"type":"MIT"}}"#);
        assert_eq!(
            fact,
            Some(super::Fact::Npm {
                name: "@types/node".into(),
                version: "20.1.0".into(),
                license: Some("MIT".into())
            })
        );
        assert_eq!(super::parse_package_json(b"{not json"), None);
    }
}
