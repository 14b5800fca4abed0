//! Rules over a build's fetch log: every request went to a Nexus host.

use super::finding;
use crate::attest::fetched::FetchRecord;
use crate::policy::Finding;
use crate::policy::{Location, Policy};

/// Runs the fetch-log rule (nothing to judge when the policy names no Nexus host).
pub fn check(policy: &Policy, file: &str, records: &[(usize, FetchRecord)], out: &mut Vec<Finding>) {
    if policy.nexus.hosts.is_empty() {
        return;
    }
    for (line, record) in records {
        if !policy.is_nexus(&record.host) {
            let step = record.step.as_deref().map(|s| format!(" (step {s})")).unwrap_or_default();
            let message = format!("{} {} went to {}, not Nexus{step}", record.method, record.uri(), record.hostname());
            out.push(finding("fetch-not-nexus", message, Location::FetchLog { file: file.to_string(), line: *line }));
        }
    }
}
