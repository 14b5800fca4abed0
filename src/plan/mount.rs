//! `RUN --mount=...` options, parsed as BuildKit's `instructions/commands_runmount.go` parses them.

/// The kind of a RUN mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMountKind {
    /// A read-only (by default) view of the context or of `from=`.
    Bind,
    /// A persistent directory shared between builds.
    Cache,
    /// An empty in-memory filesystem.
    Tmpfs,
    /// A secret file (or variable) that never enters a layer.
    Secret,
    /// An SSH agent socket.
    Ssh,
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// Everyone uses it at once (default).
    #[default]
    Shared,
    /// Each concurrent user gets its own copy.
    Private,
    /// One user at a time.
    Locked,
}

/// One parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    /// What kind of mount.
    pub kind: RunMountKind,
    /// Where it appears in the step's filesystem.
    pub target: String,
    /// Path in the source (`source=`).
    pub source: Option<String>,
    /// Stage or image to take a bind/cache source from (`from=`).
    pub from: Option<String>,
    /// Read-only.
    pub readonly: bool,
    /// Cache or secret id.
    pub id: Option<String>,
    /// Cache sharing mode.
    pub sharing: Sharing,
    /// File mode for cache/secret/ssh.
    pub mode: Option<u32>,
    /// Owner for cache/secret/ssh.
    pub uid: Option<u32>,
    /// Group for cache/secret/ssh.
    pub gid: Option<u32>,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
    /// Fail when the secret/ssh source is missing.
    pub required: bool,
    /// Secret exposed as this environment variable.
    pub env: Option<String>,
}

/// Parses one `--mount` value (`type=cache,target=/root/.cache,sharing=locked`).
pub fn parse(value: &str) -> Result<RunMount, String> {
    let mut m = RunMount {
        kind: RunMountKind::Bind,
        target: String::new(),
        source: None,
        from: None,
        readonly: true,
        id: None,
        sharing: Sharing::Shared,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        required: false,
        env: None,
    };
    let fields: Vec<&str> = value.split(',').map(str::trim).filter(|f| !f.is_empty()).collect();
    // The type decides defaults (a cache is writable), so read it first.
    for field in &fields {
        if let Some(t) = field.strip_prefix("type=") {
            m.kind = match t {
                "bind" => RunMountKind::Bind,
                "cache" => RunMountKind::Cache,
                "tmpfs" => RunMountKind::Tmpfs,
                "secret" => RunMountKind::Secret,
                "ssh" => RunMountKind::Ssh,
                other => return Err(format!("unsupported mount type {other:?}")),
            };
        }
    }
    m.readonly = matches!(m.kind, RunMountKind::Bind | RunMountKind::Secret | RunMountKind::Ssh);
    for field in fields {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let need = |v: Option<&str>| {
            v.map(str::to_string).ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"))
        };
        match key.as_str() {
            "type" => {}
            "target" | "dst" | "destination" => m.target = need(val)?,
            "source" | "src" => m.source = Some(need(val)?),
            "from" => m.from = Some(need(val)?),
            "ro" | "readonly" => m.readonly = parse_bool(field, val)?,
            "rw" | "readwrite" => m.readonly = !parse_bool(field, val)?,
            "id" => m.id = Some(need(val)?),
            "sharing" => {
                m.sharing = match need(val)?.as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    other => return Err(format!("unsupported sharing value {other:?}")),
                }
            }
            "mode" => {
                let v = need(val)?;
                m.mode = Some(u32::from_str_radix(&v, 8).map_err(|_| format!("invalid mode {v:?}: expected octal"))?);
            }
            "uid" => m.uid = Some(number(field, &need(val)?)?),
            "gid" => m.gid = Some(number(field, &need(val)?)?),
            "size" => m.size = Some(size(&need(val)?)?),
            "required" => m.required = parse_bool(field, val)?,
            "env" => m.env = Some(need(val)?),
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
    }
    if m.target.is_empty() {
        match (m.kind, &m.id) {
            (RunMountKind::Secret, _) if m.env.is_some() => {}
            (RunMountKind::Secret, Some(id)) => m.target = format!("/run/secrets/{id}"),
            (RunMountKind::Ssh, _) => m.target = "/run/buildkit/ssh_agent.0".to_string(),
            _ => return Err("mount target must be set (target=/path)".to_string()),
        }
    }
    if m.kind == RunMountKind::Cache && m.id.is_none() {
        m.id = Some(m.target.clone());
    }
    Ok(m)
}

fn parse_bool(field: &str, value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(format!("invalid value {other:?} for '{field}': expected true or false")),
    }
}

fn number(field: &str, value: &str) -> Result<u32, String> {
    value.parse().map_err(|_| format!("invalid value in '{field}': expected a number"))
}

/// `64m`, `1g`, `4096` (bytes).
fn size(value: &str) -> Result<u64, String> {
    let lower = value.to_ascii_lowercase();
    let (digits, unit) = lower.split_at(lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len()));
    let n: u64 = digits.parse().map_err(|_| format!("invalid size {value:?}"))?;
    let mult = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(format!("invalid size {value:?}")),
    };
    Ok(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_mounts_are_writable_with_an_id() {
        let m = parse("type=cache,target=/root/.cache,sharing=locked,mode=0700").unwrap();
        assert_eq!(m.kind, RunMountKind::Cache);
        assert!(!m.readonly);
        assert_eq!(m.id.as_deref(), Some("/root/.cache"));
        assert_eq!((m.sharing, m.mode), (Sharing::Locked, Some(0o700)));
    }

    #[test]
    fn bind_is_the_default_and_read_only() {
        let m = parse("target=/src,from=build,source=/out").unwrap();
        assert_eq!((m.kind, m.readonly), (RunMountKind::Bind, true));
        assert_eq!(m.from.as_deref(), Some("build"));
        assert!(!parse("target=/src,rw").unwrap().readonly);
    }

    #[test]
    fn secrets_default_their_target() {
        let m = parse("type=secret,id=npmrc").unwrap();
        assert_eq!(m.target, "/run/secrets/npmrc");
        let m = parse("type=tmpfs,target=/t,size=64m").unwrap();
        assert_eq!(m.size, Some(64 << 20));
    }

    #[test]
    fn bad_options_are_named() {
        assert!(parse("type=bind").unwrap_err().contains("target"));
        assert!(parse("type=nfs,target=/x").unwrap_err().contains("nfs"));
        assert!(parse("target=/x,colour=blue").unwrap_err().contains("colour"));
        assert!(parse("type=cache,target=/x,sharing=sometimes").is_err());
    }
}
