//! The dependency graph of a set of builds. A build depends on the build that produces an image it uses:
//! its base override (`from`), its ImageChange triggers, any FROM line of its Dockerfile, and the builds it
//! names (`depends`). An ImageStreamTag or `target:` that nothing produces, and cycles, are errors naming
//! the builds. Levels group builds that may run together; the order puts dependencies first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{BakeError, BakeSet, BuildSpec, Dockerfile, ImageRef};
use crate::image::Reference;
use crate::plan::{Base, PlanOptions};

/// Why one build waits for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Why {
    /// The producer's image is this build's base override.
    From,
    /// An ImageChange trigger watches the producer's image.
    ImageChange,
    /// A FROM line of the Dockerfile names the producer's image.
    FromLine(usize),
    /// Named in `depends`.
    Depends,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::From => f.write_str("from"),
            Why::ImageChange => f.write_str("ImageChange"),
            Why::FromLine(line) => write!(f, "FROM line {line}"),
            Why::Depends => f.write_str("depends"),
        }
    }
}

/// The builds with their dependencies, levels and an order.
#[derive(Debug)]
pub struct Graph {
    /// The builds, as loaded.
    pub builds: Vec<BuildSpec>,
    /// For each build, the builds it needs and why (sorted, one entry per reason).
    pub needs: Vec<BTreeMap<usize, BTreeSet<Why>>>,
    /// Longest chain of dependencies below each build (0 = needs nothing in the set).
    pub level: Vec<usize>,
    /// Every build, dependencies first (by level, then input order).
    pub order: Vec<usize>,
}

impl Graph {
    /// Builds the graph of `set`, reading each Dockerfile's FROM lines.
    pub fn new(set: &BakeSet) -> Result<Graph, BakeError> {
        let builds = set.builds.clone();
        let producers = producers(&builds)?;
        let names: BTreeMap<&str, usize> = builds.iter().enumerate().map(|(i, b)| (b.name.as_str(), i)).collect();
        let mut needs = Vec::with_capacity(builds.len());
        for (i, build) in builds.iter().enumerate() {
            let mut mine: BTreeMap<usize, BTreeSet<Why>> = BTreeMap::new();
            let mut add = |on: usize, why: Why| {
                if on != i {
                    mine.entry(on).or_default().insert(why);
                }
            };
            if let Some(from) = &build.from
                && let Some(on) = producer_of(build, from, &producers, &names)?
            {
                add(on, Why::From);
            }
            for trigger in &build.triggers {
                if let Some(on) = producer_of(build, trigger, &producers, &names)? {
                    add(on, Why::ImageChange);
                }
            }
            for name in &build.depends {
                let on = names.get(name.as_str()).ok_or_else(|| BakeError::MissingProducer {
                    build: build.name.clone(),
                    what: format!("build {name} (depends)"),
                    hint: String::new(),
                })?;
                add(*on, Why::Depends);
            }
            for (line, image) in from_lines(build)? {
                if let Some(on) = lookup(&image, &producers) {
                    add(on, Why::FromLine(line));
                }
            }
            needs.push(mine);
        }
        let (order, level) = order(&builds, &needs)?;
        Ok(Graph { builds, needs, level, order })
    }

    /// The index of the build called `name`.
    pub fn index(&self, name: &str) -> Result<usize, BakeError> {
        self.builds.iter().position(|b| b.name == name).ok_or_else(|| BakeError::UnknownTarget {
            name: name.to_string(),
            known: self.builds.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }

    /// The builds `targets` need, themselves included, in graph order (all builds when `targets` is empty).
    pub fn selection(&self, targets: &[String]) -> Result<Vec<usize>, BakeError> {
        if targets.is_empty() {
            return Ok(self.order.clone());
        }
        let mut wanted = BTreeSet::new();
        let mut stack = targets.iter().map(|t| self.index(t)).collect::<Result<Vec<_>, _>>()?;
        while let Some(i) = stack.pop() {
            if wanted.insert(i) {
                stack.extend(self.needs[i].keys().copied());
            }
        }
        Ok(self.order.iter().copied().filter(|i| wanted.contains(i)).collect())
    }

    /// Every build below `i` (its dependents, transitively).
    pub fn dependents(&self, i: usize) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        let mut stack = vec![i];
        while let Some(j) = stack.pop() {
            for (k, needs) in self.needs.iter().enumerate() {
                if needs.contains_key(&j) && out.insert(k) {
                    stack.push(k);
                }
            }
        }
        out
    }

    /// `kiln bake --dry-run`: levels, edges with their reasons, the order, and what each build will do.
    pub fn render(&self, selection: &[usize]) -> String {
        let mut out = String::new();
        let levels = selection.iter().map(|&i| self.level[i]).max().map_or(0, |m| m + 1);
        let _ = writeln!(out, "{} builds in {levels} levels", selection.len());
        let width = selection.iter().map(|&i| self.builds[i].name.len()).max().unwrap_or(0);
        for &i in selection {
            let b = &self.builds[i];
            let needs: Vec<String> = self.needs[i]
                .iter()
                .map(|(on, why)| {
                    let why: Vec<String> = why.iter().map(Why::to_string).collect();
                    format!("{} ({})", self.builds[*on].name, why.join(", "))
                })
                .collect();
            let needs = if needs.is_empty() { "-".to_string() } else { needs.join(", ") };
            let _ = writeln!(out, "  level {}  {:width$}  needs {needs}", self.level[i], b.name);
        }
        let names: Vec<&str> = selection.iter().map(|&i| self.builds[i].name.as_str()).collect();
        let _ = writeln!(out, "order: {}", names.join(", "));
        for &i in selection {
            let b = &self.builds[i];
            let _ = writeln!(out, "\n{} ({})", b.name, b.origin.display());
            let _ = writeln!(out, "  context:    {}", b.context.display());
            let dockerfile = match &b.dockerfile {
                Dockerfile::Path(p) => p.display().to_string(),
                Dockerfile::Inline(_) => "(inline in the BuildConfig)".to_string(),
            };
            let _ = writeln!(out, "  dockerfile: {dockerfile}");
            if let Some(from) = &b.from {
                let stage = match b.from_rule {
                    crate::plan::FromRule::First => "first",
                    crate::plan::FromRule::Last => "last",
                };
                let _ = writeln!(out, "  from:       {} (replaces the {stage} stage's base)", from.image);
            }
            let _ = writeln!(out, "  tags:       {}", b.tags.join(", "));
            if b.limits.is_set() || b.deadline.is_some() {
                let (cpu, memory) = b.limits.quantities();
                let deadline = b.deadline.map(|d| format!("{}s", d.as_secs()));
                let parts: Vec<String> = [("cpu", cpu), ("memory", memory), ("deadline", deadline)]
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| format!("{k} {v}")))
                    .collect();
                let _ = writeln!(out, "  limits:     {}", parts.join(", "));
            }
        }
        out
    }
}

/// The normalised name of every image each build produces → that build.
fn producers(builds: &[BuildSpec]) -> Result<BTreeMap<String, usize>, BakeError> {
    let mut map: BTreeMap<String, usize> = BTreeMap::new();
    for (i, b) in builds.iter().enumerate() {
        for tag in &b.tags {
            let key = normalize(tag).unwrap_or_else(|| tag.clone());
            if let Some(&j) = map.get(&key)
                && j != i
            {
                return Err(BakeError::SameOutput {
                    image: key,
                    first: builds[j].name.clone(),
                    second: b.name.clone(),
                });
            }
            map.insert(key, i);
        }
    }
    Ok(map)
}

fn normalize(name: &str) -> Option<String> {
    Reference::parse_with_search(name, &["docker.io".to_string()]).ok().map(|r| r.to_string())
}

/// The build producing `image`: by its full name, or — as a FROM line finds an unqualified name in the
/// store — as `localhost/NAME`.
fn lookup(image: &str, producers: &BTreeMap<String, usize>) -> Option<usize> {
    if let Some(i) = normalize(image).and_then(|n| producers.get(&n)) {
        return Some(*i);
    }
    let local = crate::build::local_name(image).ok()?;
    producers.get(&local).copied()
}

/// The build a reference names or whose image it is (`None`: an image from outside the set); an error when
/// it was written as something the set must produce (an ImageStreamTag, `target:NAME`) and nothing does.
fn producer_of(
    build: &BuildSpec,
    r: &ImageRef,
    producers: &BTreeMap<String, usize>,
    names: &BTreeMap<&str, usize>,
) -> Result<Option<usize>, BakeError> {
    let found = match &r.build {
        Some(name) => names.get(name.as_str()).copied(),
        None => lookup(&r.image, producers),
    };
    match (found, &r.written) {
        (Some(i), _) => Ok(Some(i)),
        (None, None) => Ok(None),
        (None, Some(written)) => Err(BakeError::MissingProducer {
            build: build.name.clone(),
            what: written.clone(),
            hint: if written.starts_with("ImageStreamTag") {
                format!(
                    " (it maps to {}: add the BuildConfig that outputs it, an ImageStream that imports it, or \
                     --image-registry for where it lives)",
                    r.image
                )
            } else {
                String::new()
            },
        }),
    }
}

/// The images the build's needed stages start from, with their FROM lines; the stage the base override
/// replaced is left out (its edge is the override's).
fn from_lines(build: &BuildSpec) -> Result<Vec<(usize, String)>, BakeError> {
    let fail = |e: crate::build::BuildError| BakeError::Dockerfile { build: build.name.clone(), source: Box::new(e) };
    let (text, label) = match &build.dockerfile {
        Dockerfile::Path(p) => (
            std::fs::read_to_string(p)
                .map_err(|source| fail(crate::build::BuildError::ReadDockerfile { path: p.clone(), source }))?,
            p.display().to_string(),
        ),
        Dockerfile::Inline(text) => (text.clone(), format!("{} (inline Dockerfile)", build.origin.display())),
    };
    let parsed = crate::dockerfile::parse(&text, &label).map_err(|e| fail(e.into()))?;
    let options = PlanOptions {
        build_args: build.build_args.clone(),
        target: build.target.clone(),
        from_override: build.from.as_ref().map(|_| "scratch".to_string()),
        from_rule: build.from_rule,
        stage_env: Vec::new(),
        platform: None,
    };
    let plan = crate::plan::plan(&parsed.instructions, parsed.escape, &label, &options).map_err(|e| fail(e.into()))?;
    Ok(plan
        .order
        .iter()
        .filter_map(|&i| match &plan.stages[i].base {
            Base::Image(name) => Some((plan.stages[i].span.start_line, name.clone())),
            _ => None,
        })
        .collect())
}

/// Kahn's algorithm: an order where every build comes after what it needs, and each build's level; the
/// builds left over form at least one cycle, reported as `a needs b needs a`.
fn order(
    builds: &[BuildSpec],
    needs: &[BTreeMap<usize, BTreeSet<Why>>],
) -> Result<(Vec<usize>, Vec<usize>), BakeError> {
    let n = builds.len();
    let mut level = vec![0usize; n];
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    loop {
        let ready: Vec<usize> = (0..n).filter(|&i| !placed[i] && needs[i].keys().all(|&d| placed[d])).collect();
        if ready.is_empty() {
            break;
        }
        for &i in &ready {
            level[i] = needs[i].keys().map(|&d| level[d] + 1).max().unwrap_or(0);
            placed[i] = true;
        }
        order.extend(ready);
    }
    if order.len() < n {
        return Err(BakeError::Cycle(cycle_text(builds, needs, &placed)));
    }
    order.sort_by_key(|&i| level[i]);
    Ok((order, level))
}

/// One cycle among the unplaced builds, as `a needs b needs c needs a`.
fn cycle_text(builds: &[BuildSpec], needs: &[BTreeMap<usize, BTreeSet<Why>>], placed: &[bool]) -> String {
    let start = placed.iter().position(|p| !p).unwrap_or(0);
    let mut path = vec![start];
    let mut current = start;
    while let Some(&next) = needs[current].keys().find(|&&d| !placed[d]) {
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle: Vec<&str> = path[pos..].iter().map(|&i| builds[i].name.as_str()).collect();
            cycle.push(&builds[next].name);
            return cycle.join(" needs ");
        }
        path.push(next);
        current = next;
    }
    path.iter().map(|&i| builds[i].name.as_str()).collect::<Vec<_>>().join(" needs ")
}

#[cfg(test)]
mod tests;
