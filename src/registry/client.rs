//! The HTTP side of the distribution protocol: TLS set-up, http/https choice, the 401 → token dance,
//! retries with back-off, and error mapping.
//!
//! Why reqwest and not the `oci-client` crate: kiln streams blobs straight into its own store through a
//! synchronous writer with digest checks as bytes arrive, mounts blobs across repositories, retries whole
//! uploads, and needs every error to carry the registry, the operation and the registry's error code —
//! oci-client buffers or hides parts of each of these.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use super::auth::{AuthFiles, Challenge, Credentials, parse_challenge};
use super::error::RegistryError;
use super::tls::Roots;

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Require HTTPS with verified certificates; `false` also allows plain HTTP.
    pub tls_verify: bool,
    /// Extra CA certificates (PEM files).
    pub ca_files: Vec<PathBuf>,
    /// A directory of `*.crt` CA files (podman's `--cert-dir`).
    pub cert_dir: Option<PathBuf>,
    /// Where credentials are looked up.
    pub auth: AuthFiles,
    /// Credentials that override the auth files (`--creds`).
    pub credentials: Option<(String, String)>,
    /// Attempts for idempotent requests (1 = no retry).
    pub attempts: u32,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            tls_verify: true,
            ca_files: Vec::new(),
            cert_dir: None,
            auth: AuthFiles::default(),
            credentials: None,
            attempts: 4,
        }
    }
}

/// A registry client shared by every transfer of a command.
#[derive(Debug)]
pub struct Client {
    /// Built at the first request (with the roots, which are read then too): a build from local images
    /// never needs it.
    http: std::sync::OnceLock<Result<reqwest::Client, String>>,
    roots: Roots,
    options: RegistryOptions,
    tokens: Mutex<HashMap<(String, String), String>>,
    schemes: Mutex<HashMap<String, &'static str>>,
}

impl Client {
    /// Builds a client: system roots plus the given CA files, or no verification with `tls_verify=false`.
    /// Having no CA at all is not an error here: plain HTTP works, and HTTPS says what to add.
    pub fn new(options: RegistryOptions) -> Result<Client, RegistryError> {
        let mut ca_files = options.ca_files.clone();
        if let Some(dir) = &options.cert_dir {
            let entries = std::fs::read_dir(dir).map_err(|source| RegistryError::Local {
                op: "read the cert dir",
                path: dir.clone(),
                source,
            })?;
            ca_files.extend(
                entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "crt")),
            );
        }
        let roots = Roots::load(&ca_files)?;
        Ok(Client {
            http: std::sync::OnceLock::new(),
            roots,
            options,
            tokens: Mutex::new(HashMap::new()),
            schemes: Mutex::new(HashMap::new()),
        })
    }

    /// The HTTP client, built at the first call.
    fn http(&self) -> Result<&reqwest::Client, RegistryError> {
        let built = self.http.get_or_init(|| {
            let builder = reqwest::Client::builder()
                .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(15))
                .read_timeout(Duration::from_secs(120));
            let builder = self.roots.apply(builder).danger_accept_invalid_certs(!self.options.tls_verify);
            builder.build().map_err(|e| e.to_string())
        });
        built.as_ref().map_err(|e| RegistryError::Setup(e.clone()))
    }

    /// The CA roots this client trusts, for the command's other HTTPS clients (`ADD https://...`, which
    /// always verifies: `--tls-verify=false` is about registries, not downloads).
    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    /// A connection error, with what to add when the cause is a certificate and kiln trusts no CA at all.
    fn connect_error(&self, host: &str, op: &str, error: &reqwest::Error) -> RegistryError {
        let mut err = crate::registry::error::connect_error(host, op, error);
        if self.roots.is_empty()
            && let RegistryError::Connect { message, .. } = &mut err
            && message.to_lowercase().contains("certificate")
        {
            if let Some(cut) = message.find(" (a registry with a private CA") {
                message.truncate(cut);
            }
            message.push_str(&format!(" ({})", super::tls::NO_ROOTS_HINT));
        }
        err
    }

    /// The options the client was built with.
    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    fn credentials(&self, host: &str) -> Option<Credentials> {
        match &self.options.credentials {
            Some((u, p)) => Some(Credentials { username: u.clone(), password: p.clone() }),
            None => self.options.auth.find(host),
        }
    }

    /// The base URL for a host: https, or http when TLS verification is off and https does not answer.
    pub(crate) async fn base(&self, host: &str) -> String {
        if let Some(scheme) = self.schemes.lock().unwrap_or_else(|p| p.into_inner()).get(host) {
            return format!("{scheme}://{host}");
        }
        let mut scheme = "https";
        if !self.options.tls_verify {
            let probe = match self.http() {
                Ok(http) => {
                    http.get(format!("https://{host}/v2/")).timeout(Duration::from_secs(5)).send().await.is_ok()
                }
                // The request that follows reports why there is no client.
                Err(_) => true,
            };
            if !probe {
                scheme = "http";
            }
        }
        self.schemes.lock().unwrap_or_else(|p| p.into_inner()).insert(host.to_string(), scheme);
        format!("{scheme}://{host}")
    }

    /// Sends a request to `host` + `path` with auth for `scope`, retrying what may be retried.
    /// `make` builds the request from a full URL; it is called once per attempt.
    pub(crate) async fn send(
        &self,
        host: &str,
        scope: &str,
        op: &str,
        url_or_path: &str,
        make: &(dyn Fn(&reqwest::Client, String) -> RequestBuilder + Sync),
        retry: bool,
    ) -> Result<Response, RegistryError> {
        let url = if url_or_path.starts_with("http://") || url_or_path.starts_with("https://") {
            url_or_path.to_string()
        } else {
            format!("{}{url_or_path}", self.base(host).await)
        };
        let attempts = if retry { self.options.attempts.max(1) } else { 1 };
        let http = self.http()?;
        let mut last_err = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 1))).await;
            }
            let sent = self.cached_auth(host, scope);
            let mut req = make(http, url.clone());
            if let Some(auth) = &sent {
                req = req.header(reqwest::header::AUTHORIZATION, auth);
            }
            let response = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last_err = Some(self.connect_error(host, op, &e));
                    continue;
                }
            };
            if response.status() == StatusCode::UNAUTHORIZED
                && let Some(auth) = self.authenticate(host, scope, &response, op).await?
                // Retrying with what was just refused would only be refused again.
                && sent.as_ref() != Some(&auth)
            {
                match make(http, url.clone()).header(reqwest::header::AUTHORIZATION, auth).send().await {
                    Ok(r) if retryable(r.status()) && attempt + 1 < attempts => {
                        last_err = Some(status_error(host, op, r).await);
                        continue;
                    }
                    Ok(r) => return Ok(r),
                    Err(e) => {
                        last_err = Some(self.connect_error(host, op, &e));
                        continue;
                    }
                }
            }
            if retryable(response.status()) && attempt + 1 < attempts {
                let wait = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|s| s.min(10));
                last_err = Some(status_error(host, op, response).await);
                if let Some(secs) = wait {
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                }
                continue;
            }
            return Ok(response);
        }
        Err(last_err.unwrap_or_else(|| RegistryError::Connect {
            registry: host.to_string(),
            op: op.to_string(),
            message: "no attempt was made".into(),
            failure: crate::registry::error::NetFailure::Other,
        }))
    }

    fn cached_auth(&self, host: &str, scope: &str) -> Option<String> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).get(&(host.to_string(), scope.to_string())).cloned()
    }

    /// Answers a 401 challenge: the Authorization value to retry with (also cached for later requests).
    async fn authenticate(
        &self,
        host: &str,
        scope: &str,
        response: &Response,
        op: &str,
    ) -> Result<Option<String>, RegistryError> {
        let Some(challenge) = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
        else {
            return Ok(None);
        };
        let creds = self.credentials(host);
        let value = match challenge {
            Challenge::Basic => match &creds {
                Some(c) => format!("Basic {}", STANDARD.encode(format!("{}:{}", c.username, c.password))),
                None => return Ok(None),
            },
            Challenge::Bearer { realm, params } => {
                let token = self.fetch_token(host, &realm, &params, scope, creds.as_ref(), op).await?;
                format!("Bearer {token}")
            }
        };
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((host.to_string(), scope.to_string()), value.clone());
        Ok(Some(value))
    }

    async fn fetch_token(
        &self,
        host: &str,
        realm: &str,
        params: &std::collections::BTreeMap<String, String>,
        scope: &str,
        creds: Option<&Credentials>,
        op: &str,
    ) -> Result<String, RegistryError> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = params.get("service") {
            query.push(("service", service));
        }
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            query.push(("scope", s));
        }
        let mut req = self.http()?.request(Method::GET, realm).query(&query);
        if let Some(c) = creds {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let token_op = format!("token request for {op}");
        let response = req.send().await.map_err(|e| self.connect_error(host, &token_op, &e))?;
        if !response.status().is_success() {
            return Err(status_error(host, &token_op, response).await);
        }
        let body: serde_json::Value = response.json().await.map_err(|e| RegistryError::BadResponse {
            registry: host.to_string(),
            what: "token response",
            message: e.to_string(),
        })?;
        body.get("token").or_else(|| body.get("access_token")).and_then(|t| t.as_str()).map(str::to_string).ok_or_else(
            || RegistryError::BadResponse {
                registry: host.to_string(),
                what: "token response",
                message: "no token".into(),
            },
        )
    }

    /// Checks credentials against the registry's `/v2/` endpoint.
    pub async fn check_login(&self, host: &str) -> Result<(), RegistryError> {
        let op = format!("login to {host}");
        let response = self.send(host, "", &op, "/v2/", &|c, url| c.get(url), true).await?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(status_error(host, &op, response).await)
    }
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Turns an error response into an error naming the registry, operation, status and the registry's codes.
pub(crate) async fn status_error(host: &str, op: &str, response: Response) -> RegistryError {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("errors").and_then(|e| e.as_array()).cloned())
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                    let message = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
                    format!(" {code} {message}").trim_end().to_string()
                })
                .collect::<Vec<_>>()
                .join(";")
        })
        .unwrap_or_default();
    let hint = if status == 401 { " (check the credentials: kiln login, --authfile or --creds)" } else { "" };
    RegistryError::Status { registry: host.to_string(), op: op.to_string(), status, detail: format!("{detail}{hint}") }
}
