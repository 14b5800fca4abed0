//! `kustomization.yaml`: the files its `resources` list (and, for a directory resource, that directory's
//! own kustomization, recursively). Patches, generators and the rest are kustomize's business: bake reads
//! the BuildConfigs as written and says so.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{BakeError, Ignored};

/// The file names kustomize accepts, in its order.
const NAMES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

#[derive(Deserialize)]
struct Kustomization {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(flatten)]
    rest: std::collections::BTreeMap<String, yaml_serde::Value>,
}

/// The kustomization file of `dir`, if it has one.
pub fn find(dir: &Path) -> Option<PathBuf> {
    NAMES.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// The YAML files a kustomization's `resources` name, in order; remote resources are refused, and every
/// other field (patches, generators, namePrefix, ...) is noted in `ignored`.
pub fn resources(file: &Path, ignored: &mut Ignored) -> Result<Vec<PathBuf>, BakeError> {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    walk(file, &mut out, &mut seen, ignored)?;
    Ok(out)
}

fn walk(file: &Path, out: &mut Vec<PathBuf>, seen: &mut Vec<PathBuf>, ignored: &mut Ignored) -> Result<(), BakeError> {
    let canonical = file.canonicalize().map_err(|source| BakeError::Read { path: file.to_path_buf(), source })?;
    if seen.contains(&canonical) {
        return Err(BakeError::Syntax { path: file.to_path_buf(), message: "kustomization includes itself".into() });
    }
    seen.push(canonical);
    let text = std::fs::read_to_string(file).map_err(|source| BakeError::Read { path: file.to_path_buf(), source })?;
    let k: Kustomization = yaml_serde::from_str(&text)
        .map_err(|e| BakeError::Syntax { path: file.to_path_buf(), message: e.to_string() })?;
    for key in k.rest.keys().filter(|k| !matches!(k.as_str(), "apiVersion" | "kind")) {
        ignored.note(format!("kustomization {key}"), file.display().to_string());
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    for resource in k.resources {
        if resource.contains("://") || resource.starts_with("github.com/") {
            return Err(BakeError::Syntax {
                path: file.to_path_buf(),
                message: format!("remote resource {resource} is not supported: check it out and name the directory"),
            });
        }
        let path = dir.join(&resource);
        if path.is_dir() {
            match find(&path) {
                Some(nested) => walk(&nested, out, seen, ignored)?,
                None => {
                    return Err(BakeError::Syntax {
                        path: file.to_path_buf(),
                        message: format!("resource {resource} is a directory without a kustomization.yaml"),
                    });
                }
            }
        } else if path.is_file() {
            out.push(path);
        } else {
            return Err(BakeError::Syntax {
                path: file.to_path_buf(),
                message: format!("resource {resource} does not exist"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_followed_into_nested_kustomizations() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("apps")).unwrap();
        std::fs::write(d.join("kustomization.yaml"), "resources:\n  - base.yaml\n  - apps\nnamePrefix: x-\n").unwrap();
        std::fs::write(d.join("base.yaml"), "").unwrap();
        std::fs::write(d.join("apps/kustomization.yml"), "resources: [a.yaml, b.yaml]\n").unwrap();
        std::fs::write(d.join("apps/a.yaml"), "").unwrap();
        std::fs::write(d.join("apps/b.yaml"), "").unwrap();
        let mut ignored = Ignored::default();
        let files = resources(&find(d).unwrap(), &mut ignored).unwrap();
        assert_eq!(ignored.lines().len(), 1, "namePrefix is reported");
        let names: Vec<String> = files.iter().map(|f| f.strip_prefix(d).unwrap().display().to_string()).collect();
        assert_eq!(names, ["base.yaml", "apps/a.yaml", "apps/b.yaml"]);
    }

    #[test]
    fn missing_and_remote_resources_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kustomization.yaml"), "resources: [nope.yaml]\n").unwrap();
        let e = resources(&dir.path().join("kustomization.yaml"), &mut Ignored::default()).unwrap_err().to_string();
        assert!(e.contains("resource nope.yaml does not exist"), "{e}");
        std::fs::write(dir.path().join("kustomization.yaml"), "resources: [https://x/y]\n").unwrap();
        let e = resources(&dir.path().join("kustomization.yaml"), &mut Ignored::default()).unwrap_err().to_string();
        assert!(e.contains("remote resource"), "{e}");
    }
}
