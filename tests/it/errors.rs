//! Bad input: one clear message naming the place, exit code 1, nothing half-written.

use crate::harness::{Kiln, Workspace};

fn build_fails(dockerfile: &str, files: &[(&str, &str)], extra: &[&str]) -> crate::harness::Run {
    let ws = Workspace::new();
    for (p, c) in files {
        ws.file(p, c);
    }
    ws.dockerfile(dockerfile);
    let kiln = Kiln::new();
    let ctx = ws.path().to_string_lossy().into_owned();
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    args.push(&ctx);
    let run = kiln.fails(&args);
    assert_eq!(run.code, 1, "input errors exit with 1: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(kiln.ok(&["images", "-q"]).trim(), "", "no image is left behind");
    run
}

#[test]
fn unknown_instruction_names_file_line_and_suggestion() {
    let run = build_fails("FROM scratch\n\nFORM busybox\n", &[], &[]);
    assert!(run.stderr.contains("Dockerfile:3: unknown instruction: FORM (did you mean FROM?)"), "{}", run.stderr);
}

#[test]
fn missing_copy_source_names_the_line_and_the_file() {
    let run = build_fails("FROM scratch\nCOPY present.txt /\nCOPY missing.txt /\n", &[("present.txt", "x")], &[]);
    assert!(run.stderr.contains("Dockerfile:3: COPY missing.txt /"), "{}", run.stderr);
    assert!(run.stderr.contains("missing.txt: not found in the build context"), "{}", run.stderr);
}

#[test]
fn unknown_target_lists_the_stages() {
    let run = build_fails("FROM scratch AS build\nFROM scratch AS test\n", &[], &["--target", "tset"]);
    assert!(
        run.stderr.contains("target stage \"tset\" could not be found (did you mean test?) (stages: build, test)"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_references_and_flags_are_named() {
    let run = build_fails("FROM Not_Valid:tag\n", &[], &[]);
    assert!(run.stderr.contains("Not_Valid"), "{}", run.stderr);
    let run = build_fails("FROM scratch\nCOPY --form=x a /\n", &[("a", "")], &[]);
    assert!(run.stderr.contains("Dockerfile:2: unknown flag: --form (did you mean from?)"), "{}", run.stderr);
}

#[test]
fn usage_errors_exit_with_2() {
    let run = Kiln::new().run(&["build", "--no-such-flag"]);
    assert_eq!(run.code, 2);
}

#[test]
fn parse_dump_matches_the_reference_format() {
    let ws = Workspace::new();
    ws.dockerfile("FROM x AS y\nCOPY --from=y a b\nCMD [\"a\"]\n");
    let out = Kiln::new().ok(&["parse", "--dump", &ws.path().join("Dockerfile").to_string_lossy()]);
    assert_eq!(out, "(from \"x\" \"AS\" \"y\")\n(copy [\"--from=y\"] \"a\" \"b\")\n(cmd \"a\")\n");
}
