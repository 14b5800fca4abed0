//! Build checks (BuildKit's Dockerfile lint rules) through `kiln build`: findings are warnings on a
//! build that goes on, `# check=error=true` stops it before any step, `skip=` and the
//! `BUILDKIT_DOCKERFILE_CHECK` build argument change what runs, `--check` only checks.

use crate::harness::{Kiln, Run, Workspace};

fn build(dockerfile: &str, extra: &[&str]) -> (Kiln, Run) {
    let ws = Workspace::new();
    ws.file("a.txt", "a");
    ws.dockerfile(dockerfile);
    let kiln = Kiln::new();
    let ctx = ws.path().to_string_lossy().into_owned();
    let mut args = vec!["build", "-t", "checked"];
    args.extend_from_slice(extra);
    args.push(&ctx);
    let run = kiln.run(&args);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    (kiln, run)
}

const CASING: &str = "warning: StageNameCasing: Stage name 'Build' should be lowercase";

#[test]
fn findings_are_warnings_and_the_build_goes_on() {
    let (kiln, run) = build("FROM scratch AS Build\nMAINTAINER me\ncopy a.txt /\n", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains(&format!("{CASING} (")), "{}", run.stderr);
    assert!(run.stderr.contains("Dockerfile:1)"), "{}", run.stderr);
    let maintainer = "warning: MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label";
    assert!(run.stderr.contains(maintainer), "{}", run.stderr);
    let casing = "Command 'copy' should match the case of the command majority (uppercase)";
    assert!(run.stderr.contains(casing) && run.stderr.contains("Dockerfile:3)"), "{}", run.stderr);
    assert!(run.stderr.contains("3 build check warnings found"), "{}", run.stderr);
    assert_ne!(kiln.ok(&["images", "-q"]).trim(), "");
}

#[test]
fn error_true_fails_before_any_step_naming_rule_and_line() {
    let (kiln, run) = build("# check=error=true\nFROM scratch AS Build\nCOPY a.txt /\n", &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("error: lint violation found for rules: StageNameCasing ("), "{}", run.stderr);
    assert!(run.stderr.contains("Dockerfile:2)"), "{}", run.stderr);
    assert!(!run.stderr.contains("STEP"), "no step ran: {}", run.stderr);
    assert_eq!(kiln.ok(&["images", "-q"]).trim(), "", "no image is left behind");
}

#[test]
fn skip_silences_a_rule() {
    let (_, run) = build("# check=skip=StageNameCasing;error=true\nFROM scratch AS Build\nCOPY a.txt /\n", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("StageNameCasing"), "{}", run.stderr);
}

#[test]
fn the_build_arg_overrides_the_directive() {
    let dockerfile = "# check=skip=all\nFROM scratch AS Build\nCOPY a.txt /\n";
    let (_, run) = build(dockerfile, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("StageNameCasing"), "{}", run.stderr);
    let (_, run) = build(dockerfile, &["--build-arg", "BUILDKIT_DOCKERFILE_CHECK=error=true"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("lint violation found for rules: StageNameCasing"), "{}", run.stderr);
    let (_, run) =
        build("# check=error=true\nFROM scratch AS Build\n", &["--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=all"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn bad_check_options_are_an_input_error() {
    let (_, run) = build("# check=skip\nFROM scratch\n", &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("failed to parse check options: invalid check option \"skip\""), "{}", run.stderr);
}

#[test]
fn check_flag_only_checks() {
    let (kiln, run) = build("FROM scratch AS Build\nCOPY a.txt /\n", &["--check"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stdout.contains("StageNameCasing: Stage name 'Build' should be lowercase ("), "{}", run.stdout);
    assert!(run.stdout.contains("https://docs.docker.com/go/dockerfile/rule/stage-name-casing/"), "{}", run.stdout);
    assert!(run.stdout.contains("Check complete, 1 warning found."), "{}", run.stdout);
    assert!(!run.stderr.contains("STEP"), "{}", run.stderr);
    assert_eq!(kiln.ok(&["images", "-q"]).trim(), "", "--check builds nothing");
    let (_, run) = build("FROM scratch AS build\nCOPY a.txt /\n", &["--check"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("Check complete, no warnings found."), "{}", run.stdout);
}

#[test]
fn undefined_var_is_judged_before_any_step() {
    let (_, run) = build("FROM scratch\nENV A=1\nCOPY a.txt /$B\n", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let warning = "warning: UndefinedVar: Usage of undefined variable '$B' (did you mean $A?) (";
    assert!(run.stderr.contains(warning) && run.stderr.contains("Dockerfile:3)"), "{}", run.stderr);
    let (kiln, run) = build("# check=error=true\nFROM scratch\nCOPY a.txt /$B\n", &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("lint violation found for rules: UndefinedVar ("), "{}", run.stderr);
    assert!(!run.stderr.contains("STEP"), "no step ran: {}", run.stderr);
    assert_eq!(kiln.ok(&["images", "-q"]).trim(), "");
}

#[test]
fn findings_before_a_bad_instruction_are_told_with_the_error() {
    // BuildKit's testWarningsBeforeError.
    let (_, run) = build("\nFROM scratch AS BadStageName\nMAINTAINER me@example.org\nBADCMD\n", &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("warning: StageNameCasing: Stage name 'BadStageName' should be lowercase ("),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("warning: MaintainerDeprecated:"), "{}", run.stderr);
    assert!(run.stderr.contains("Dockerfile:4: unknown instruction: BADCMD"), "{}", run.stderr);
}
