//! RPM databases, read-only: the SQLite `rpmdb.sqlite` of RHEL/UBI 9 (`sqlite.rs`) and the Berkeley DB
//! hash file `Packages` of RHEL/UBI 8 (`bdb.rs`). Both store the same thing — one header blob per
//! installed package — which `header.rs` decodes.

pub mod bdb;
pub mod header;
pub mod sqlite;

use super::scan::OsPackage;

/// Decodes header blobs into packages, leaving out the `gpg-pubkey` pseudo-packages rpm uses for keys.
fn packages_from_blobs<'a>(blobs: impl Iterator<Item = &'a [u8]>) -> Result<Vec<OsPackage>, String> {
    let mut out = Vec::new();
    for blob in blobs {
        let header = header::Header::parse(blob)?;
        let Some(name) = header.string(header::NAME) else { continue };
        if name == "gpg-pubkey" {
            continue;
        }
        out.push(OsPackage {
            name,
            version: header.string(header::VERSION).unwrap_or_default(),
            release: header.string(header::RELEASE),
            epoch: header.int32(header::EPOCH),
            arch: header.string(header::ARCH),
            license: header.string(header::LICENSE),
            source: header.string(header::SOURCERPM),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.version.cmp(&b.version)));
    Ok(out)
}
