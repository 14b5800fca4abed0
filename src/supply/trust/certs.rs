//! Company CA certificates as kiln holds them: read once from their files, kept as DER and as normalised
//! PEM, named by content digest — so a CA's identity (and every cache key it enters) is its content,
//! never the path it was read from.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest as _, Sha256};

use super::TrustError;

/// One CA file given with `--ca-cert` (or the configuration): one or more certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    /// Where it was read from (messages only).
    pub path: PathBuf,
    /// Its certificates, DER-encoded, in file order.
    pub certs: Vec<Vec<u8>>,
}

impl CaFile {
    /// Reads a PEM file holding at least one certificate.
    pub fn read(path: &Path) -> Result<CaFile, TrustError> {
        let bytes = std::fs::read(path).map_err(|source| TrustError::ReadCa { path: path.to_path_buf(), source })?;
        let certs = parse_pem(&bytes);
        if certs.is_empty() {
            return Err(TrustError::NoCertificate { path: path.to_path_buf() });
        }
        Ok(CaFile { path: path.to_path_buf(), certs })
    }
}

/// The DER certificates in a PEM bundle (`CERTIFICATE` sections; anything else is skipped).
pub fn parse_pem(bytes: &[u8]) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(bytes).filter_map(Result::ok).map(|c| c.as_ref().to_vec()).collect()
}

/// One certificate as PEM, 64-column base64 as OpenSSL writes it.
pub fn to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// `sha256:<hex>` of a certificate's DER: its identity in labels, file names and cache keys.
pub fn fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// Every certificate of `files`, in order, without duplicates.
pub fn all_certs(files: &[CaFile]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for der in files.iter().flat_map(|f| f.certs.iter()) {
        if !out.contains(der) {
            out.push(der.clone());
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Real self-signed CA certificates (made once with openssl for these tests).
    pub const TEST_CA: &str = include_str!("../../../testdata/supply/unit-ca.pem");
    /// A second one.
    pub const TEST_CA_2: &str = include_str!("../../../testdata/supply/unit-ca-2.pem");

    #[test]
    fn pem_round_trips_through_der() {
        let certs = parse_pem(TEST_CA.as_bytes());
        assert_eq!(certs.len(), 1);
        assert_eq!(to_pem(&certs[0]), TEST_CA);
        assert!(fingerprint(&certs[0]).starts_with("sha256:"));
    }

    #[test]
    fn a_file_without_certificates_is_refused_by_name() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = CaFile::read(&path).unwrap_err().to_string();
        assert!(err.contains("empty.pem") && err.contains("no PEM certificate"), "{err}");
    }
}
