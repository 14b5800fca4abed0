//! The reference implementation's own test data (BuildKit's parser and shell test files), read from
//! `../shared/conformance/buildkit` beside the checkout or `$KILN_CONFORMANCE_DIR`, never copied here.
//! Absent data skips with a message, except under `CI=true`, where it fails.

use std::path::PathBuf;

/// The conformance data directory, or `None` (after saying why) when it is absent outside CI.
pub fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("KILN_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/conformance/buildkit")));
    if dir.is_dir() {
        return Some(dir);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(!ci, "conformance data missing at {} (CI=true makes this a failure)", dir.display());
    eprintln!("skipping: conformance data not found at {} (set KILN_CONFORMANCE_DIR)", dir.display());
    None
}

fn sorted_dirs(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_reference_testfile_dumps_exactly_as_the_reference() {
    let Some(root) = data_dir() else { return };
    let cases = sorted_dirs(&root.join("parser/testfiles"));
    assert!(cases.len() >= 30, "expected the full parser data set, found {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let source = std::fs::read_to_string(case.join("Dockerfile")).expect("readable Dockerfile");
        let want = std::fs::read_to_string(case.join("result")).expect("readable result");
        match super::parse_nodes(&source, "Dockerfile") {
            Ok(tree) => {
                let got = super::dump(&tree.nodes);
                if got.trim_end() != want.trim_end() {
                    failures.push(format!("{name}:\n--- want\n{want}\n--- got\n{got}"));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn every_negative_testfile_is_rejected_with_a_located_message() {
    let Some(root) = data_dir() else { return };
    let cases = sorted_dirs(&root.join("parser/testfiles-negative"));
    assert!(!cases.is_empty(), "no negative cases found");
    for case in &cases {
        let source = std::fs::read_to_string(case.join("Dockerfile")).expect("readable Dockerfile");
        match super::parse(&source, "Dockerfile") {
            Ok(_) => panic!("{} parsed but must be rejected", case.display()),
            Err(e) => assert!(e.to_string().starts_with("Dockerfile:"), "{}: {e}", case.display()),
        }
    }
}
