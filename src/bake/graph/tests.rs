//! Graph rules on small sets of builds with real Dockerfiles in a temp dir.

use std::path::{Path, PathBuf};

use super::*;
use crate::bake::Limits;
use crate::plan::FromRule;

fn spec(dir: &Path, name: &str, dockerfile: &str, from: Option<ImageRef>) -> BuildSpec {
    let path = dir.join(format!("{name}.Dockerfile"));
    std::fs::write(&path, dockerfile).unwrap();
    BuildSpec {
        name: name.to_string(),
        origin: PathBuf::from("test.yaml"),
        context: dir.to_path_buf(),
        dockerfile: Dockerfile::Path(path),
        target: None,
        from,
        from_rule: FromRule::Last,
        build_args: Default::default(),
        env: Vec::new(),
        labels: Vec::new(),
        no_cache: false,
        tags: vec![format!("localhost/{name}:latest")],
        limits: Limits::default(),
        deadline: None,
        triggers: Vec::new(),
        depends: Vec::new(),
        git: None,
    }
}

fn stream(name: &str) -> ImageRef {
    ImageRef {
        image: format!("localhost/{name}:latest"),
        written: Some(format!("ImageStreamTag {name}:latest")),
        build: None,
    }
}

fn names(g: &Graph, list: &[usize]) -> Vec<String> {
    list.iter().map(|&i| g.builds[i].name.clone()).collect()
}

#[test]
fn edges_come_from_from_triggers_and_from_lines() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let mut app = spec(p, "app", "FROM x\n", Some(stream("py")));
    app.triggers.push(stream("py"));
    let set = BakeSet {
        builds: vec![
            app,
            spec(p, "py", "FROM ubi\nRUN true\n", None),
            spec(p, "ubi", "FROM registry.example.com/ubi9/ubi:latest\n", None),
            // A multi-stage Dockerfile whose build stage uses `ubi` by its unqualified name.
            spec(p, "go", "FROM ubi AS build\nFROM scratch\nCOPY --from=build /a /a\n", None),
            spec(p, "alone", "FROM scratch\n", None),
        ],
        ..Default::default()
    };
    let g = Graph::new(&set).unwrap();
    let app = g.index("app").unwrap();
    let py = g.index("py").unwrap();
    let ubi = g.index("ubi").unwrap();
    let go = g.index("go").unwrap();
    assert_eq!(g.needs[app][&py], BTreeSet::from([Why::From, Why::ImageChange]));
    assert_eq!(g.needs[py][&ubi], BTreeSet::from([Why::FromLine(1)]));
    assert_eq!(g.needs[go][&ubi], BTreeSet::from([Why::FromLine(1)]));
    assert_eq!((g.level[ubi], g.level[py], g.level[app], g.level[go]), (0, 1, 2, 1));
    let position = |i: usize| g.order.iter().position(|&x| x == i).unwrap();
    assert!(position(ubi) < position(py) && position(py) < position(app));
    assert_eq!(names(&g, &g.selection(&["app".to_string()]).unwrap()), ["ubi", "py", "app"]);
    assert_eq!(g.dependents(ubi), BTreeSet::from([py, app, go]));
    let text = g.render(&g.order);
    assert!(text.contains("needs py (from, ImageChange)"), "{text}");
    assert!(text.starts_with("5 builds in 3 levels"), "{text}");
}

#[test]
fn the_base_override_replaces_what_the_last_from_line_said() {
    let d = tempfile::tempdir().unwrap();
    // The override names an external image: `ubi` on the FROM line is no longer a dependency.
    let set = BakeSet {
        builds: vec![
            spec(d.path(), "app", "FROM ubi\n", Some(ImageRef::image("registry.example.com/other:1"))),
            spec(d.path(), "ubi", "FROM scratch\n", None),
        ],
        ..Default::default()
    };
    let g = Graph::new(&set).unwrap();
    assert!(g.needs[0].is_empty(), "{:?}", g.needs[0]);
}

#[test]
fn cycles_name_the_builds() {
    let d = tempfile::tempdir().unwrap();
    let mut a = spec(d.path(), "a", "FROM b\n", None);
    a.triggers.push(stream("c"));
    let set = BakeSet {
        builds: vec![a, spec(d.path(), "b", "FROM c\n", None), spec(d.path(), "c", "FROM a\n", None)],
        ..Default::default()
    };
    let e = Graph::new(&set).unwrap_err().to_string();
    assert!(e.starts_with("dependency cycle: "), "{e}");
    for name in ["a", "b", "c"] {
        assert!(e.contains(name), "{e}");
    }
}

#[test]
fn missing_producers_name_the_build_and_the_stream() {
    let d = tempfile::tempdir().unwrap();
    let set =
        BakeSet { builds: vec![spec(d.path(), "app", "FROM x\n", Some(stream("python-base")))], ..Default::default() };
    let e = Graph::new(&set).unwrap_err().to_string();
    assert!(
        e.starts_with("build app needs ImageStreamTag python-base:latest, which no build in the set produces"),
        "{e}"
    );
    let mut b = spec(d.path(), "b", "FROM scratch\n", None);
    b.depends.push("nope".into());
    let e = Graph::new(&BakeSet { builds: vec![b], ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("build b needs build nope (depends)"), "{e}");
}

#[test]
fn two_builds_with_one_output_are_an_error() {
    let d = tempfile::tempdir().unwrap();
    let mut b = spec(d.path(), "b", "FROM scratch\n", None);
    b.tags = vec!["localhost/a:latest".into()];
    let set = BakeSet { builds: vec![spec(d.path(), "a", "FROM scratch\n", None), b], ..Default::default() };
    let e = Graph::new(&set).unwrap_err().to_string();
    assert_eq!(e, "builds a and b both produce localhost/a:latest");
}

#[test]
fn unknown_targets_list_the_builds() {
    let d = tempfile::tempdir().unwrap();
    let g = Graph::new(&BakeSet { builds: vec![spec(d.path(), "a", "FROM scratch\n", None)], ..Default::default() })
        .unwrap();
    assert_eq!(g.selection(&["z".into()]).unwrap_err().to_string(), "no build named z (builds: a)");
}
