//! The operating system: `os-release` (freedesktop's format: `KEY=value`, values optionally quoted) and
//! Red Hat's `redhat-release`; a UBI is told from RHEL by its `ubi.repo` or its image labels.

use std::collections::BTreeMap;

use super::OsInfo;

/// Parses `os-release` text into KEY → unquoted value.
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let Some((key, value)) = line.split_once('=') else { continue };
        out.insert(key.trim().to_string(), unquote(value.trim()));
    }
    out
}

fn unquote(value: &str) -> String {
    let inner = if value.len() >= 2
        && ((value.starts_with('"') && value.ends_with('"')) || (value.starts_with('\'') && value.ends_with('\'')))
    {
        &value[1..value.len() - 1]
    } else {
        value
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Builds the OS description from `os-release` fields, `redhat-release`, the `ubi.repo` marker and the
/// image's labels (UBI images carry `com.redhat.component=ubi9-container` or `name=ubi9/...`).
pub fn os_info(
    fields: Option<&BTreeMap<String, String>>,
    redhat_release: Option<String>,
    ubi_repo: bool,
    labels: &BTreeMap<String, String>,
) -> Option<OsInfo> {
    let fields = fields?;
    let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
    let mut info = OsInfo {
        id: get("ID"),
        version_id: get("VERSION_ID"),
        pretty_name: fields.get("PRETTY_NAME").or_else(|| fields.get("NAME")).cloned().unwrap_or_default(),
        id_like: get("ID_LIKE").split_whitespace().map(str::to_string).collect(),
        redhat_release,
        ubi: None,
    };
    let label_says_ubi = ["com.redhat.component", "name"]
        .iter()
        .filter_map(|k| labels.get(*k))
        .any(|v| v.starts_with("ubi") || v.contains("/ubi") || v.starts_with("ubi8") || v.starts_with("ubi9"));
    if info.id == "rhel" && (ubi_repo || label_says_ubi) {
        info.ubi = Some(format!("UBI {}", info.major()));
    }
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UBI9: &str = "NAME=\"Red Hat Enterprise Linux\"\nVERSION=\"9.4 (Plow)\"\nID=\"rhel\"\n\
ID_LIKE=\"fedora\"\nVERSION_ID=\"9.4\"\nPRETTY_NAME=\"Red Hat Enterprise Linux 9.4 (Plow)\"\n# comment\n";

    #[test]
    fn ubi_is_told_from_rhel_by_its_repo_file() {
        let fields = parse_os_release(UBI9);
        assert_eq!(fields["ID"], "rhel");
        let labels = BTreeMap::new();
        let rhel = os_info(Some(&fields), None, false, &labels).unwrap();
        assert_eq!(rhel.ubi, None);
        let ubi =
            os_info(Some(&fields), Some("Red Hat Enterprise Linux release 9.4 (Plow)".into()), true, &labels).unwrap();
        assert_eq!(ubi.ubi.as_deref(), Some("UBI 9"));
        assert_eq!(ubi.describe(), "UBI 9 (Red Hat Enterprise Linux 9.4 (Plow))");
        assert_eq!(ubi.id_like, ["fedora"]);
    }

    #[test]
    fn quotes_and_escapes() {
        let f = parse_os_release("A='x y'\nB=\"a\\\"b\"\nC=plain\n");
        assert_eq!(f["A"], "x y");
        assert_eq!(f["B"], "a\"b");
        assert_eq!(f["C"], "plain");
    }
}
