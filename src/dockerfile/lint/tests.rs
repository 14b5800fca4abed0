//! The build checks against BuildKit's own cases (frontend/dockerfile/dockerfile_check_test.go); each
//! test names the BuildKit test its Dockerfiles and expectations come from.

use super::*;
use crate::dockerfile::parse;

/// The platform arguments of a linux/amd64 build.
fn predefined() -> Vec<(String, String)> {
    [
        ("BUILDPLATFORM", "linux/amd64"),
        ("BUILDOS", "linux"),
        ("BUILDARCH", "amd64"),
        ("BUILDVARIANT", ""),
        ("TARGETPLATFORM", "linux/amd64"),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "amd64"),
        ("TARGETVARIANT", ""),
        ("TARGETSTAGE", "default"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Every rule over every stage (as `kiln build --check`: no image env known).
fn report(src: &str, build_args: &[(&str, &str)]) -> Report {
    let df = parse(src, "Dockerfile").unwrap();
    let build_args = build_args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let inputs = Inputs { build_args, predefined: predefined() };
    let mut all = check(&df, &inputs).unwrap();
    let n = df
        .instructions
        .iter()
        .filter(|i| matches!(i.command, crate::dockerfile::instruction::Command::From(_)))
        .count();
    let bases = Bases { stages: (0..n).collect(), ..Default::default() };
    all.warnings.extend(check_stages(&df, &inputs, &bases).unwrap().warnings);
    all
}

/// `(rule, line, message)` of every finding, sorted like BuildKit's test harness compares them.
fn found(src: &str) -> Vec<(&'static str, usize, String)> {
    found_with(src, &[])
}

fn found_with(src: &str, build_args: &[(&str, &str)]) -> Vec<(&'static str, usize, String)> {
    let mut out: Vec<_> =
        report(src, build_args).warnings.into_iter().map(|w| (w.rule, w.start_line, w.message)).collect();
    out.sort();
    out
}

fn one(rule: &'static str, line: usize, message: &str) -> Vec<(&'static str, usize, String)> {
    vec![(rule, line, message.to_string())]
}

#[test]
fn check_option_skips_and_fails() {
    // testRuleCheckOption
    let body = "FROM scratch as base\ncopy Dockerfile .\n";
    assert!(found(&format!("#check=skip=all\n{body}")).is_empty());
    let r = report(&format!("#check=skip=all;error=true\n{body}"), &[]);
    assert_eq!(r.violation(), None);
    assert!(found(&format!("#check=skip=ConsistentInstructionCasing,FromAsCasing\n{body}")).is_empty());
    let src = format!("#check=skip=ConsistentInstructionCasing\n{body}");
    assert_eq!(found(&src), one("FromAsCasing", 2, "'as' and 'FROM' keywords' casing do not match"));
    assert_eq!(report(&src, &[]).violation(), None);
    let r = report(&format!("#check=skip=ConsistentInstructionCasing;error=true\n{body}"), &[]);
    assert_eq!(r.violation().unwrap(), "lint violation found for rules: FromAsCasing (Dockerfile:2)");
    // The build argument replaces the directive whole.
    let arg = [("BUILDKIT_DOCKERFILE_CHECK", "skip=ConsistentInstructionCasing;error=true")];
    let r = report(&format!("#check=skip=all\n{body}"), &arg);
    assert_eq!(r.violation().unwrap(), "lint violation found for rules: FromAsCasing (Dockerfile:2)");
    let r = report(&format!("#check=error=true\n{body}"), &[("BUILDKIT_DOCKERFILE_CHECK", "skip=all")]);
    assert!(r.warnings.is_empty() && r.violation().is_none());
}

#[test]
fn a_bad_check_option_is_an_error() {
    let df = parse("# check=skip\nFROM scratch\n", "Dockerfile").unwrap();
    let e = check(&df, &Inputs::default()).unwrap_err();
    assert_eq!(e.to_string(), "failed to parse check options: invalid check option \"skip\"");
}

#[test]
fn the_violation_names_each_rule_once_at_its_first_place() {
    let r = report("# check=error=true\nFROM scratch AS A\nFROM scratch AS B\nMAINTAINER me\n", &[]);
    assert_eq!(
        r.violation().unwrap(),
        "lint violation found for rules: MaintainerDeprecated (Dockerfile:4), StageNameCasing (Dockerfile:2)"
    );
}

#[test]
fn stage_name_casing_and_from_as_casing() {
    // testStageName
    let src = "\n# warning: stage name should be lowercase\n#\nFROM scratch AS BadStageName\n\n# warning: 'as' should match 'FROM' cmd casing.\n#\nFROM scratch as base2\n\nFROM scratch AS base3\n";
    assert_eq!(
        found(src),
        vec![
            ("FromAsCasing", 8, "'as' and 'FROM' keywords' casing do not match".to_string()),
            ("StageNameCasing", 4, "Stage name 'BadStageName' should be lowercase".to_string()),
        ]
    );
    let src = "\n# warning: 'AS' should match 'from' cmd casing.\n#\nfrom scratch AS base\n\nfrom scratch as base2\n";
    assert_eq!(found(src), one("FromAsCasing", 4, "'AS' and 'from' keywords' casing do not match"));
    assert!(found("FROM scratch AS base\nFROM base AS next\n").is_empty());
}

#[test]
fn no_empty_continuation() {
    // testNoEmptyContinuation: reported at the line where the logical line ends.
    let src = "\nFROM scratch\n# warning: empty continuation line\nCOPY Dockerfile \\\n\n.\nCOPY Dockerfile \\\n.\n";
    assert_eq!(found(src), one("NoEmptyContinuation", 6, "Empty continuation line"));
    assert!(found("FROM scratch\nCOPY a \\\n# comment\n b\n").is_empty());
}

#[test]
fn consistent_instruction_casing() {
    // testConsistentInstructionCasing
    let rule = "ConsistentInstructionCasing";
    let msg = |c: &str, casing: &str| format!("Command '{c}' should match the case of the command majority ({casing})");
    let cases = [
        ("\n# warning\n#\nFrom scratch as base\nFROM scratch AS base2\n", 4, msg("From", "uppercase")),
        ("\nFROM scratch\n# warning\ncopy Dockerfile /foo\nCOPY Dockerfile /bar\n", 4, msg("copy", "uppercase")),
        ("\n# warning\n#\nfrOM scratch as base\nfrom scratch as base2\n", 4, msg("frOM", "lowercase")),
        ("\nfrom scratch\n# warning\nCOPY Dockerfile /foo\ncopy Dockerfile /bar\n", 4, msg("COPY", "lowercase")),
        (
            "\n#\n#\nfrom scratch\nCOPY Dockerfile /foo\nCOPY Dockerfile /bar\nCOPY Dockerfile /baz\n",
            4,
            msg("from", "uppercase"),
        ),
        (
            "\n#\n#\nFROM scratch\ncopy Dockerfile /foo\ncopy Dockerfile /bar\ncopy Dockerfile /baz\n",
            4,
            msg("FROM", "lowercase"),
        ),
    ];
    for (src, line, message) in cases {
        assert_eq!(found(src), vec![(rule, line, message)], "{src}");
    }
    assert!(found("\nfrom scratch\ncopy Dockerfile /foo\ncopy Dockerfile /bar\n").is_empty());
    assert!(found("\nFROM scratch\nCOPY Dockerfile /foo\nCOPY Dockerfile /bar\n").is_empty());
    assert!(found("\nFROM alpine\nRUN <<'EOT'\nenv\nEOT\n").is_empty());
    // Global ARGs are not counted, as in BuildKit (they belong to no stage).
    assert!(found("arg x=1\nFROM scratch\nCOPY a b\n").is_empty());
}

#[test]
fn duplicate_and_reserved_stage_names() {
    // testDuplicateStageName, testReservedStageName
    let src = "\nFROM scratch AS b\nFROM scratch AS b\n";
    assert_eq!(found(src), one("DuplicateStageName", 3, "Duplicate stage name \"b\", stage names should be unique"));
    assert!(found("\nFROM scratch AS b1\nFROM scratch AS b2\n").is_empty());
    let src = "\nFROM scratch AS scratch\nFROM scratch AS context\n";
    let reserved = "Stage name should not use the same name as reserved stage";
    assert_eq!(
        found(src),
        vec![
            ("ReservedStageName", 2, format!("{reserved} \"scratch\"")),
            ("ReservedStageName", 3, format!("{reserved} \"context\"")),
        ]
    );
    assert!(found("\nFROM scratch\nFROM scratch AS a\n").is_empty());
}

#[test]
fn json_args_recommended() {
    // testJSONArgsRecommended
    let msg =
        |c: &str| format!("JSON arguments recommended for {c} to prevent unintended behavior related to OS signals");
    assert_eq!(found("\nFROM scratch\nCMD mycommand\n"), vec![("JSONArgsRecommended", 3, msg("CMD"))]);
    assert_eq!(found("\nFROM scratch\nENTRYPOINT mycommand\n"), vec![("JSONArgsRecommended", 3, msg("ENTRYPOINT"))]);
    assert!(found("\nFROM scratch\nSHELL [\"/usr/bin/customshell\"]\nCMD mycommand\n").is_empty());
    assert!(found("\nFROM scratch\nSHELL [\"/usr/bin/customshell\"]\nENTRYPOINT mycommand\n").is_empty());
    assert!(found("\nFROM scratch AS base\nSHELL [\"/usr/bin/customshell\"]\n\nFROM base\nCMD mycommand\n").is_empty());
    assert!(found("\nFROM scratch\nCMD [\"mycommand\"]\n").is_empty());
}

#[test]
fn maintainer_deprecated() {
    // testMaintainerDeprecated, testWarningsBeforeError (its first two findings)
    let msg = "Maintainer instruction is deprecated in favor of using label";
    assert_eq!(found("\nFROM scratch\nMAINTAINER me@example.org\n"), one("MaintainerDeprecated", 3, msg));
    assert!(found("\nFROM scratch\nLABEL org.opencontainers.image.authors=\"me@example.org\"\n").is_empty());
    // A `# check=` comment right before an instruction applies to that instruction only.
    assert!(found("\nFROM scratch\n# check=skip=JSONArgsRecommended\nCMD mycommand\n").is_empty());
    assert!(found("\nFROM scratch\n# check=skip=JSONArgsRecommended\nENTRYPOINT mycommand\n").is_empty());
    assert!(found("\nFROM scratch\n# check=skip=MaintainerDeprecated\nMAINTAINER me@example.org\n").is_empty());
    let src =
        "\nFROM scratch\n# check=skip=MaintainerDeprecated\nMAINTAINER me@example.org\nMAINTAINER you@example.org\n";
    assert_eq!(found(src), one("MaintainerDeprecated", 5, msg));
    assert_eq!(
        found("\nFROM scratch AS BadStageName\nMAINTAINER me@example.org\n"),
        vec![
            ("MaintainerDeprecated", 3, msg.to_string()),
            ("StageNameCasing", 2, "Stage name 'BadStageName' should be lowercase".to_string()),
        ]
    );
}

#[test]
fn warnings_before_a_conversion_error() {
    // testWarningsBeforeError: the findings up to the bad instruction are told, then the error.
    let src = "\nFROM scratch AS BadStageName\nMAINTAINER me@example.org\nBADCMD\nMAINTAINER later\n";
    let error = parse(src, "Dockerfile").unwrap_err();
    assert_eq!(error.line, 4);
    let tree = crate::dockerfile::parse_nodes(src, "Dockerfile").unwrap();
    let report = check_before_error(&tree, "Dockerfile", error.line, &Inputs::default());
    let found: Vec<_> = report.warnings.iter().map(|w| (w.rule, w.start_line)).collect();
    assert_eq!(found, [("StageNameCasing", 2), ("MaintainerDeprecated", 3)]);
}

#[test]
fn undefined_arg_in_from() {
    // testUndeclaredArg
    for quiet in [
        "\nARG base=scratch\nFROM $base\nCOPY Dockerfile .\n",
        "\nARG BUILDPLATFORM=linux/amd64\nFROM --platform=$BUILDPLATFORM scratch\nCOPY Dockerfile .\n",
        "\nFROM --platform=$BUILDPLATFORM scratch\nCOPY Dockerfile .\n",
        "\nARG DEBUG\nFROM scratch${DEBUG}\nCOPY Dockerfile .\n",
        "\nARG DEBUG\nFROM scra${DEBUG:-tch}\nCOPY Dockerfile .\n",
        "\nARG DEBUG=\"\"\nFROM scratch${DEBUG-@bogus}\nCOPY Dockerfile .\n",
    ] {
        assert!(found(quiet).is_empty(), "{quiet}");
    }
    let src = "\nFROM --platform=$BULIDPLATFORM scratch\nCOPY Dockerfile .\n";
    let msg = "FROM argument 'BULIDPLATFORM' is not declared (did you mean BUILDPLATFORM?)";
    assert_eq!(found(src), one("UndefinedArgInFrom", 2, msg));
    let src = "\nARG MY_OS=linux\nARG MY_ARCH=amd64\nFROM --platform=linux/${MYARCH} busybox\nCOPY Dockerfile .\n";
    let msg = "FROM argument 'MYARCH' is not declared (did you mean MY_ARCH?)";
    assert_eq!(found(src), one("UndefinedArgInFrom", 4, msg));
    let src = "\nARG tag=latest\nFROM busybox:${tag}${version} AS b\nCOPY Dockerfile .\n";
    assert_eq!(found(src), one("UndefinedArgInFrom", 3, "FROM argument 'version' is not declared"));
}

#[test]
fn workdir_relative_path() {
    // testWorkdirRelativePath
    let msg = "Relative workdir \"app/\" can have unexpected results if the base image changes";
    assert_eq!(found("\nFROM scratch\nWORKDIR app/\n"), one("WorkdirRelativePath", 3, msg));
    assert!(found("\nFROM scratch AS a\nWORKDIR /app\n\nFROM a AS b\nWORKDIR subdir/\n").is_empty());
    // Only the first WORKDIR of a stage is judged: fixing it fixes the rest.
    assert!(found("\nFROM scratch\nWORKDIR /app\nWORKDIR sub\n").is_empty());
    assert!(found("\nFROM scratch\n# check=skip=WorkdirRelativePath\nWORKDIR app/\n").is_empty());
    // Paths with variables are judged expanded, where the stage's env is known.
    let msg = "Relative workdir \"app/x\" can have unexpected results if the base image changes";
    assert_eq!(found("FROM scratch\nENV D=app\nWORKDIR $D/x\n"), one("WorkdirRelativePath", 3, msg));
    assert!(found("FROM scratch\nARG D=/app\nWORKDIR $D/x\n").is_empty());
}

#[test]
fn multiple_instructions_disallowed() {
    // testMultipleInstructionsDisallowed
    let w = |name: &str, line: usize| {
        let message = format!(
            "Multiple {name} instructions should not be used in the same stage because only the last one will be used"
        );
        ("MultipleInstructionsDisallowed", line, message)
    };
    let src = "\nFROM scratch\nENTRYPOINT [\"/myapp\"]\nENTRYPOINT [\"/myotherapp\"]\nCMD [\"/myapp\"]\nCMD [\"/myotherapp\"]\nHEALTHCHECK CMD [\"/myapp\"]\nHEALTHCHECK CMD [\"/myotherapp\"]\n";
    assert_eq!(found(src), vec![w("ENTRYPOINT", 3), w("CMD", 5), w("HEALTHCHECK", 7)]);
    let src = "\nFROM scratch\nENTRYPOINT [\"/myapp\"]\nCMD [\"/myapp\"]\nHEALTHCHECK CMD [\"/myapp\"]\nCOPY <<EOF /a.txt\nHello, World!\nEOF\nENTRYPOINT [\"/myotherapp\"]\nCMD [\"/myotherapp\"]\nHEALTHCHECK CMD [\"/myotherapp\"]\n";
    assert_eq!(found(src), vec![w("ENTRYPOINT", 3), w("CMD", 4), w("HEALTHCHECK", 5)]);
    let src = "\nFROM scratch AS a\nENTRYPOINT [\"/myapp\"]\nCMD [\"/myapp\"]\nHEALTHCHECK CMD [\"/myapp\"]\n\nFROM a AS b\nENTRYPOINT [\"/myotherapp\"]\nCMD [\"/myotherapp\"]\nHEALTHCHECK CMD [\"/myotherapp\"]\n";
    assert!(found(src).is_empty());
}

#[test]
fn legacy_key_value_format() {
    // testLegacyKeyValueFormat
    let msg = |c: &str| format!("\"{c} key=value\" should be used instead of legacy \"{c} key value\" format");
    assert_eq!(
        found("\nFROM scratch\nENV testkey value\nLABEL key value\n"),
        vec![("LegacyKeyValueFormat", 3, msg("ENV")), ("LegacyKeyValueFormat", 4, msg("LABEL"))]
    );
    assert!(found("\nFROM scratch\nENV testkey=value\nLABEL key=value\n").is_empty());
    let src = "\nFROM scratch\n# check=skip=LegacyKeyValueFormat\nENV testkey value\n# check=skip=LegacyKeyValueFormat\nLABEL key value\n";
    assert!(found(src).is_empty());
}

#[test]
fn redundant_target_platform() {
    // testRedundantTargetPlatform
    let msg =
        |v: &str| format!("Setting platform to predefined {v} in FROM is redundant as this is the default behavior");
    assert_eq!(
        found("\nFROM --platform=$TARGETPLATFORM scratch\n"),
        vec![("RedundantTargetPlatform", 2, msg("$TARGETPLATFORM"))]
    );
    assert_eq!(
        found("\nFROM --platform=${TARGETPLATFORM} scratch\n"),
        vec![("RedundantTargetPlatform", 2, msg("${TARGETPLATFORM}"))]
    );
    assert!(found("\n# check=skip=RedundantTargetPlatform\nFROM --platform=$TARGETPLATFORM scratch\n").is_empty());
    assert!(found("\nFROM --platform=$BUILDPLATFORM scratch\n").is_empty());
}

#[test]
fn secrets_used_in_arg_or_env() {
    // testSecretsUsedInArgOrEnv
    let src = "# check=skip=InvalidDefinitionDescription\n\nFROM scratch\nARG SECRET_PASSPHRASE\nENV SUPER_Secret=foo\nENV password=bar secret=baz\nARG super_duper_secret_token=foo auth=bar\nENV apikey=bar sunflower=foo\nENV git_key=\nENV PUBLIC_KEY=\nARG public_token\nARG SECRET_PASSPHRASE_FILE\nENV password_file=bar secret_File=baz\nARG AUTH_MODULE_VERSION\n# check=skip=SecretsUsedInArgOrEnv // allow secret in environment\nENV password=bar\n# check=skip=SecretsUsedInArgOrEnv // allow secret in arg\nARG password\n# check=skip=all // is local to only this instruction\nENV alternate_password=bar\n# check=skip=all // is local to only this instruction\nARG alternate_password\n";
    let w = |i: &str, key: &str, line: usize| {
        (
            "SecretsUsedInArgOrEnv",
            line,
            format!("Do not use ARG or ENV instructions for sensitive data ({i} \"{key}\")"),
        )
    };
    assert_eq!(
        found(src),
        vec![
            w("ARG", "SECRET_PASSPHRASE", 4),
            w("ENV", "SUPER_Secret", 5),
            w("ENV", "password", 6),
            w("ENV", "secret", 6),
            w("ARG", "auth", 7),
            w("ARG", "super_duper_secret_token", 7),
            w("ENV", "apikey", 8),
            w("ENV", "git_key", 9),
        ]
    );
}

#[test]
fn invalid_default_arg_in_from() {
    // testInvalidDefaultArgInFrom
    let msg = |b: &str| format!("Default value for ARG {b} results in empty or invalid base image name");
    let rule = "InvalidDefaultArgInFrom";
    let src = "\nARG VERSION\nFROM busybox:$VERSION\n";
    assert_eq!(found_with(src, &[("VERSION", "latest")]), vec![(rule, 3, msg("busybox:$VERSION"))]);
    let src = "\nARG IMAGE\nFROM $IMAGE\n";
    assert_eq!(found_with(src, &[("IMAGE", "busybox:latest")]), vec![(rule, 3, msg("$IMAGE"))]);
    let src = "\nARG SFX=\"box:\"\nFROM busy${SFX}\n";
    assert_eq!(found_with(src, &[("SFX", "box:latest")]), vec![(rule, 3, msg("busy${SFX}"))]);
    assert!(found_with("\nARG VERSION=\"latest\"\nFROM busybox:${VERSION}\n", &[("VERSION", "latest")]).is_empty());
    let src = "\nARG BUSYBOX_VARIANT=\"\"\nFROM busybox:stable${BUSYBOX_VARIANT}\n";
    assert!(found_with(src, &[("BUSYBOX_VARIANT", "-musl")]).is_empty());
    let src = "\n\tARG BUSYBOX_VARIANT\n\tFROM busybox:stable${BUSYBOX_VARIANT}\n\t";
    assert!(found_with(src, &[("BUSYBOX_VARIANT", "-musl")]).is_empty());
}

#[test]
fn references_are_judged_like_docker() {
    for ok in [
        "scratch",
        "busybox:latest",
        "localhost:5000/a/b:1.0",
        "Example.COM/x",
        "a@sha256:0123456789abcdef0123456789abcdef",
    ] {
        assert!(from::is_valid_reference(ok), "{ok}");
    }
    for bad in ["", "busybox:", "Busybox", "a b", ":tag", &"0123456789abcdef".repeat(4)] {
        assert!(!from::is_valid_reference(bad), "{bad}");
    }
}

#[test]
fn from_platform_flag_const_disallowed() {
    // testFromPlatformFlagConstDisallowed
    let msg = "FROM --platform flag should not use constant value \"linux/amd64\"";
    assert_eq!(found("\nFROM --platform=linux/amd64 scratch\n"), one("FromPlatformFlagConstDisallowed", 2, msg));
    assert!(found("\nFROM --platform=linux/amd64 scratch AS my_amd64_stage\n").is_empty());
    assert!(found("\nFROM --platform=linux/amd64 scratch AS linux\n").is_empty());
}

#[test]
fn expose_proto_casing_and_invalid_format() {
    // testExposeProtoCasing, testExposeInvalidFormat
    let casing =
        |p: &str| ("ExposeProtoCasing", 3, format!("Defined protocol '{p}' in EXPOSE instruction should be lowercase"));
    assert_eq!(found("\nFROM scratch\nEXPOSE 80/TcP 8080/TCP 8080/udp\n"), vec![casing("80/TcP"), casing("8080/TCP")]);
    let format = |p: &str| {
        let message = format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{p}'");
        ("ExposeInvalidFormat", 3, message)
    };
    assert_eq!(
        found("\nFROM scratch\nEXPOSE 127.0.0.1:80:80 [::1]:8080:8080 5000:5000 8000\n"),
        vec![format("127.0.0.1:80:80"), format("5000:5000"), format("[::1]:8080:8080")]
    );
    assert!(found("\nFROM scratch\nEXPOSE 80 443/tcp 53/udp\n").is_empty());
    let msg = "Defined protocol '80/TCP' in EXPOSE instruction should be lowercase";
    assert_eq!(found("FROM scratch\nARG P=80/TCP\nEXPOSE $P\n"), one("ExposeProtoCasing", 3, msg));
}

/// UndefinedVar over every stage, the images' env given (alpine's PATH).
fn undefined(src: &str) -> Vec<(&'static str, usize, String)> {
    use crate::dockerfile::instruction::Command;
    let df = parse(src, "Dockerfile").unwrap();
    let froms: Vec<&str> = df
        .instructions
        .iter()
        .filter_map(|i| match &i.command {
            Command::From(f) => Some(f.image.as_str()),
            _ => None,
        })
        .collect();
    let alpine = vec![("PATH".to_string(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string())];
    // As the build gives it: the env of image bases only.
    let image_env =
        froms.iter().enumerate().filter(|(_, f)| **f == "alpine").map(|(i, _)| (i, alpine.clone())).collect();
    let bases = Bases { stages: (0..froms.len()).collect(), image_env, ..Default::default() };
    let inputs = Inputs { build_args: Default::default(), predefined: predefined() };
    let found = check_stages(&df, &inputs, &bases).unwrap().warnings.into_iter();
    found.filter(|w| w.rule == "UndefinedVar").map(|w| (w.rule, w.start_line, w.message)).collect()
}

#[test]
fn undefined_var() {
    // testUnmatchedVars
    for quiet in [
        "\nFROM scratch\nARG foo\nCOPY Dockerfile${foo} .\n",
        "\nFROM alpine AS base\nARG foo=Dockerfile\n\nFROM base\nCOPY $foo .\n",
        "\nFROM alpine\nRUN echo $PATH\n",
    ] {
        assert!(undefined(quiet).is_empty(), "{quiet}");
    }
    let src = "\nFROM alpine\nCOPY $foo .\nARG foo=bar\nRUN echo $foo\n";
    assert_eq!(undefined(src), one("UndefinedVar", 3, "Usage of undefined variable '$foo'"));
    let src = "\nFROM alpine\nARG DIR_BINARIES=binaries/\nARG DIR_ASSETS=assets/\nARG DIR_CONFIG=config/\nCOPY $DIR_ASSET .\n\t";
    let msg = "Usage of undefined variable '$DIR_ASSET' (did you mean $DIR_ASSETS?)";
    assert_eq!(undefined(src), one("UndefinedVar", 6, msg));
    let src = "\nFROM alpine\nENV PATH=$PAHT:/tmp/bin\n\t\t";
    assert_eq!(undefined(src), one("UndefinedVar", 3, "Usage of undefined variable '$PAHT' (did you mean $PATH?)"));
    // Heredoc bodies with an unquoted delimiter are expanded, quoted ones are not.
    let src = "FROM alpine\nCOPY <<EOF /a\n$nope\nEOF\nCOPY <<'EOF' /b\n$fine\nEOF\n";
    assert_eq!(undefined(src), one("UndefinedVar", 2, "Usage of undefined variable '$nope'"));
    assert!(undefined("FROM alpine\n# check=skip=UndefinedVar\nWORKDIR $nope\n").is_empty());
}

#[test]
fn undefined_var_skips_stages_whose_start_is_unknown() {
    let df = parse("FROM alpine AS a\nWORKDIR $X\nFROM a\nUSER $Y\nFROM scratch\nUSER $Z\n", "Dockerfile").unwrap();
    let bases = Bases { stages: (0..3).collect(), ..Default::default() };
    let found: Vec<String> =
        check_stages(&df, &Inputs::default(), &bases).unwrap().warnings.into_iter().map(|w| w.message).collect();
    // (WorkdirRelativePath stays quiet: `$X` may be absolute.)
    assert_eq!(found, ["Usage of undefined variable '$Z'"]);
    // The build's stage env (ENV pairs after every FROM) defines names too.
    let bases = Bases { stages: (0..3).collect(), stage_env: vec![("Z".into(), "1".into())], ..Default::default() };
    assert!(check_stages(&df, &Inputs::default(), &bases).unwrap().warnings.is_empty());
}

#[test]
fn stage_rules_judge_only_the_stages_built() {
    // As in BuildKit, dispatch-time rules see only the stages the target needs.
    let df = parse("FROM scratch AS a\nCMD x\nFROM scratch AS b\nCMD y\n", "Dockerfile").unwrap();
    let bases = Bases { stages: [1].into(), ..Default::default() };
    let found = check_stages(&df, &Inputs::default(), &bases).unwrap().warnings;
    assert_eq!(found.iter().map(|w| w.start_line).collect::<Vec<_>>(), [4]);
}

proptest::proptest! {
    #[test]
    fn checks_never_panic(
        text in r#"(FROM |from |RUN |COPY |ADD |ENV |ARG |EXPOSE |WORKDIR |CMD |LABEL |MAINTAINER |SHELL |ONBUILD |HEALTHCHECK |# check=|skip=all|error=true|--platform=|AS |as |\$|\{|\}|:|/|\[|\]|"|'|=| |\t|\n|\\\n|a|B|scratch|TARGETPLATFORM|<<EOF|EOF){0,40}"#
    ) {
        if let Ok(df) = parse(&text, "Dockerfile") {
            let inputs = Inputs { predefined: predefined(), ..Default::default() };
            let _ = check(&df, &inputs).map(|r| r.violation());
            let bases = Bases { stages: (0..df.instructions.len()).collect(), ..Default::default() };
            let _ = check_stages(&df, &inputs, &bases);
        }
    }
}

/// Distribution's reference grammar: `\w` in a tag is Go's, ASCII only, and a tag is at most 128 long.
#[test]
fn reference_validity_follows_the_distribution_grammar() {
    use super::from::is_valid_reference;
    for valid in ["busybox", "docker.io/library/busybox:1.36", "localhost:5000/a/b_c:v1.0-rc", "a:_x"] {
        assert!(is_valid_reference(valid), "{valid}");
    }
    let long_tag = format!("a:{}", "x".repeat(128));
    assert!(is_valid_reference(&long_tag));
    for invalid in ["Busybox", "a:", "a:é", "a::b", ""] {
        assert!(!is_valid_reference(invalid), "{invalid}");
    }
    assert!(!is_valid_reference(&format!("a:{}", "x".repeat(129))));
}
