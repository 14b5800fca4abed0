//! `SOURCE_DATE_EPOCH` as a build argument (or a global ARG's default): the time every history entry and
//! the image get, as in BuildKit (dockerfile2llb `resolveSourceDateEpochValue`).
//!
//! Accepted: seconds since the epoch; empty (no epoch); `context`, which with a local context (the only
//! kind kiln builds from) carries no time and so sets none. A stage name, which BuildKit resolves through
//! that stage's remote source, is refused with a message saying so.

use std::collections::BTreeMap;

/// The epoch the build arguments or the global ARGs ask for; `Err` with the message for a bad value.
pub fn resolve(
    build_args: &BTreeMap<String, String>,
    global_args: &BTreeMap<String, Option<String>>,
    stage_names: &[Option<String>],
) -> Result<Option<i64>, String> {
    let value = match build_args.get("SOURCE_DATE_EPOCH") {
        Some(v) => v.clone(),
        None => global_args.get("SOURCE_DATE_EPOCH").cloned().flatten().unwrap_or_default(),
    };
    if value.is_empty() || value == "context" {
        return Ok(None);
    }
    if let Ok(seconds) = value.parse::<i64>() {
        return Ok(Some(seconds));
    }
    let lower = value.to_lowercase();
    if stage_names.iter().flatten().any(|n| *n == lower) {
        return Err(format!(
            "SOURCE_DATE_EPOCH={value}: taking the epoch from a stage's remote source is not supported; give seconds since the epoch"
        ));
    }
    Err(format!("invalid SOURCE_DATE_EPOCH: {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(build: &[(&str, &str)], global: Option<&str>) -> Result<Option<i64>, String> {
        let build = build.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let global = global.map(|v| ("SOURCE_DATE_EPOCH".to_string(), Some(v.to_string()))).into_iter().collect();
        resolve(&build, &global, &[Some("src".to_string())])
    }

    #[test]
    fn build_arguments_win_over_the_dockerfile_default() {
        assert_eq!(of(&[], None), Ok(None));
        assert_eq!(of(&[], Some("1700000001")), Ok(Some(1_700_000_001)));
        assert_eq!(of(&[("SOURCE_DATE_EPOCH", "1700000002")], Some("1700000001")), Ok(Some(1_700_000_002)));
        assert_eq!(of(&[("SOURCE_DATE_EPOCH", "")], Some("1700000001")), Ok(None));
        assert_eq!(of(&[("SOURCE_DATE_EPOCH", "context")], None), Ok(None));
    }

    #[test]
    fn bad_values_are_named() {
        assert_eq!(of(&[], Some("not-a-timestamp")), Err("invalid SOURCE_DATE_EPOCH: not-a-timestamp".into()));
        assert!(of(&[], Some("src")).unwrap_err().contains("not supported"));
    }
}
