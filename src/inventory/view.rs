//! A virtual view of the image's tree, built from layer events: the facts at their paths and the symlinks,
//! with OCI's layer semantics (whiteouts and opaque directories hide only lower layers) and path
//! resolution *inside the image* — symlinks are followed through this view, `..` stops at the image's
//! root, absolute targets start from it. Nothing here touches the host's filesystem.

use std::collections::BTreeMap;

use super::scan::{Event, Fact, LayerFacts};

/// Linux's own limit on symlinks followed in one resolution.
const MAX_LINKS: usize = 40;

/// The merged state of the layers applied so far.
#[derive(Debug, Default)]
pub struct View {
    symlinks: BTreeMap<String, String>,
    facts: BTreeMap<String, (Fact, usize)>,
}

impl View {
    /// Applies layer number `layer`: its whiteouts against the layers below, then its own entries in order.
    pub fn apply(&mut self, layer: usize, facts: &LayerFacts) {
        for event in &facts.events {
            match event {
                Event::Whiteout { path } => {
                    let resolved = self.resolve(path, false);
                    self.remove(&resolved, true);
                }
                Event::Opaque { path } => {
                    let resolved = self.resolve(path, false);
                    self.remove(&resolved, false);
                }
                _ => {}
            }
        }
        for event in &facts.events {
            match event {
                Event::Dir { path } => {
                    let resolved = self.resolve(path, false);
                    self.symlinks.remove(&resolved);
                }
                Event::Symlink { path, target } => {
                    let resolved = self.resolve(path, false);
                    self.remove(&resolved, true);
                    self.symlinks.insert(resolved, target.clone());
                }
                Event::Fact { path, fact } => {
                    let resolved = self.resolve(path, false);
                    self.symlinks.remove(&resolved);
                    self.facts.insert(resolved, (fact.clone(), layer));
                }
                Event::Whiteout { .. } | Event::Opaque { .. } => {}
            }
        }
    }

    /// Removes what is under `path` (and `path` itself when `itself`).
    fn remove(&mut self, path: &str, itself: bool) {
        if path.is_empty() {
            if !itself {
                self.facts.clear();
                self.symlinks.clear();
            }
            return;
        }
        if itself {
            self.facts.remove(path);
            self.symlinks.remove(path);
        }
        let (from, to) = (format!("{path}/"), format!("{path}0"));
        let doomed: Vec<String> = self.facts.range(from.clone()..to.clone()).map(|(k, _)| k.clone()).collect();
        for key in doomed {
            self.facts.remove(&key);
        }
        let doomed: Vec<String> = self.symlinks.range(from..to).map(|(k, _)| k.clone()).collect();
        for key in doomed {
            self.symlinks.remove(&key);
        }
    }

    /// Resolves `path` inside the image: every directory component through the view's symlinks, the last
    /// one too when `follow_last`. A loop gives up and returns the path reached so far.
    pub fn resolve(&self, path: &str, follow_last: bool) -> String {
        let mut stack: Vec<String> = path.split('/').rev().map(str::to_string).collect();
        let mut current: Vec<String> = Vec::new();
        let mut followed = 0;
        while let Some(part) = stack.pop() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    current.pop();
                    continue;
                }
                _ => {}
            }
            let last = stack.iter().all(|p| p.is_empty() || p == ".");
            current.push(part);
            if last && !follow_last {
                break;
            }
            let Some(target) = self.symlinks.get(&current.join("/")) else { continue };
            followed += 1;
            if followed > MAX_LINKS {
                break;
            }
            current.pop();
            if target.starts_with('/') {
                current.clear();
            }
            stack.extend(target.split('/').rev().map(str::to_string));
        }
        current.join("/")
    }

    /// The fact at `path` (symlinks followed, the last one too), with the path it really is at.
    pub fn lookup(&self, path: &str) -> Option<(String, &Fact, usize)> {
        let resolved = self.resolve(path, true);
        self.facts.get(&resolved).map(|(f, l)| (resolved, f, *l))
    }

    /// Every fact with its path and layer, in path order.
    pub fn facts(&self) -> impl Iterator<Item = (&String, &Fact, usize)> {
        self.facts.iter().map(|(p, (f, l))| (p, f, *l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(v: &str) -> Fact {
        Fact::GoToolchain { version: v.into() }
    }

    fn layer(events: Vec<Event>) -> LayerFacts {
        LayerFacts { version: super::super::scan::FACTS_VERSION, events }
    }

    fn at(path: &str, v: &str) -> Event {
        Event::Fact { path: path.into(), fact: fact(v) }
    }

    fn link(path: &str, target: &str) -> Event {
        Event::Symlink { path: path.into(), target: target.into() }
    }

    #[test]
    fn whiteouts_hide_lower_layers_only() {
        let mut v = View::default();
        v.apply(0, &layer(vec![at("usr/lib/go/VERSION", "1.20"), at("opt/x/VERSION", "1.19")]));
        v.apply(
            1,
            &layer(vec![
                Event::Whiteout { path: "usr/lib/go".into() },
                at("usr/lib/go/VERSION", "1.21"),
                Event::Opaque { path: "opt".into() },
            ]),
        );
        let left: Vec<_> = v.facts().map(|(p, f, l)| (p.clone(), f.clone(), l)).collect();
        assert_eq!(left, [("usr/lib/go/VERSION".to_string(), fact("1.21"), 1)]);
    }

    #[test]
    fn symlinked_parents_resolve_inside_the_image() {
        let mut v = View::default();
        v.apply(0, &layer(vec![link("lib", "usr/lib"), link("usr/lib/jvm/jre", "/usr/lib/jvm/java-17")]));
        v.apply(1, &layer(vec![at("lib/jvm/java-17/release", "17")]));
        assert!(v.facts().any(|(p, _, _)| p == "usr/lib/jvm/java-17/release"));
        assert_eq!(v.lookup("usr/lib/jvm/jre/release").map(|r| r.0), Some("usr/lib/jvm/java-17/release".into()));
        // A whiteout through the symlinked parent removes the real path.
        v.apply(2, &layer(vec![Event::Whiteout { path: "lib/jvm/java-17".into() }]));
        assert_eq!(v.facts().count(), 0);
    }

    #[test]
    fn hostile_links_stay_inside_and_terminate() {
        let mut v = View::default();
        v.apply(0, &layer(vec![link("a", "b"), link("b", "a"), link("up", "../../../../etc")]));
        assert_eq!(v.resolve("up/passwd", true), "etc/passwd");
        assert_eq!(v.resolve("/../../x", true), "x");
        let looped = v.resolve("a/x", true);
        assert!(looped.ends_with('x') || looped.is_empty() || looped.len() < 200);
    }

    #[test]
    fn a_directory_replaces_a_symlink() {
        let mut v = View::default();
        v.apply(0, &layer(vec![link("opt/app", "/srv"), at("srv/VERSION", "1.18")]));
        v.apply(1, &layer(vec![Event::Dir { path: "opt/app".into() }, at("opt/app/VERSION", "1.22")]));
        assert!(v.facts().any(|(p, _, _)| p == "opt/app/VERSION"));
        assert!(v.facts().any(|(p, _, _)| p == "srv/VERSION"));
    }
}
