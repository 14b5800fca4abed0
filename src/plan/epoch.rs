//! `SOURCE_DATE_EPOCH` as a build argument (or a global ARG's default): the time every history entry and
//! the image get, as in BuildKit (dockerfile2llb `resolveSourceDateEpochValue`).
//!
//! Accepted: seconds since the epoch; empty (no epoch); `context`, which with a local context (the only
//! kind kiln builds from) carries no time and so sets none; or the name of a *source stage* — `FROM
//! scratch`, ARGs and exactly one remote `ADD` — whose download gives the time (its `Last-Modified`, else
//! the newest file in it when it is an archive). The stage is checked here; the builder fetches it.

use std::collections::BTreeMap;

use super::{Base, Stage};
use crate::dockerfile::instruction::Command;
use crate::dockerfile::shell::Expander;

/// Where the epoch comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Epoch {
    /// Seconds since the epoch.
    Fixed(i64),
    /// The time of a remote source: an ADD URL with its `--checksum`, if any.
    Remote {
        /// The URL.
        url: String,
        /// `--checksum`.
        checksum: Option<String>,
    },
}

/// The epoch the build arguments or the global ARGs ask for; `Err` with BuildKit's message for a bad one.
pub fn resolve(
    build_args: &BTreeMap<String, String>,
    global_args: &BTreeMap<String, Option<String>>,
    stages: &[Stage],
    expander: &Expander,
) -> Result<Option<Epoch>, String> {
    let value = match build_args.get("SOURCE_DATE_EPOCH") {
        Some(v) => v.clone(),
        None => global_args.get("SOURCE_DATE_EPOCH").cloned().flatten().unwrap_or_default(),
    };
    if value.is_empty() || value == "context" {
        return Ok(None);
    }
    if let Ok(seconds) = value.parse::<i64>() {
        return Ok(Some(Epoch::Fixed(seconds)));
    }
    let lower = value.to_lowercase();
    let Some(stage) = stages.iter().rev().find(|s| s.name.as_deref() == Some(lower.as_str())) else {
        return Err(format!("invalid SOURCE_DATE_EPOCH: {value}"));
    };
    let mut scope: BTreeMap<String, String> = global_args
        .iter()
        .filter(|(k, _)| *k != "SOURCE_DATE_EPOCH")
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect();
    source_stage(stage, build_args, &mut scope, expander).map(Some)
}

/// Checks a source stage (BuildKit's `sourceDateEpochStageSource`) and names its remote source.
fn source_stage(
    stage: &Stage,
    build_args: &BTreeMap<String, String>,
    scope: &mut BTreeMap<String, String>,
    expander: &Expander,
) -> Result<Epoch, String> {
    if stage.base != Base::Scratch {
        return Err("SOURCE_DATE_EPOCH stage must use FROM scratch".to_string());
    }
    let mut source = None;
    for instruction in &stage.instructions {
        match &instruction.command {
            Command::Arg(decls) => {
                for d in decls {
                    let value = match (build_args.get(&d.name), &d.default) {
                        (Some(v), _) => v.clone(),
                        (None, Some(default)) => expander.word(default, &*scope).map_err(|e| e.message)?,
                        (None, None) => continue,
                    };
                    scope.insert(d.name.clone(), value);
                }
            }
            Command::Add(add) => {
                if source.is_some() {
                    return Err("SOURCE_DATE_EPOCH stage must contain exactly one remote ADD".to_string());
                }
                if !add.heredocs.is_empty() || add.sources.len() != 1 {
                    return Err("SOURCE_DATE_EPOCH stage must contain exactly one remote ADD source".to_string());
                }
                let url = expander.word(&add.sources[0], &*scope).map_err(|e| e.message)?;
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err("SOURCE_DATE_EPOCH stage source must be a single HTTP(S) or Git ADD \
                                (kiln does not fetch Git sources)"
                        .to_string());
                }
                let checksum = match &add.checksum {
                    Some(c) => Some(expander.word(c, &*scope).map_err(|e| e.message)?),
                    None => None,
                };
                source = Some(Epoch::Remote { url, checksum });
            }
            other => {
                return Err(format!(
                    "SOURCE_DATE_EPOCH stage does not meet source-only requirements: unsupported {} instruction",
                    other.keyword().to_lowercase()
                ));
            }
        }
    }
    source.ok_or_else(|| "SOURCE_DATE_EPOCH stage must contain exactly one remote ADD".to_string())
}

#[cfg(test)]
mod tests {
    use crate::plan::{PlanOptions, plan};

    fn epoch_of(src: &str, build: &[(&str, &str)]) -> Result<Option<super::Epoch>, String> {
        let df = crate::dockerfile::parse(src, "Dockerfile").unwrap();
        let build_args = build.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        plan(&df.instructions, df.escape, "Dockerfile", &PlanOptions { build_args, ..Default::default() })
            .map(|p| p.epoch)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn build_arguments_win_over_the_dockerfile_default() {
        use super::Epoch::Fixed;
        assert_eq!(epoch_of("FROM x\n", &[]), Ok(None));
        assert_eq!(epoch_of("ARG SOURCE_DATE_EPOCH=1700000001\nFROM x\n", &[]), Ok(Some(Fixed(1_700_000_001))));
        let both = "ARG SOURCE_DATE_EPOCH=1700000001\nFROM x\n";
        assert_eq!(epoch_of(both, &[("SOURCE_DATE_EPOCH", "1700000002")]), Ok(Some(Fixed(1_700_000_002))));
        assert_eq!(epoch_of(both, &[("SOURCE_DATE_EPOCH", "")]), Ok(None));
        assert_eq!(epoch_of("FROM x\n", &[("SOURCE_DATE_EPOCH", "context")]), Ok(None));
        let bad = epoch_of("ARG SOURCE_DATE_EPOCH=not-a-timestamp\nFROM x\n", &[]).unwrap_err();
        assert!(bad.contains("invalid SOURCE_DATE_EPOCH: not-a-timestamp"), "{bad}");
    }

    /// BuildKit's testSourceDateEpochStageHTTPArchive and testSourceDateEpochStageInvalid.
    #[test]
    fn a_source_stage_names_its_download() {
        let good =
            "ARG SOURCE_DATE_EPOCH=mysource\nFROM scratch AS mysource\nARG F=src.tar\nADD http://h/$F /\nFROM x\n";
        let url = "http://h/src.tar".to_string();
        assert_eq!(epoch_of(good, &[]), Ok(Some(super::Epoch::Remote { url, checksum: None })));
        let copy = "ARG SOURCE_DATE_EPOCH=mysource\nFROM scratch AS mysource\nCOPY Dockerfile /\nFROM scratch\n";
        let e = epoch_of(copy, &[]).unwrap_err();
        assert!(e.contains("SOURCE_DATE_EPOCH stage does not meet source-only requirements: unsupported copy"), "{e}");
        let base = "ARG SOURCE_DATE_EPOCH=s\nFROM x AS s\nADD http://h/a /\nFROM x\n";
        assert!(epoch_of(base, &[]).unwrap_err().contains("must use FROM scratch"));
        let local = "ARG SOURCE_DATE_EPOCH=s\nFROM scratch AS s\nADD a.tar /\nFROM x\n";
        assert!(epoch_of(local, &[]).unwrap_err().contains("single HTTP(S) or Git ADD"));
    }
}
