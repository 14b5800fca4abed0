//! Credentials and challenges: the auth files podman, skopeo and docker share, and the
//! `WWW-Authenticate` header that tells us how to get a token.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::error::RegistryError;

/// A user name and password; `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// Where credentials are looked up, in podman's order; built from explicit values, no env reads here.
#[derive(Debug, Clone, Default)]
pub struct AuthFiles {
    files: Vec<PathBuf>,
    write_to: Option<PathBuf>,
}

impl AuthFiles {
    /// `--authfile`, `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
    /// `~/.config/containers/auth.json`, `~/.docker/config.json`.
    pub fn new(
        explicit: Option<PathBuf>,
        env_file: Option<PathBuf>,
        runtime_dir: Option<PathBuf>,
        home: Option<PathBuf>,
    ) -> AuthFiles {
        let mut files = Vec::new();
        files.extend(explicit);
        files.extend(env_file);
        files.extend(runtime_dir.map(|d| d.join("containers/auth.json")));
        if let Some(home) = &home {
            files.push(home.join(".config/containers/auth.json"));
            files.push(home.join(".docker/config.json"));
        }
        let write_to = files.first().cloned();
        AuthFiles { files, write_to }
    }

    /// Only this file (tests, `--authfile`).
    pub fn only(path: &Path) -> AuthFiles {
        AuthFiles { files: vec![path.to_path_buf()], write_to: Some(path.to_path_buf()) }
    }

    /// The first credentials found for `host`.
    pub fn find(&self, host: &str) -> Option<Credentials> {
        self.files.iter().find_map(|f| read_auths(f).ok().and_then(|auths| lookup(&auths, host)))
    }

    /// The file `login` writes to.
    pub fn write_target(&self) -> Option<&Path> {
        self.write_to.as_deref()
    }
}

fn read_auths(path: &Path) -> Result<serde_json::Value, std::io::Error> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(std::io::Error::other)
}

/// Keys as written by docker (`https://index.docker.io/v1/`) and podman (`host`, `host/namespace`).
fn lookup(doc: &serde_json::Value, host: &str) -> Option<Credentials> {
    let auths = doc.get("auths")?.as_object()?;
    let hub = host == "docker.io" || host == "registry-1.docker.io";
    let entry = auths.iter().find_map(|(key, value)| {
        let key_host = key.trim_start_matches("https://").trim_start_matches("http://").split('/').next().unwrap_or("");
        let matches = key_host == host || (hub && (key_host == "index.docker.io" || key_host == "docker.io"));
        matches.then_some(value)
    })?;
    let encoded = entry.get("auth")?.as_str()?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some(Credentials { username: username.to_string(), password: password.to_string() })
}

/// Writes (or with `None` removes) the credentials of `host` in the auth file, atomically and 0600.
pub fn store(path: &Path, host: &str, creds: Option<&Credentials>) -> Result<bool, RegistryError> {
    let local = |op: &'static str| move |source| RegistryError::Local { op, path: path.to_path_buf(), source };
    let mut doc = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({})),
        Err(_) => serde_json::json!({}),
    };
    if !doc.is_object() {
        doc = serde_json::json!({});
    }
    let auths = doc
        .as_object_mut()
        .map(|o| o.entry("auths").or_insert_with(|| serde_json::json!({})))
        .and_then(|a| a.as_object_mut());
    let Some(auths) = auths else { return Err(local("update")(std::io::Error::other("auths is not an object"))) };
    let changed = match creds {
        Some(c) => {
            let auth = STANDARD.encode(format!("{}:{}", c.username, c.password));
            auths.insert(host.to_string(), serde_json::json!({ "auth": auth }));
            true
        }
        None => auths.remove(host).is_some(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(local("create the directory of"))?;
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(local("write"))?;
    let text = serde_json::to_vec_pretty(&doc).map_err(|e| local("encode")(std::io::Error::other(e)))?;
    std::io::Write::write_all(&mut tmp, &text).map_err(local("write"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(local("chmod"))?;
    }
    tmp.persist(path).map_err(|e| local("write")(e.error))?;
    Ok(changed)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP basic authentication.
    Basic,
    /// A token service to ask (`realm`), with its parameters (`service`, `scope`).
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// Other parameters.
        params: BTreeMap<String, String>,
    },
}

/// Parses `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (quoted[..end].to_string(), &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let realm = params.remove("realm")?;
            Some(Challenge::Bearer { realm, params })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let c = parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#).unwrap();
        let Challenge::Bearer { realm, params } = c else { panic!("not bearer") };
        assert_eq!(realm, "https://auth.docker.io/token");
        assert_eq!(params["service"], "registry.docker.io");
        assert_eq!(params["scope"], "repository:library/busybox:pull");
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn auth_files_round_trip_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("a/auth.json");
        let second = dir.path().join(".docker/config.json");
        std::fs::create_dir_all(second.parent().unwrap()).unwrap();
        std::fs::write(&second, r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="}}}"#).unwrap();
        let files = AuthFiles::new(Some(first.clone()), None, None, Some(dir.path().to_path_buf()));
        assert_eq!(files.find("docker.io").unwrap().username, "hub");
        let creds = Credentials { username: "me".into(), password: "pw".into() };
        store(&first, "127.0.0.1:5000", Some(&creds)).unwrap();
        assert_eq!(files.find("127.0.0.1:5000"), Some(creds.clone()));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&first).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(store(&first, "127.0.0.1:5000", None).unwrap());
        assert_eq!(files.find("127.0.0.1:5000"), None);
        assert!(!format!("{creds:?}").contains("pw"));
    }
}
