//! The build-check options: `skip=Rule1,Rule2` or `skip=all`, `experimental=...`, `error=true`, joined by
//! `;` — BuildKit's `linter.ParseLintOptions`. A `BUILDKIT_DOCKERFILE_CHECK` build argument replaces the
//! `# check=` directive whole (it is not merged), as BuildKit's frontend does.

use std::collections::BTreeSet;

use super::Rule;

/// The build argument that overrides the `# check=` directive.
pub const CHECK_BUILD_ARG: &str = "BUILDKIT_DOCKERFILE_CHECK";

/// Options that cannot be understood; the build stops, as in BuildKit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to parse check options: {message}")]
pub struct ConfigError {
    /// What is wrong (`invalid check option "foo"`).
    pub message: String,
}

/// Which rules run and whether findings fail the build.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// `skip=all`.
    pub skip_all: bool,
    /// `skip=A,B`.
    pub skip: BTreeSet<String>,
    /// `experimental=all`.
    pub experimental_all: bool,
    /// `experimental=A,B`.
    pub experimental: BTreeSet<String>,
    /// `error=true`.
    pub error: bool,
}

impl Config {
    /// The options in force: the build argument's when given, else the directive's (up to its first space:
    /// the rest is a remark, as BuildKit's `ParseDirective` reads it), else the defaults.
    pub fn resolve(directive: Option<&str>, build_arg: Option<&str>) -> Result<Config, ConfigError> {
        let directive = directive.map(|d| d.split(' ').next().unwrap_or_default());
        match build_arg.or(directive) {
            Some(text) => Config::parse(text),
            None => Ok(Config::default()),
        }
    }

    /// Parses `skip=...;experimental=...;error=BOOL` (at most three parts, as BuildKit splits).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let text = text.trim();
        if text.is_empty() {
            return Ok(config);
        }
        for part in text.splitn(3, ';') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(ConfigError { message: format!("invalid check option {part:?}") });
            };
            let value = value.trim();
            match key.trim() {
                "skip" if value == "all" => config.skip_all = true,
                "skip" => config.skip = names(value),
                "experimental" if value == "all" => config.experimental_all = true,
                "experimental" => config.experimental = names(value),
                "error" => {
                    config.error = go_bool(value).ok_or_else(|| ConfigError {
                        message: format!("failed to parse check option {part:?}: invalid syntax"),
                    })?
                }
                other => return Err(ConfigError { message: format!("invalid check option {other:?}") }),
            }
        }
        Ok(config)
    }

    /// The options for one instruction: the first `# check=...` comment right before it adds its `skip=`
    /// and `experimental=` rules (text after a space is a remark); `error=` stays the file's. A comment
    /// that does not parse changes nothing — BuildKit's `WithMergedConfigFromComments`.
    pub fn with_comments(&self, comments: &[String]) -> Config {
        let Some(value) = comments.iter().find_map(|c| check_comment(c)) else { return self.clone() };
        let Ok(local) = Config::parse(value.split(' ').next().unwrap_or_default()) else { return self.clone() };
        let mut merged = self.clone();
        merged.skip_all |= local.skip_all;
        merged.experimental_all |= local.experimental_all;
        merged.skip.extend(local.skip);
        merged.experimental.extend(local.experimental);
        merged
    }

    /// Whether `rule` runs: experimental rules only when asked for, the others unless skipped.
    pub fn enabled(&self, rule: &Rule) -> bool {
        if rule.experimental {
            self.experimental_all || self.experimental.contains(rule.name)
        } else {
            !(self.skip_all || self.skip.contains(rule.name))
        }
    }
}

/// The value of a `check=VALUE` comment (`^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`, name `check` in any case).
fn check_comment(comment: &str) -> Option<&str> {
    let name_len = comment.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(comment.len());
    let (name, rest) = comment.split_at(name_len);
    if !name.eq_ignore_ascii_case("check") {
        return None;
    }
    let value = rest.trim_start().strip_prefix('=')?.trim();
    (!value.is_empty()).then_some(value)
}

fn names(list: &str) -> BTreeSet<String> {
    list.split(',').map(|n| n.trim().to_string()).collect()
}

/// Go's `strconv.ParseBool`, which BuildKit uses for `error=`.
fn go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CASING: Rule = super::super::rules::CONSISTENT_INSTRUCTION_CASING;

    #[test]
    fn parses_skip_error_and_experimental() {
        let c = Config::parse("skip=ConsistentInstructionCasing, FromAsCasing;error=true").unwrap();
        assert!(c.error && !c.skip_all);
        assert_eq!(
            c.skip.iter().map(String::as_str).collect::<Vec<_>>(),
            ["ConsistentInstructionCasing", "FromAsCasing"]
        );
        assert!(!c.enabled(&CASING));
        let c = Config::parse(" skip = all ; experimental=all").unwrap();
        assert!(c.skip_all && c.experimental_all && !c.error);
        assert!(!c.enabled(&CASING));
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn rejects_unknown_options() {
        assert_eq!(Config::parse("skip").unwrap_err().message, "invalid check option \"skip\"");
        assert_eq!(Config::parse("nope=1").unwrap_err().message, "invalid check option \"nope\"");
        assert!(Config::parse("error=yes").is_err());
    }

    #[test]
    fn the_build_arg_replaces_the_directive() {
        // testRuleCheckOption: `#check=skip=all` with BUILDKIT_DOCKERFILE_CHECK=skip=ConsistentInstructionCasing;error=true
        let c = Config::resolve(Some("skip=all"), Some("skip=ConsistentInstructionCasing;error=true")).unwrap();
        assert!(!c.skip_all && c.error);
        let c = Config::resolve(Some("error=true"), Some("skip=all")).unwrap();
        assert!(c.skip_all && !c.error);
        assert_eq!(Config::resolve(None, None).unwrap(), Config::default());
        let c = Config::resolve(Some("skip=all;error=true // strict"), None).unwrap();
        assert!(c.skip_all && c.error);
    }

    #[test]
    fn comments_add_skips_for_one_instruction() {
        let file = Config::parse("skip=A;error=true").unwrap();
        let comments = ["warning: hello".to_string(), "check=skip=all // is local".to_string()];
        let local = file.with_comments(&comments);
        assert!(local.skip_all && local.error && local.skip.contains("A"));
        assert_eq!(file.with_comments(&["check=bogus".to_string()]), file);
        assert_eq!(file.with_comments(&[]), file);
        let local = Config::default().with_comments(&["CHECK = skip=X,Y".to_string()]);
        assert!(local.skip.contains("X") && local.skip.contains("Y"));
    }

    #[test]
    fn experimental_rules_are_off_by_default() {
        let rule = Rule { experimental: true, ..CASING };
        assert!(!Config::default().enabled(&rule));
        assert!(Config::parse("experimental=ConsistentInstructionCasing").unwrap().enabled(&rule));
        assert!(Config::default().enabled(&CASING));
    }
}
