//! Which certificate authorities kiln trusts for HTTPS: the system's — found where OpenSSL looks
//! (`$SSL_CERT_FILE`, `$SSL_CERT_DIR`, then the distributions' bundle paths), read by `rustls-native-certs` —
//! plus those of `--ca-file` and `--cert-dir`.
//!
//! Why not reqwest's default (rustls-platform-verifier): it refuses to build a client at all when the
//! system has no CA, and a build pod made `FROM scratch` often has none. Without any CA, plain-HTTP and
//! `--ca-file` registries must still work, and an HTTPS registry must be refused with what to add, not
//! with a crash at start; so kiln gathers the roots itself and hands reqwest exactly those.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use super::error::RegistryError;

/// What to do when a certificate cannot be verified because kiln has no CA at all.
pub const NO_ROOTS_HINT: &str = "kiln has no CA certificate to verify it with: none was found at $SSL_CERT_FILE, \
     $SSL_CERT_DIR or the system's bundle (/etc/ssl/certs/ca-certificates.crt, /etc/pki/tls/certs/ca-bundle.crt, \
     ...), and no --ca-file or --cert-dir was given. Pass the registry's CA with --ca-file FILE or --cert-dir DIR, \
     add a CA bundle to the image (e.g. /etc/ssl/certs/ca-certificates.crt) or point SSL_CERT_FILE at one; \
     --tls-verify=false skips the check";

/// The trusted roots: the system's and the extra ones.
#[derive(Clone)]
pub struct Roots {
    /// The system's, read at the first use: most builds open no HTTPS connection, and reading the system's
    /// bundle and hashed directory cost every kiln process ~3 ms (a sixth of a no-change bake's CPU).
    system: Arc<OnceLock<Vec<reqwest::Certificate>>>,
    extra: Vec<reqwest::Certificate>,
}

impl std::fmt::Debug for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Roots({} extra certificates)", self.extra.len())
    }
}

impl Roots {
    /// The system's roots plus every certificate in `extra` (PEM files, read now: an unreadable or invalid
    /// one is an error naming it). Unreadable system certificates are skipped, as OpenSSL skips them.
    pub fn load(extra: &[PathBuf]) -> Result<Roots, RegistryError> {
        let mut certs = Vec::new();
        for path in extra {
            let pem = std::fs::read(path).map_err(|source| RegistryError::Local {
                op: "read CA file",
                path: path.clone(),
                source,
            })?;
            let found = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| RegistryError::Setup(format!("{}: not a PEM certificate bundle: {e}", path.display())))?;
            if found.is_empty() {
                return Err(RegistryError::Setup(format!("{}: no PEM certificate in it", path.display())));
            }
            certs.extend(found);
        }
        Ok(Roots { system: Arc::default(), extra: certs })
    }

    fn system(&self) -> &[reqwest::Certificate] {
        self.system.get_or_init(|| {
            rustls_native_certs::load_native_certs()
                .certs
                .iter()
                .filter_map(|der| reqwest::Certificate::from_der(der.as_ref()).ok())
                .collect()
        })
    }

    /// True when there is nothing to verify a certificate with.
    pub fn is_empty(&self) -> bool {
        self.extra.is_empty() && self.system().is_empty()
    }

    /// `builder` trusting exactly these roots (with none, every certificate is refused at the handshake).
    pub fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        builder.tls_certs_only(self.system().iter().chain(&self.extra).cloned())
    }
}
