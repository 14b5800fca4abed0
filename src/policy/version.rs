//! Comparing dotted version numbers (`3.9`, `1.19.8`, `11.0.20`): numeric components in order, missing
//! ones count as 0, anything after the leading digits of a component is ignored (`1.21rc1` → 1.21).

use std::cmp::Ordering;

/// The numeric components of a version.
pub fn components(version: &str) -> Vec<u64> {
    version
        .split('.')
        .map_while(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// Compares two versions numerically.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (components(a), components(b));
    let n = a.len().max(b.len());
    for i in 0..n {
        match a.get(i).unwrap_or(&0).cmp(b.get(i).unwrap_or(&0)) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    Ordering::Equal
}

/// Whether `version` is older than `min`.
pub fn older(version: &str, min: &str) -> bool {
    compare(version, min) == Ordering::Less
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_not_lexical() {
        assert!(older("3.6", "3.8"));
        assert!(!older("3.10", "3.8"));
        assert!(!older("3.8", "3.8"));
        assert!(older("1.16.15", "1.17"));
        assert!(!older("1.21rc1", "1.17"));
        assert!(!older("1.17.0", "1.17"));
    }
}
