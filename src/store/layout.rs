//! The store's directories on disk: created private, tightened when found open, and carried forward from
//! older format versions.
//!
//! Privacy: snapshots are unpacked images, setuid binaries and world-writable directories included; anyone
//! who can reach one can run a setuid-root binary from it or plant files that a later build copies into an
//! image. So the store's root is mode 0700 (its parents are left as they are) and every directory kiln
//! creates inside is 0700 too.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::error::{StoreError, io};

/// Mode of the store's root and of every directory kiln creates in it.
pub const PRIVATE: u32 = 0o700;

/// Creates `root` private, or makes an existing one private; returns the mode it had when that was wider.
pub fn make_private(root: &Path) -> Result<Option<u32>, StoreError> {
    match std::fs::metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io("create", parent))?;
            }
            match std::fs::DirBuilder::new().mode(PRIVATE).create(root) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io("create", root)(e)),
            }
            // Another process may have created it first, with whatever mode: check it like an existing one.
            tighten(root)
        }
        Err(e) => Err(io("inspect", root)(e)),
        Ok(m) if !m.is_dir() => Err(StoreError::Io {
            op: "use as the store",
            path: root.to_path_buf(),
            source: std::io::Error::other("not a directory"),
        }),
        Ok(_) => tighten(root),
    }
}

fn tighten(root: &Path) -> Result<Option<u32>, StoreError> {
    let mode = std::fs::metadata(root).map_err(io("inspect", root))?.mode() & 0o7777;
    if mode == PRIVATE {
        return Ok(None);
    }
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(PRIVATE)).map_err(io("make private", root))?;
    Ok((mode & 0o077 != 0).then_some(mode))
}

/// Creates `dir` and its missing parents with the private mode.
pub fn create_private(dir: &Path) -> Result<(), StoreError> {
    std::fs::DirBuilder::new().recursive(true).mode(PRIVATE).create(dir).map_err(io("create", dir))
}
