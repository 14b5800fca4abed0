//! The JVM truststore: a PKCS#12 file of trusted-certificate entries, the format JDKs ≥ 9 use for their own
//! `cacerts`, passed to every JVM of a RUN step through `JAVA_TOOL_OPTIONS` and written into the persisted
//! CA layer as the image's `cacerts`.
//!
//! Hand-written on purpose: the maintained crate (`p12-keystore`) always encrypts the certificate bags
//! and MACs the file with random salts it does not let a caller choose, so the same CAs would give a
//! different file — and a different layer digest — on every build. A truststore needs neither: its
//! contents are public certificates. This encoder writes exactly what Java reads as a truststore and
//! nothing else: one plain `SafeContents` of `certBag`s, each with a friendly name and Oracle's
//! trusted-key-usage attribute (without it Java ignores the entry), and no MAC (the MAC is optional in
//! RFC 7292 and Java skips the integrity check when a store has none). Same certificates, same bytes.

/// The store password JVMs are told (`changeit`, the JDK's own; a truststore without a MAC ignores it).
pub const PASSWORD: &str = "changeit";

const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
const OID_CERT_BAG: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x03];
const OID_X509_CERT: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x16, 0x01];
const OID_FRIENDLY_NAME: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x14];
/// Oracle's "trusted key usage" bag attribute (2.16.840.1.113894.746875.1.1).
const OID_ORACLE_TRUSTED: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x86, 0xf9, 0x66, 0xad, 0xca, 0x7b, 0x01, 0x01];
/// anyExtendedKeyUsage (2.5.29.37.0): trusted for everything, as keytool marks imported CAs.
const OID_ANY_EKU: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const INTEGER: u8 = 0x02;
const BMP_STRING: u8 = 0x1e;
const CONTEXT_0: u8 = 0xa0;

/// A PKCS#12 truststore holding `certs` (DER) as trusted entries, aliased by fingerprint.
pub fn encode(certs: &[Vec<u8>]) -> Vec<u8> {
    let bags: Vec<u8> = certs.iter().flat_map(|der| cert_bag(der)).collect();
    let safe_contents = tlv(SEQUENCE, &bags);
    let auth_safe = tlv(SEQUENCE, &content_info(&safe_contents));
    let pfx = [tlv(INTEGER, &[3]), content_info(&auth_safe)].concat();
    tlv(SEQUENCE, &pfx)
}

/// `ContentInfo { data, [0] OCTET STRING(inner) }`.
fn content_info(inner: &[u8]) -> Vec<u8> {
    let body = [tlv(OID, OID_DATA), tlv(CONTEXT_0, &tlv(OCTET_STRING, inner))].concat();
    tlv(SEQUENCE, &body)
}

fn cert_bag(der: &[u8]) -> Vec<u8> {
    let cert_bag = tlv(SEQUENCE, &[tlv(OID, OID_X509_CERT), tlv(CONTEXT_0, &tlv(OCTET_STRING, der))].concat());
    let alias = format!("kiln-{}", &super::certs::fingerprint(der)["sha256:".len()..][..16]);
    let name: Vec<u8> = alias.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let friendly = tlv(SEQUENCE, &[tlv(OID, OID_FRIENDLY_NAME), tlv(SET, &tlv(BMP_STRING, &name))].concat());
    let trusted = tlv(SEQUENCE, &[tlv(OID, OID_ORACLE_TRUSTED), tlv(SET, &tlv(OID, OID_ANY_EKU))].concat());
    // DER orders the members of a SET OF by their encodings.
    let mut attributes = [friendly, trusted];
    attributes.sort();
    let body = [tlv(OID, OID_CERT_BAG), tlv(CONTEXT_0, &cert_bag), tlv(SET, &attributes.concat())].concat();
    tlv(SEQUENCE, &body)
}

/// One DER tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supply::trust::certs::{parse_pem, tests::TEST_CA, tests::TEST_CA_2};

    #[test]
    fn lengths_use_the_short_and_long_forms() {
        assert_eq!(tlv(0x04, &[1, 2]), [0x04, 2, 1, 2]);
        let long = tlv(0x04, &[0; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn the_same_certificates_give_the_same_bytes() {
        let certs = [parse_pem(TEST_CA.as_bytes()), parse_pem(TEST_CA_2.as_bytes())].concat();
        assert_eq!(encode(&certs), encode(&certs));
        assert_ne!(encode(&certs), encode(&certs[..1]));
    }

    /// Java's own tool reads the store as trusted-certificate entries (skipped where no JDK is installed;
    /// the integration tests run a JVM against it).
    #[test]
    fn keytool_lists_every_certificate_as_trusted() {
        if std::process::Command::new("keytool").arg("-help").output().is_err() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "keytool is required under CI=true (make test-deps)");
            eprintln!("skipping: keytool is not installed (make test-deps)");
            return;
        }
        let certs = [parse_pem(TEST_CA.as_bytes()), parse_pem(TEST_CA_2.as_bytes())].concat();
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("truststore.p12");
        std::fs::write(&path, encode(&certs)).unwrap();
        let out = std::process::Command::new("keytool")
            .args(["-list", "-storetype", "PKCS12", "-storepass", PASSWORD, "-keystore"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "keytool failed: {text} {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("contains 2 entries"), "{text}");
        assert_eq!(text.matches("trustedCertEntry").count(), 2, "{text}");
    }
}
