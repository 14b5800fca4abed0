//! WORKDIR: sets the working directory and creates it (with its parents) when the image lacks it.
//!
//! As in BuildKit, the directories it creates belong to the current USER (resolved through the image's
//! own /etc/passwd and /etc/group), and every WORKDIR but `/` commits a layer, empty when the directory
//! was already there.

use crate::build::rootfs;
use crate::build::stage::StageEnv;
use crate::build::state::{ImageState, LayerRef};
use crate::build::step::{StepError, add, config, open_leased, through_links, write_layer};
use crate::build::users::Accounts;
use crate::cache::lineage::Position;
use crate::layer::{Entry, EntryKind};

/// Runs `WORKDIR dir` (already absolute): config always, a layer unless `dir` is `/`.
pub fn execute(
    env: &StageEnv<'_>,
    state: &mut ImageState,
    dir: &str,
    position: &Position,
) -> Result<Option<LayerRef>, StepError> {
    config::workdir(&mut state.config, dir);
    if dir == "/" {
        return Ok(None);
    }
    let root = match rootfs::lease(env.ctx.store, &state.layers, env.ctx.reporter)? {
        Some(lease) => Some(open_leased(lease)?),
        None => None,
    };
    let (uid, gid) = match state.config.config.user.as_deref().filter(|u| !u.is_empty()) {
        Some(user) => {
            let ids = Accounts::read(root.as_deref()).resolve(user, None)?;
            (ids.uid, ids.gid)
        }
        None => (0, 0),
    };
    let mut entries = Vec::new();
    let mut path = String::new();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(part);
        // Inside the image's rootfs: a parent that is a symlink is followed there, as the runtime would.
        let exists = root.as_ref().is_some_and(|r| r.lstat(&path).is_ok());
        if !exists {
            entries.push(Entry {
                path: path.clone(),
                kind: EntryKind::Dir,
                mode: 0o755,
                uid,
                gid,
                mtime: env.ctx.created_at,
                xattrs: Vec::new(),
            });
        }
    }
    // Created where the image's links lead, as BuildKit's mkdir resolves the path inside the rootfs.
    if let Some(root) = root.as_deref() {
        entries = through_links::resolve(entries, &|rel: &str| add::image_node(root, rel));
    }
    write_layer(env, state, position, entries)
}
