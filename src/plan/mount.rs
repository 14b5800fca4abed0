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

/// Expands one option value (ARG/ENV scope of the step); an error is the message.
pub type Expand<'a> = &'a mut dyn FnMut(&str) -> Result<String, String>;

/// The mount keys BuildKit knows, for "did you mean" suggestions.
const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// The `from=` of a `--mount` value as written, for planning stage dependencies before any expansion.
///
/// As BuildKit does, a variable in `from=` is refused (a trailing `$` is a plain character): stage
/// dependencies must be known before the steps run.
pub fn from_unexpanded(value: &str) -> Result<Option<String>, String> {
    let mut from = None;
    for field in fields(value)? {
        if let Some((key, val)) = field.split_once('=')
            && key.eq_ignore_ascii_case("from")
        {
            if val.find('$').is_some_and(|i| i != val.len() - 1) {
                return Err("'from' doesn't support variable expansion, define alias stage instead".to_string());
            }
            from = Some(val.to_string());
        }
    }
    Ok(from)
}

/// Parses one `--mount` value (`type=cache,target=/root/.cache,sharing=locked`) without expanding it.
#[cfg(test)]
pub fn parse(value: &str) -> Result<RunMount, String> {
    parse_expanded(value, &mut |v| Ok(v.to_string()))
}

/// Parses one `--mount` value, expanding each option's value first (`type=$T`, `target=$DIR`), as
/// BuildKit's `parseMount` does at dispatch; keys are never expanded. A cache mount's default id is its
/// expanded target.
pub fn parse_expanded(value: &str, expand: Expand<'_>) -> Result<RunMount, String> {
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
    let mut pairs: Vec<(String, Option<String>, String)> = Vec::new();
    for field in fields(value)? {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(expand(v)?)),
            None => (field.to_ascii_lowercase(), None),
        };
        pairs.push((key, val, field));
    }
    // The type decides defaults (a cache is writable), so read it first.
    for (key, val, _) in &pairs {
        if key == "type"
            && let Some(t) = val
        {
            m.kind = match t.to_ascii_lowercase().as_str() {
                "bind" => RunMountKind::Bind,
                "cache" => RunMountKind::Cache,
                "tmpfs" => RunMountKind::Tmpfs,
                "secret" => RunMountKind::Secret,
                "ssh" => RunMountKind::Ssh,
                _ => {
                    let types = ["bind", "cache", "tmpfs", "secret", "ssh"];
                    return Err(format!("unsupported mount type {t:?}{}", suggest(t, &types)));
                }
            };
        }
    }
    m.readonly = matches!(m.kind, RunMountKind::Bind | RunMountKind::Secret | RunMountKind::Ssh);
    for (key, val, field) in pairs {
        let field = field.as_str();
        let need =
            |v: &Option<String>| v.clone().ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"));
        match key.as_str() {
            "type" => {}
            "target" | "dst" | "destination" => m.target = need(&val)?,
            "source" | "src" => m.source = Some(need(&val)?),
            "from" => m.from = Some(need(&val)?),
            "ro" | "readonly" => m.readonly = parse_bool(field, val.as_deref())?,
            "rw" | "readwrite" => m.readonly = !parse_bool(field, val.as_deref())?,
            "id" => m.id = Some(need(&val)?),
            "sharing" => {
                m.sharing = match need(&val)?.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    other => {
                        let modes = ["shared", "private", "locked"];
                        return Err(format!("unsupported sharing value {other:?}{}", suggest(other, &modes)));
                    }
                }
            }
            "mode" => {
                let v = need(&val)?;
                m.mode = Some(u32::from_str_radix(&v, 8).map_err(|_| format!("invalid value {v} for mode"))?);
            }
            "uid" => m.uid = Some(number(field, &need(&val)?)?),
            "gid" => m.gid = Some(number(field, &need(&val)?)?),
            "size" => m.size = Some(size(&need(&val)?)?),
            "required" => m.required = parse_bool(field, val.as_deref())?,
            "env" => m.env = Some(need(&val)?),
            _ => return Err(format!("unexpected key '{key}' in '{field}'{}", suggest(&key, KEYS))),
        }
    }
    let file_info = matches!(m.kind, RunMountKind::Secret | RunMountKind::Ssh | RunMountKind::Cache);
    if !file_info && (m.mode.is_some() || m.uid.is_some() || m.gid.is_some()) {
        let what = if m.mode.is_some() {
            "mode"
        } else if m.uid.is_some() {
            "uid"
        } else {
            "gid"
        };
        return Err(format!("{what} not allowed for \"{}\" type mounts", m.kind.name()));
    }
    if m.kind == RunMountKind::Secret && m.from.is_some() {
        return Err("secret mount should not have a from".to_string());
    }
    if m.target.is_empty() {
        match (m.kind, &m.id) {
            (RunMountKind::Secret, _) if m.env.is_some() => {}
            (RunMountKind::Secret, Some(id)) => m.target = format!("/run/secrets/{id}"),
            (RunMountKind::Secret, None) => match &m.source {
                Some(source) => m.target = format!("/run/secrets/{}", base_name(source)),
                None => return Err("invalid secret mount. one of source, target required".to_string()),
            },
            (RunMountKind::Ssh, _) => m.target = "/run/buildkit/ssh_agent.0".to_string(),
            _ => return Err("mount target must be set (target=/path)".to_string()),
        }
    }
    if m.kind == RunMountKind::Secret && m.id.is_none() {
        // BuildKit: the id is source=, else the target's last component.
        m.id = Some(m.source.clone().unwrap_or_else(|| base_name(&m.target)));
    }
    if m.kind == RunMountKind::Cache && m.id.is_none() {
        m.id = Some(clean(&m.target));
    }
    Ok(m)
}

impl RunMountKind {
    /// The `type=` word.
    pub fn name(self) -> &'static str {
        match self {
            RunMountKind::Bind => "bind",
            RunMountKind::Cache => "cache",
            RunMountKind::Tmpfs => "tmpfs",
            RunMountKind::Secret => "secret",
            RunMountKind::Ssh => "ssh",
        }
    }
}

/// The comma-separated fields of a mount value; double quotes protect commas (BuildKit reads it as CSV).
fn fields(value: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    if quoted {
        return Err(format!("failed to parse csv mounts: unterminated quote in {value:?}"));
    }
    out.push(field);
    Ok(out.into_iter().map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).collect())
}

/// ` (did you mean X?)` when a known word is close to `word`.
fn suggest(word: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (strsim::levenshtein(k, word), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean {k}?)"))
        .unwrap_or_default()
}

/// `path.Clean`: a lexically cleaned path (`/a//b/../c/` → `/a/c`).
fn clean(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            ".." if absolute => {}
            p => parts.push(p),
        }
    }
    match (absolute, parts.is_empty()) {
        (true, _) => format!("/{}", parts.join("/")),
        (false, true) => ".".to_string(),
        (false, false) => parts.join("/"),
    }
}

fn base_name(path: &str) -> String {
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or_default().to_string()
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
        assert_eq!(parse("typ=tmpfs").unwrap_err(), "unexpected key 'typ' in 'typ=tmpfs' (did you mean type?)");
        assert_eq!(parse("type=tmp").unwrap_err(), "unsupported mount type \"tmp\" (did you mean tmpfs?)");
        assert!(parse("type=bind,target=/x,mode=0700").unwrap_err().contains("mode not allowed"));
    }

    /// BuildKit's testMountArg, testMountEnvVar, testMountFromError.
    #[test]
    fn values_are_expanded_and_from_refuses_variables() {
        let mut expand = |v: &str| Ok(v.replace("$T", "cache").replace("$P", "/my//cache/"));
        let m = parse_expanded("type=$T,target=$P", &mut expand).unwrap();
        assert_eq!((m.kind, m.target.as_str()), (RunMountKind::Cache, "/my//cache/"));
        assert_eq!(m.id.as_deref(), Some("/my/cache"), "the default id is the cleaned, expanded target");
        assert_eq!(
            from_unexpanded("from=$ttt,type=cache,target=/tmp").unwrap_err(),
            "'from' doesn't support variable expansion, define alias stage instead"
        );
        assert_eq!(from_unexpanded("from=build$,target=/x").unwrap().as_deref(), Some("build$"));
    }

    #[test]
    fn secret_ids_and_targets_default_like_buildkit() {
        let m = parse("type=secret,target=/etc/app/token").unwrap();
        assert_eq!((m.id.as_deref(), m.target.as_str()), (Some("token"), "/etc/app/token"));
        let m = parse("type=secret,source=npmrc").unwrap();
        assert_eq!((m.id.as_deref(), m.target.as_str()), (Some("npmrc"), "/run/secrets/npmrc"));
        let m = parse("type=secret,required=false,mode=741,uid=100,gid=102,target=/mysecret").unwrap();
        assert_eq!((m.mode, m.uid, m.gid, m.required), (Some(0o741), Some(100), Some(102), false));
    }
}
