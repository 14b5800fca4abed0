//! Per-build resource limits in Kubernetes' quantity notation (`cpu: 300m`, `memory: 2Gi`), parsed once
//! into numbers the cgroup code and the emitters use.

/// cpu and memory limits of one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// CPU in millicores (`300m` → 300, `2` → 2000).
    pub cpu_millis: Option<u64>,
    /// Memory in bytes (`2Gi` → 2147483648).
    pub memory_bytes: Option<u64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn is_set(&self) -> bool {
        self.cpu_millis.is_some() || self.memory_bytes.is_some()
    }

    /// The limits as Kubernetes quantities (`300m`, `2Gi` when exact), for emitted manifests.
    pub fn quantities(&self) -> (Option<String>, Option<String>) {
        let cpu = self.cpu_millis.map(|m| if m % 1000 == 0 { (m / 1000).to_string() } else { format!("{m}m") });
        let memory = self.memory_bytes.map(|b| {
            for (suffix, unit) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
                if b % unit == 0 {
                    return format!("{}{suffix}", b / unit);
                }
            }
            b.to_string()
        });
        (cpu, memory)
    }
}

/// A cpu quantity in millicores: `300m`, `0.5`, `2`.
pub fn parse_cpu(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("cpu {text:?}: expected a quantity such as 300m, 0.5 or 2");
    if let Some(m) = t.strip_suffix('m') {
        return m.parse::<u64>().map_err(|_| bad());
    }
    let value: f64 = t.parse().map_err(|_| bad())?;
    if !value.is_finite() || value <= 0.0 {
        return Err(bad());
    }
    Ok((value * 1000.0).ceil() as u64)
}

/// A memory quantity in bytes: `2Gi`, `512Mi`, `1G`, `1500000`.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("memory {text:?}: expected a quantity such as 512Mi, 2Gi or 1G");
    const UNITS: [(&str, u64); 10] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
    ];
    let (number, unit) =
        UNITS.iter().find_map(|(suffix, unit)| t.strip_suffix(suffix).map(|n| (n, *unit))).unwrap_or((t, 1));
    let value: f64 = number.parse().map_err(|_| bad())?;
    if !value.is_finite() || value <= 0.0 {
        return Err(bad());
    }
    Ok((value * unit as f64).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities() {
        assert_eq!(parse_cpu("300m"), Ok(300));
        assert_eq!(parse_cpu("2"), Ok(2000));
        assert_eq!(parse_cpu("0.5"), Ok(500));
        assert!(parse_cpu("lots").is_err());
        assert!(parse_cpu("-1").is_err());
    }

    #[test]
    fn memory_quantities() {
        assert_eq!(parse_memory("2Gi"), Ok(2 << 30));
        assert_eq!(parse_memory("512Mi"), Ok(512 << 20));
        assert_eq!(parse_memory("1G"), Ok(1_000_000_000));
        assert_eq!(parse_memory("1500"), Ok(1500));
        assert!(parse_memory("2GiB").is_err());
    }

    #[test]
    fn quantities_round_trip() {
        let l = Limits { cpu_millis: Some(300), memory_bytes: Some(2 << 30) };
        assert_eq!(l.quantities(), (Some("300m".into()), Some("2Gi".into())));
        let l = Limits { cpu_millis: Some(2000), memory_bytes: Some(1500) };
        assert_eq!(l.quantities(), (Some("2".into()), Some("1500".into())));
    }
}
