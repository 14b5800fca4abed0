//! Per-build cpu and memory limits with cgroup v2, where the cgroup kiln runs in is delegated to it (a
//! systemd unit with `Delegate=yes`, a container with a private cgroup namespace, a user session with the
//! controllers delegated). Otherwise [`Cgroups::setup`] says why, and bake warns and builds without limits.
//!
//! Layout, under kiln's own cgroup `C` (cgroup v2 forbids processes in a cgroup whose controllers are
//! enabled for children, so kiln first moves itself into a leaf):
//!
//! ```text
//!  C/                       cgroup.subtree_control += cpu memory
//!  C/kiln-bake-PID/         cgroup.subtree_control += cpu memory
//!  C/kiln-bake-PID/self     kiln bake itself
//!  C/kiln-bake-PID/NAME-N   one leaf per build attempt: cpu.max, memory.max, the worker's pid
//! ```

use std::path::{Path, PathBuf};

use super::Limits;

/// The cgroup v2 mount point.
const MOUNT: &str = "/sys/fs/cgroup";

/// The delegated subtree builds are placed in.
#[derive(Debug)]
pub struct Cgroups {
    root: PathBuf,
}

impl Cgroups {
    /// Prepares `kiln-bake-PID` under kiln's own cgroup, or says why limits cannot be applied here.
    pub fn setup() -> Result<Cgroups, String> {
        let mount = Path::new(MOUNT);
        if !mount.join("cgroup.controllers").is_file() {
            return Err(format!(
                "{MOUNT} is not a cgroup v2 unified hierarchy (cgroup v1 or hybrid mode); boot with \
                 systemd.unified_cgroup_hierarchy=1 for per-build limits"
            ));
        }
        let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let own = own_cgroup(&text).ok_or("no cgroup v2 entry in /proc/self/cgroup")?;
        let own = mount.join(own.trim_start_matches('/'));
        let available = std::fs::read_to_string(own.join("cgroup.controllers")).map_err(|e| e.to_string())?;
        if !has_cpu_and_memory(&available) {
            return Err(format!("the cpu and memory controllers are not delegated to {}", own.display()));
        }
        let root = own.join(format!("kiln-bake-{}", std::process::id()));
        let me = root.join("self");
        std::fs::create_dir_all(&me)
            .map_err(|e| format!("cannot create {} ({e}): the cgroup is not delegated to kiln", me.display()))?;
        let enable = |dir: &Path| std::fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory");
        if enable(&own).is_err() {
            // Busy: kiln itself is in `own`; move to the leaf and try again.
            std::fs::write(me.join("cgroup.procs"), std::process::id().to_string())
                .map_err(|e| format!("cannot move kiln into {}: {e}", me.display()))?;
            enable(&own).map_err(|e| {
                format!("cannot enable cpu and memory in {} ({e}): other processes share it", own.display())
            })?;
        } else {
            std::fs::write(me.join("cgroup.procs"), std::process::id().to_string())
                .map_err(|e| format!("cannot move kiln into {}: {e}", me.display()))?;
        }
        enable(&root).map_err(|e| format!("cannot enable cpu and memory in {}: {e}", root.display()))?;
        Ok(Cgroups { root })
    }

    /// Creates the leaf `name` with `limits` and moves `pid` into it; returns the leaf.
    pub fn place(&self, name: &str, pid: u32, limits: &Limits) -> Result<PathBuf, String> {
        let leaf = self.root.join(name);
        std::fs::create_dir_all(&leaf).map_err(|e| format!("cannot create {}: {e}", leaf.display()))?;
        let write = |file: &str, value: String| {
            std::fs::write(leaf.join(file), &value).map_err(|e| format!("cannot write {value} to {file}: {e}"))
        };
        if let Some(cpu) = limits.cpu_millis {
            write("cpu.max", cpu_max(cpu))?;
        }
        if let Some(bytes) = limits.memory_bytes {
            write("memory.max", bytes.to_string())?;
            // No swap: a build over its memory limit fails as it would in its pod.
            let _ = write("memory.swap.max", "0".to_string());
        }
        write("cgroup.procs", pid.to_string())?;
        Ok(leaf)
    }

    /// Removes a leaf once its processes are gone.
    pub fn remove(&self, leaf: &Path) {
        let _ = std::fs::remove_dir(leaf);
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        // kiln's own leaf cannot be removed while kiln is in it: move back to the parent first.
        if let Some(parent) = self.root.parent() {
            let _ = std::fs::write(parent.join("cgroup.procs"), std::process::id().to_string());
        }
        let _ = std::fs::remove_dir(self.root.join("self"));
        let _ = std::fs::remove_dir(&self.root);
    }
}

/// `cpu.max` for millicores: quota and period in microseconds (`300m` → `30000 100000`).
pub fn cpu_max(millis: u64) -> String {
    format!("{} 100000", (millis * 100).max(1000))
}

/// The cgroup v2 path (`0::/PATH`) of /proc/self/cgroup.
fn own_cgroup(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

fn has_cpu_and_memory(controllers: &str) -> bool {
    let list: Vec<&str> = controllers.split_whitespace().collect();
    list.contains(&"cpu") && list.contains(&"memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_is_quota_per_period() {
        assert_eq!(cpu_max(300), "30000 100000");
        assert_eq!(cpu_max(2000), "200000 100000");
        assert_eq!(cpu_max(1), "1000 100000", "the kernel's minimum quota is 1 ms");
    }

    #[test]
    fn own_cgroup_and_controllers_are_read() {
        let hybrid =
            "12:memory:/user.slice\n1:name=systemd:/user.slice/session-1.scope\n0::/user.slice/session-1.scope\n";
        assert_eq!(own_cgroup(hybrid), Some("/user.slice/session-1.scope"));
        assert_eq!(own_cgroup("3:cpu:/\n"), None);
        assert!(has_cpu_and_memory("cpuset cpu io memory pids"));
        assert!(!has_cpu_and_memory("cpuset io pids"));
    }
}
