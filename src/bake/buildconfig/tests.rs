//! BuildConfig reading rules, each on a small YAML file.

use super::*;

fn load_text(yaml: &str, options: &LoadOptions) -> Result<BakeSet, BakeError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bc.yaml");
    std::fs::write(&file, yaml).unwrap();
    let set = load(&[file], options);
    // Keep paths comparable after the directory is gone.
    set.map(|mut s| {
        for b in &mut s.builds {
            b.context = b.context.strip_prefix(dir.path()).unwrap_or(&b.context).to_path_buf();
            if let Dockerfile::Path(p) = &b.dockerfile {
                b.dockerfile = Dockerfile::Path(p.strip_prefix(dir.path()).unwrap_or(p).to_path_buf());
            }
        }
        s
    })
}

const APP: &str = r#"
apiVersion: build.openshift.io/v1
kind: BuildConfig
metadata:
  name: python-app
  namespace: platform
spec:
  runPolicy: Serial
  source:
    contextDir: apps/python-app
  strategy:
    type: Docker
    dockerStrategy:
      from:
        kind: ImageStreamTag
        name: python-base:3.11
      dockerfilePath: build/Dockerfile
      buildArgs:
        - name: VERSION
          value: "1.2"
        - name: TOKEN
          valueFrom:
            secretKeyRef: {name: s, key: k}
      env:
        - name: PIP_INDEX_URL
          value: https://nexus.example.com/pypi
      noCache: true
      forcePull: true
  output:
    to:
      kind: ImageStreamTag
      name: python-app:latest
    imageLabels:
      - name: team
        value: platform
  resources:
    limits:
      cpu: 300m
      memory: 2Gi
    requests:
      cpu: 100m
  completionDeadlineSeconds: 3600
  triggers:
    - type: ConfigChange
    - type: ImageChange
      imageChange: {}
"#;

#[test]
fn a_docker_strategy_build_config_becomes_a_build() {
    let set = load_text(APP, &LoadOptions::default()).unwrap();
    let b = &set.builds[0];
    assert_eq!(b.name, "python-app");
    assert_eq!(b.context, PathBuf::from("apps/python-app"));
    assert_eq!(b.dockerfile, Dockerfile::Path(PathBuf::from("apps/python-app/build/Dockerfile")));
    let from = b.from.as_ref().unwrap();
    assert_eq!(from.image, "localhost/platform/python-base:3.11");
    assert_eq!(from.written.as_deref(), Some("ImageStreamTag platform/python-base:3.11"));
    assert_eq!(b.from_rule, FromRule::Last);
    assert_eq!(b.build_args.get("VERSION").map(String::as_str), Some("1.2"));
    assert!(!b.build_args.contains_key("TOKEN"));
    assert_eq!(b.env, [("PIP_INDEX_URL".to_string(), "https://nexus.example.com/pypi".to_string())]);
    assert_eq!(b.labels, [("team".to_string(), "platform".to_string())]);
    assert!(b.no_cache);
    assert_eq!(b.tags, ["localhost/platform/python-app:latest"]);
    assert_eq!(b.limits, Limits { cpu_millis: Some(300), memory_bytes: Some(2 << 30) });
    assert_eq!(b.deadline, Some(Duration::from_secs(3600)));
    // An ImageChange trigger without `from` follows the strategy's from.
    assert_eq!(b.triggers, std::slice::from_ref(from));
    let ignored = set.ignored.lines().join("\n");
    for what in [
        "spec.runPolicy",
        "spec.strategy.dockerStrategy.forcePull",
        "spec.resources.requests",
        "spec.triggers type ConfigChange",
        "buildArgs TOKEN",
    ] {
        assert!(ignored.contains(what), "{what} not reported in:\n{ignored}");
    }
}

#[test]
fn image_registry_flag_maps_image_stream_tags() {
    let options = LoadOptions { image_registry: Some("127.0.0.1:5000/team".into()), ..Default::default() };
    let set = load_text(APP, &options).unwrap();
    assert_eq!(set.builds[0].tags, ["127.0.0.1:5000/team/python-app:latest"]);
    assert_eq!(set.builds[0].from.as_ref().unwrap().image, "127.0.0.1:5000/team/python-base:3.11");
}

#[test]
fn lists_multi_documents_and_image_stream_imports() {
    let yaml = r#"
kind: ImageStream
metadata: {name: ubi9}
spec:
  tags:
    - name: latest
      from: {kind: DockerImage, name: registry.access.redhat.com/ubi9/ubi:latest}
---
kind: List
items:
  - kind: BuildConfig
    metadata: {name: a}
    spec:
      strategy:
        dockerStrategy:
          from: {kind: ImageStreamTag, name: "ubi9:latest"}
      output:
        to: {kind: DockerImage, name: registry.example.com/team/a:1}
  - kind: Service
    metadata: {name: svc}
---
"#;
    let set = load_text(yaml, &LoadOptions::default()).unwrap();
    assert_eq!(set.builds.len(), 1);
    let from = set.builds[0].from.as_ref().unwrap();
    assert_eq!(from.image, "registry.access.redhat.com/ubi9/ubi:latest");
    assert_eq!(from.written, None, "an imported stream needs no producer");
    assert_eq!(set.builds[0].tags, ["registry.example.com/team/a:1"]);
    assert!(set.ignored.lines().iter().any(|l| l.starts_with("kind Service")));
}

#[test]
fn inline_dockerfiles_and_unsupported_strategies() {
    let yaml = "kind: BuildConfig\nmetadata: {name: inline}\nspec:\n  source:\n    dockerfile: |\n      FROM scratch\n  strategy: {type: Docker}\n";
    let set = load_text(yaml, &LoadOptions::default()).unwrap();
    assert_eq!(set.builds[0].dockerfile, Dockerfile::Inline("FROM scratch\n".into()));
    assert_eq!(set.builds[0].tags, ["localhost/inline:latest"]);
    let s2i = "kind: BuildConfig\nmetadata: {name: s2i}\nspec:\n  strategy: {type: Source, sourceStrategy: {}}\n";
    let e = load_text(s2i, &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("build s2i: strategy type Source is not supported"), "{e}");
}

#[test]
fn paths_may_not_leave_the_source() {
    let yaml = "kind: BuildConfig\nmetadata: {name: esc}\nspec:\n  source: {contextDir: ../../etc}\n  strategy: {type: Docker}\n";
    let e = load_text(yaml, &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("build esc: contextDir \"../../etc\" must be a relative path inside the source"), "{e}");
}

#[test]
fn unmapped_git_sources_say_what_to_pass() {
    let yaml = "kind: BuildConfig\nmetadata: {name: g}\nspec:\n  source:\n    git: {uri: 'https://git.example.com/x/y.git'}\n  strategy: {type: Docker}\n";
    let e = load_text(yaml, &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("--git-source https://git.example.com/x/y.git=DIR"), "{e}");
    let options = LoadOptions {
        git_sources: vec![("git@git.example.com:x/y".into(), PathBuf::from("/src/y"))],
        ..Default::default()
    };
    let set = load_text(yaml, &options).unwrap();
    assert_eq!(set.builds[0].context, PathBuf::from("/src/y"));
}

#[test]
fn yaml_errors_name_the_file_and_line() {
    let e = load_text("kind: BuildConfig\nmetadata: [\n", &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("bc.yaml") && e.contains("line"), "{e}");
}
