//! Resolving `USER`/`--chown` names through the image's own `/etc/passwd` and `/etc/group`, as Docker does:
//! the names mean what they mean inside the image, never on the build host.

use crate::confine::Root;

/// A resolved user: numeric ids plus supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids: the primary group first, then /etc/group membership (in file order) when
    /// the user was named without a group. The primary group is always there, as BuildKit, moby and
    /// containerd do since CVE-2022-36109 / CVE-2023-25173: a process must not escape a group-denying
    /// permission (`0705`, owner group = its primary) by dropping its primary group.
    pub groups: Vec<u32>,
}

/// Why a `user[:group]` could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// The name is not in the image's /etc/passwd.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    /// The name is not in the image's /etc/group.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
}

/// The image's account databases, read once per lookup site.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    passwd: String,
    group: String,
}

impl Accounts {
    /// Reads `/etc/passwd` and `/etc/group` of `rootfs`, resolved inside it (an image's `/etc/passwd ->
    /// /host/file` names its own file); missing files are simply empty.
    pub fn read(rootfs: Option<&Root>) -> Accounts {
        let read = |rel: &str| {
            let bytes = rootfs.and_then(|r| r.read(rel).ok()).unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Accounts { passwd: read("etc/passwd"), group: read("etc/group") }
    }

    /// Accounts from literal file contents (tests).
    pub fn from_text(passwd: &str, group: &str) -> Accounts {
        Accounts { passwd: passwd.to_string(), group: group.to_string() }
    }

    /// Resolves `user[:group]` (names or numbers) like Docker's `--chown` and `USER`.
    ///
    /// A numeric user not in passwd is fine (gid then defaults to the uid for `--chown`, to 0 for USER —
    /// `numeric_default_gid` decides); a name must exist.
    pub fn resolve(&self, spec: &str, numeric_default_gid: Option<u32>) -> Result<Ids, UserError> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let entry = self.passwd_entry(user);
        let uid = match (user.parse::<u32>(), &entry) {
            (Ok(n), _) => n,
            (Err(_), Some(e)) => e.1,
            (Err(_), None) => return Err(UserError::NoUser(user.to_string())),
        };
        let gid = match group {
            Some(g) => self.group_id(g)?,
            None => match &entry {
                Some(e) => e.2,
                None => numeric_default_gid.unwrap_or(uid),
            },
        };
        let name = entry.as_ref().map(|e| e.0.clone());
        let mut groups = match (group, name) {
            (None, Some(name)) => self.member_groups(&name),
            _ => Vec::new(),
        };
        // BuildKit's ensureAdditionalGids (executor/oci/user.go).
        if !groups.contains(&gid) {
            groups.insert(0, gid);
        }
        Ok(Ids { uid, gid, groups })
    }

    /// The home directory passwd gives `uid`, if any.
    pub fn home(&self, uid: u32) -> Option<String> {
        self.passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 6 && !line.starts_with('#') && f[2].parse() == Ok(uid) && !f[5].is_empty())
                .then(|| f[5].to_string())
        })
    }

    /// (name, uid, gid) of the passwd line whose name (or uid) is `user`.
    fn passwd_entry(&self, user: &str) -> Option<(String, u32, u32)> {
        self.passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 || line.starts_with('#') {
                return None;
            }
            let uid = f[2].parse().ok()?;
            let gid = f[3].parse().ok()?;
            (f[0] == user || f[2] == user).then(|| (f[0].to_string(), uid, gid))
        })
    }

    fn group_id(&self, group: &str) -> Result<u32, UserError> {
        if let Ok(n) = group.parse::<u32>() {
            return Ok(n);
        }
        self.group
            .lines()
            .find_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                (f.len() >= 3 && f[0] == group).then(|| f[2].parse().ok()).flatten()
            })
            .ok_or_else(|| UserError::NoGroup(group.to_string()))
    }

    /// Groups listing `name` as a member, in file order, each once.
    fn member_groups(&self, name: &str) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        for line in self.group.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 || !f[3].split(',').any(|m| m.trim() == name) {
                continue;
            }
            if let Ok(gid) = f[2].parse()
                && !out.contains(&gid)
            {
                out.push(gid);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app,other\napp:x:1001:\nwheel:x:10:app,root\n";

    fn accounts() -> Accounts {
        Accounts::from_text(PASSWD, GROUP)
    }

    #[test]
    fn names_resolve_through_the_image_files() {
        let ids = accounts().resolve("app", None).unwrap();
        assert_eq!((ids.uid, ids.gid), (1000, 1001));
        assert_eq!(ids.groups, [1001, 50, 10], "the primary group first, then membership in file order");
        let ids = accounts().resolve("app:staff", None).unwrap();
        assert_eq!((ids.uid, ids.gid), (1000, 50));
        assert_eq!(ids.groups, [50], "an explicit group is the only group");
    }

    #[test]
    fn the_primary_group_is_always_a_supplementary_group() {
        assert_eq!(accounts().resolve("0", Some(0)).unwrap().groups, [0, 10], "root: 0(root),10(wheel)");
        assert_eq!(accounts().resolve("1234", Some(0)).unwrap().groups, [0], "unknown uid: gid 0");
        assert_eq!(accounts().resolve("1234:1234", Some(0)).unwrap().groups, [1234]);
        assert_eq!(accounts().resolve("1000", Some(0)).unwrap().groups, [1001, 50, 10], "a uid in passwd is named");
    }

    #[test]
    fn numbers_need_no_entry() {
        let ids = accounts().resolve("4242", None).unwrap();
        assert_eq!((ids.uid, ids.gid, ids.groups), (4242, 4242, vec![4242]));
        let ids = accounts().resolve("4242", Some(0)).unwrap();
        assert_eq!((ids.uid, ids.gid), (4242, 0));
        let ids = accounts().resolve("1000:7", None).unwrap();
        assert_eq!((ids.uid, ids.gid), (1000, 7));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(accounts().resolve("nobody", None), Err(UserError::NoUser("nobody".into())));
        assert_eq!(accounts().resolve("app:nogroup", None), Err(UserError::NoGroup("nogroup".into())));
    }
}
