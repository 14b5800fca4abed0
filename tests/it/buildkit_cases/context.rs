//! A case's workspace on disk: its `context/` files and Dockerfiles copied (with `{{HTTP}}` replaced),
//! then the `setup` changes git cannot hold: modes, empty directories, symlinks, sockets, tar archives.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::case::{Loaded, Setup, TarEntry};

/// Fills `ws` with the case's context, Dockerfiles and setup; `http` is the loopback server's base URL.
pub fn materialize(loaded: &Loaded, ws: &Path, http: &str) -> Result<(), String> {
    let context = loaded.dir.join("context");
    if context.is_dir() {
        copy_tree(&context, ws).map_err(|e| format!("copying context/: {e}"))?;
    }
    for file in loaded.dockerfiles() {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let name = file.file_name().unwrap_or_default();
        std::fs::write(ws.join(name), text.replace("{{HTTP}}", http)).map_err(|e| e.to_string())?;
    }
    apply(ws, &loaded.case.setup)
}

/// Applies setup changes in order.
pub fn apply(ws: &Path, changes: &[Setup]) -> Result<(), String> {
    for change in changes {
        apply_one(ws, change).map_err(|e| format!("setup {}: {e}", change.path))?;
    }
    Ok(())
}

fn apply_one(ws: &Path, change: &Setup) -> std::io::Result<()> {
    let path = ws.join(&change.path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if change.remove {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path)?,
            Ok(_) => std::fs::remove_file(&path)?,
            Err(_) => {}
        }
    }
    if let Some(content) = &change.content {
        std::fs::write(&path, content)?;
    }
    if change.dir {
        std::fs::create_dir_all(&path)?;
    }
    if let Some(target) = &change.symlink {
        std::os::unix::fs::symlink(target, &path)?;
    }
    if change.socket {
        // The listener is dropped at once; the socket file stays.
        drop(std::os::unix::net::UnixListener::bind(&path)?);
    }
    if let Some(entries) = &change.tar {
        std::fs::write(&path, tar_bytes(entries, change.gzip)?)?;
    }
    if let Some(mode) = change.mode {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// A tar archive (optionally gzipped) made of `entries`, in order.
pub fn tar_bytes(entries: &[TarEntry], gzip: bool) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut header = tar::Header::new_gnu();
        let kind = e.kind.as_deref().unwrap_or("file");
        let (entry_type, default_mode) = match kind {
            "file" => (tar::EntryType::Regular, 0o644),
            "dir" => (tar::EntryType::Directory, 0o755),
            "symlink" => (tar::EntryType::Symlink, 0o777),
            "hardlink" => (tar::EntryType::Link, 0o644),
            other => return Err(std::io::Error::other(format!("unknown tar entry kind {other:?}"))),
        };
        header.set_entry_type(entry_type);
        header.set_mode(e.mode.unwrap_or(default_mode));
        header.set_uid(e.uid);
        header.set_gid(e.gid);
        header.set_mtime(e.mtime);
        let body: &[u8] = if kind == "file" { e.content.as_bytes() } else { &[] };
        header.set_size(body.len() as u64);
        if let Some(link) = &e.link {
            builder.append_link(&mut header, &e.name, link)?;
        } else {
            builder.append_data(&mut header, &e.name, body)?;
        }
    }
    let bytes = builder.into_inner()?;
    if !gzip {
        return Ok(bytes);
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, &bytes)?;
    encoder.finish()
}

/// Copies a tree, keeping symlinks as symlinks.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(from).min_depth(1) {
        let entry = entry.map_err(std::io::Error::other)?;
        let rel = entry.path().strip_prefix(from).map_err(std::io::Error::other)?;
        let dest = to.join(rel);
        let kind = entry.file_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&dest)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}
