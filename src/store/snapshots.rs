//! Unpacked rootfs directories keyed by layer chain id, created atomically: filled in a temp directory,
//! then renamed into `kiln/snapshots/<hex>`. Two builds creating the same snapshot both succeed; the
//! second discards its copy and uses the first.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::{StoreError, io};

/// Removes a directory tree even where it holds read-only directories (a rootfs often does).
pub fn remove_tree(path: &Path) -> Result<(), StoreError> {
    if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(path).into_iter().filter_map(Result::ok) {
        if entry.file_type().is_dir() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o700));
        }
    }
    std::fs::remove_dir_all(path).map_err(io("remove", path))
}

/// Moves a filled temp directory to `target`, or discards it when another process got there first.
pub fn publish(temp: &Path, target: &Path) -> Result<PathBuf, StoreError> {
    match std::fs::rename(temp, target) {
        Ok(()) => {
            super::blobs::sync_dir(target.parent().unwrap_or(Path::new(".")))?;
            Ok(target.to_path_buf())
        }
        Err(_) if target.is_dir() => {
            remove_tree(temp)?;
            Ok(target.to_path_buf())
        }
        Err(e) => Err(io("rename into", target)(e)),
    }
}
