//! HEALTHCHECK settings: Go-style durations (`30s`, `1m30s`, `250ms`) checked and turned into nanoseconds.

use crate::dockerfile::instruction::{CommandLine, Healthcheck};

/// A resolved HEALTHCHECK, in the image config's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthcheckSpec {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    /// Time between checks, nanoseconds.
    pub interval: Option<i64>,
    /// Time before a check is considered hung, nanoseconds.
    pub timeout: Option<i64>,
    /// Grace period after start, nanoseconds.
    pub start_period: Option<i64>,
    /// Time between checks during the start period, nanoseconds.
    pub start_interval: Option<i64>,
    /// Consecutive failures before unhealthy.
    pub retries: Option<i64>,
}

/// Checks and converts a HEALTHCHECK instruction.
pub fn resolve(check: &Healthcheck) -> Result<HealthcheckSpec, String> {
    match check {
        Healthcheck::None => Ok(HealthcheckSpec {
            test: vec!["NONE".to_string()],
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        }),
        Healthcheck::Cmd { test, interval, timeout, start_period, start_interval, retries } => {
            let test = match test {
                CommandLine::Exec(args) => std::iter::once("CMD".to_string()).chain(args.iter().cloned()).collect(),
                CommandLine::Shell(cmd) => vec!["CMD-SHELL".to_string(), cmd.clone()],
            };
            let retries = match retries {
                Some(r) => {
                    let n: i64 = r.parse().map_err(|_| format!("--retries {r:?} is not a number"))?;
                    if n < 0 {
                        return Err("--retries cannot be negative".to_string());
                    }
                    Some(n)
                }
                None => None,
            };
            Ok(HealthcheckSpec {
                test,
                interval: duration("interval", interval)?,
                timeout: duration("timeout", timeout)?,
                start_period: duration("start-period", start_period)?,
                start_interval: duration("start-interval", start_interval)?,
                retries,
            })
        }
    }
}

/// Parses a flag's duration; zero means "default", anything else must be at least 1ms (Docker's rule).
fn duration(flag: &str, text: &Option<String>) -> Result<Option<i64>, String> {
    let Some(text) = text else { return Ok(None) };
    let ns = parse_go_duration(text).ok_or_else(|| format!("--{flag} {text:?} is not a duration (e.g. 30s, 1m30s)"))?;
    if ns != 0 && ns < 1_000_000 {
        return Err(format!("--{flag} cannot be less than 1ms"));
    }
    if ns < 0 {
        return Err(format!("--{flag} cannot be negative"));
    }
    Ok(Some(ns))
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units ns, us, µs, ms, s, m, h.
pub fn parse_go_duration(text: &str) -> Option<i64> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * unit;
    }
    let ns = total.round() as i64;
    Some(if negative { -ns } else { ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("250ms"), Some(250_000_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("5x"), None);
    }

    #[test]
    fn healthcheck_forms() {
        let spec = resolve(&Healthcheck::Cmd {
            test: CommandLine::Shell("curl -f localhost".into()),
            interval: Some("5s".into()),
            timeout: None,
            start_period: Some("0s".into()),
            start_interval: None,
            retries: Some("3".into()),
        })
        .unwrap();
        assert_eq!(spec.test, ["CMD-SHELL", "curl -f localhost"]);
        assert_eq!((spec.interval, spec.start_period, spec.retries), (Some(5_000_000_000), Some(0), Some(3)));
        let bad = Healthcheck::Cmd {
            test: CommandLine::Exec(vec!["x".into()]),
            interval: Some("10us".into()),
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        };
        assert!(resolve(&bad).unwrap_err().contains("less than 1ms"));
        assert_eq!(resolve(&Healthcheck::None).unwrap().test, ["NONE"]);
    }
}
