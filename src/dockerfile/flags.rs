//! Instruction flags (`--from=x`, `--link`, repeated `--mount=...`), checked against the set each
//! instruction accepts, as BuildKit's `BFlags` does.

use super::error::Problem;

/// The kinds of value a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--name=value`, once.
    String,
    /// `--name=value`, repeatable.
    List,
    /// `--name`, `--name=true` or `--name=false`.
    Bool,
}

/// Parsed flags of one instruction.
#[derive(Debug, Default)]
pub struct Flags {
    values: Vec<(String, String)>,
}

impl Flags {
    /// Parses `raw` (as written, `--name[=value]`) against `allowed` (name, kind) pairs.
    pub fn parse(raw: &[String], allowed: &[(&str, Kind)]) -> Result<Flags, Problem> {
        let mut values: Vec<(String, String)> = Vec::new();
        for flag in raw {
            let body = flag.strip_prefix("--").unwrap_or(flag);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some((_, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
                return Err(unknown(name, allowed));
            };
            let value = match (kind, value) {
                (Kind::Bool, None) => "true".to_string(),
                (Kind::Bool, Some(v)) if v == "true" || v == "false" => v.to_string(),
                (Kind::Bool, Some(v)) => {
                    return Err(format!("expecting boolean value for flag {name}, not: {v}").into());
                }
                (_, None) => return Err(format!("missing a value on flag: {name}").into()),
                (_, Some(v)) => v.to_string(),
            };
            if *kind != Kind::List && values.iter().any(|(n, _)| n == name) {
                return Err(format!("duplicate flag specified: {name}").into());
            }
            values.push((name.to_string(), value));
        }
        Ok(Flags { values })
    }

    /// The value of a single-valued flag.
    pub fn string(&self, name: &str) -> Option<String> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }

    /// Every value of a repeatable flag, in order.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.values.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
    }

    /// Whether a boolean flag is on; `None` when not given.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }
}

/// BuildKit's wording; the instruction is named by the error's place (`Dockerfile:3: COPY ...`).
fn unknown(name: &str, allowed: &[(&str, Kind)]) -> Problem {
    let hint = allowed
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| strsim::levenshtein(n, name) <= 2)
        .min_by_key(|n| strsim::levenshtein(n, name))
        .map(|n| format!(" (did you mean {n}?)"))
        .unwrap_or_default();
    Problem(format!("unknown flag: --{name}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COPY: &[(&str, Kind)] = &[("from", Kind::String), ("link", Kind::Bool), ("exclude", Kind::List)];

    fn raw(flags: &[&str]) -> Vec<String> {
        flags.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kinds_are_enforced() {
        let f = Flags::parse(&raw(&["--from=a", "--link", "--exclude=x", "--exclude=y"]), COPY).unwrap();
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert_eq!(f.bool("link"), Some(true));
        assert_eq!(f.list("exclude"), ["x", "y"]);
        assert!(Flags::parse(&raw(&["--from"]), COPY).is_err());
        assert!(Flags::parse(&raw(&["--link=maybe"]), COPY).is_err());
        assert!(Flags::parse(&raw(&["--from=a", "--from=b"]), COPY).is_err());
    }

    #[test]
    fn unknown_flags_get_a_suggestion() {
        let e = Flags::parse(&raw(&["--form=a"]), COPY).unwrap_err();
        assert_eq!(e.0, "unknown flag: --form (did you mean from?)");
    }
}
