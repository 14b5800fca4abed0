//! WORKDIR: sets the working directory and creates it (with its parents) when the image lacks it.

use crate::build::rootfs;
use crate::build::stage::StageEnv;
use crate::build::state::{ImageState, LayerRef};
use crate::build::step::{StepError, config, open_root, write_layer};
use crate::cache::lineage::Position;
use crate::layer::{Entry, EntryKind};

/// Runs `WORKDIR dir` (already absolute): config always, a layer only when directories were missing.
pub fn execute(
    env: &StageEnv<'_>,
    state: &mut ImageState,
    dir: &str,
    position: &Position,
) -> Result<Option<LayerRef>, StepError> {
    config::workdir(&mut state.config, dir);
    let root = match rootfs::materialize(env.ctx.store, &state.layers, env.ctx.reporter)? {
        Some(path) => Some(open_root(&path)?),
        None => None,
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
                uid: 0,
                gid: 0,
                mtime: env.ctx.created_at,
                xattrs: Vec::new(),
            });
        }
    }
    write_layer(env, state, position, entries)
}
