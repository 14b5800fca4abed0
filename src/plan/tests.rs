//! Planning rules, each as a small Dockerfile and what the plan must say about it.

use std::collections::BTreeMap;

use super::*;
use crate::dockerfile;

fn plan_of(src: &str, opts: PlanOptions) -> Result<Plan, PlanError> {
    let df = dockerfile::parse(src, "Dockerfile").expect("test Dockerfile parses");
    plan(&df.instructions, df.escape, "Dockerfile", &opts)
}

fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn steps(plan: &Plan, stage: usize, base: &BaseConfig) -> Vec<ResolvedStep> {
    let mut scope = StageScope::new(plan, stage, base);
    plan.stages[stage].instructions.iter().map(|i| scope.resolve(i).expect("step resolves")).collect()
}

const MULTI: &str = "\
FROM busybox AS base
FROM base AS build
COPY --from=base /a /b
FROM scratch AS test
COPY --from=1 /x /y
FROM alpine AS unrelated
FROM scratch
COPY --from=build /b /c
";

#[test]
fn only_needed_stages_are_built_dependencies_first() {
    let p = plan_of(MULTI, PlanOptions::default()).unwrap();
    assert_eq!(p.target, 4);
    assert_eq!(p.order, [0, 1, 4]);
    assert_eq!(p.stages[1].base, Base::Stage(0));
    assert!(p.stages[2].deps.contains(&1));
    let p = plan_of(MULTI, PlanOptions { target: Some("TEST".into()), ..Default::default() }).unwrap();
    assert_eq!(p.order, [0, 1, 2]);
}

#[test]
fn independent_stages_share_a_level() {
    let p = plan_of(
        "FROM a AS x\nFROM b AS y\nFROM scratch\nCOPY --from=x / /\nCOPY --from=y / /\n",
        PlanOptions::default(),
    )
    .unwrap();
    assert_eq!((p.stages[0].level, p.stages[1].level, p.stages[2].level), (0, 0, 1));
    assert!(render_dry_run(&p).unwrap().contains("parallel: x, y"));
}

/// BuildKit warns about a stage name used twice (DuplicateStageName) and builds: FROM means the latest stage
/// of that name so far, `--from` and `--target` the last in the file (testDuplicateStageName builds).
#[test]
fn a_name_used_twice_means_its_latest_stage() {
    let src = "FROM a AS b\nFROM b AS c\nFROM x AS b\nFROM scratch\nCOPY --from=b / /\n";
    let p = plan_of(src, PlanOptions::default()).unwrap();
    assert_eq!(p.stages[1].base, Base::Stage(0), "FROM resolves as the file is read");
    assert!(p.stages[3].deps.contains(&2) && !p.stages[3].deps.contains(&0), "--from: the last b");
    let p = plan_of(src, PlanOptions { target: Some("b".into()), ..Default::default() }).unwrap();
    assert_eq!(p.target, 2);
    let e = plan_of("FROM a AS b\nFROM scratch AS c\nCOPY --from=b / /\nFROM y AS b\n", PlanOptions::default())
        .unwrap_err();
    assert!(e.to_string().contains("needs to be defined before current stage"), "{e}");
}

#[test]
fn unknown_target_names_the_stages() {
    let e = plan_of(MULTI, PlanOptions { target: Some("nope".into()), ..Default::default() }).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dockerfile:0: target stage \"nope\" could not be found (stages: base, build, test, unrelated, 4)"
    );
}

#[test]
fn global_args_expand_from_lines_and_need_redeclaring_inside() {
    let src = "ARG TAG=1.0\nARG IMG=busybox\nFROM $IMG:$TAG\nRUN echo $TAG\nARG TAG\nENV T=$TAG\n";
    let p = plan_of(src, PlanOptions { build_args: args(&[("TAG", "2.0")]), ..Default::default() }).unwrap();
    assert_eq!(p.stages[0].base, Base::Image("busybox:2.0".into()));
    let s = steps(&p, 0, &BaseConfig::default());
    assert_eq!(s[2], ResolvedStep::Env(vec![("T".into(), "2.0".into())]));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn env_wins_over_arg_and_args_stay_out_of_the_image() {
    let src = "FROM x\nARG V=arg\nENV V=env\nARG V=again\nENV W=$V\n";
    let p = plan_of(src, PlanOptions::default()).unwrap();
    let mut scope = StageScope::new(&p, 0, &BaseConfig::default());
    let mut last = None;
    for i in &p.stages[0].instructions {
        last = Some(scope.resolve(i).unwrap());
    }
    assert_eq!(last.unwrap(), ResolvedStep::Env(vec![("W".into(), "env".into())]));
    assert_eq!(scope.image_env(), [("V".to_string(), "env".to_string()), ("W".to_string(), "env".to_string())]);
    let run_env = scope.run_env();
    assert_eq!(run_env.iter().filter(|(k, _)| k == "V").count(), 1);
}

#[test]
fn env_sees_the_scope_before_its_own_line() {
    let p = plan_of("FROM x\nENV A=1\nENV A=2 B=$A\n", PlanOptions::default()).unwrap();
    let s = steps(&p, 0, &BaseConfig::default());
    assert_eq!(s[1], ResolvedStep::Env(vec![("A".into(), "2".into()), ("B".into(), "1".into())]));
}

#[test]
fn base_env_and_workdir_carry_into_the_stage() {
    let base = BaseConfig {
        env: vec![("PATH".into(), "/usr/bin".into())],
        workdir: Some("/app".into()),
        ..Default::default()
    };
    let p = plan_of("FROM x\nENV PATH=$PATH:/opt/bin\nWORKDIR sub/../src\n", PlanOptions::default()).unwrap();
    let s = steps(&p, 0, &base);
    assert_eq!(s[0], ResolvedStep::Env(vec![("PATH".into(), "/usr/bin:/opt/bin".into())]));
    assert_eq!(s[1], ResolvedStep::Workdir("/app/src".into()));
}

#[test]
fn proxy_args_need_no_declaration_and_unused_args_are_warned() {
    let opts = PlanOptions { build_args: args(&[("http_proxy", "http://p"), ("UNUSED", "1")]), ..Default::default() };
    let p = plan_of("FROM x\nRUN true\n", opts).unwrap();
    let scope = StageScope::new(&p, 0, &BaseConfig::default());
    // Proxies reach RUN at run time, in both spellings, and never the cache key (the resolved step).
    assert!(!scope.run_env().iter().any(|(k, _)| k.eq_ignore_ascii_case("http_proxy")));
    assert!(predefined::proxy_env(&p.build_args).contains(&("HTTP_PROXY".into(), "http://p".into())));
    assert!(scope.image_env().is_empty());
    assert_eq!(p.warnings, ["one or more build-args [UNUSED] were not consumed"]);
}

/// BuildKit's testPlatformArgsImplicit, testTargetStageNameArg.
#[test]
fn platform_args_and_the_target_stage_are_predefined() {
    let src = "FROM scratch AS build-linux\nFROM build-${TARGETOS} AS final\nARG TARGETSTAGE TARGETARCH\n";
    let p = plan_of(src, PlanOptions::default()).unwrap();
    assert_eq!(p.stages[1].base, Base::Stage(0));
    let s = steps(&p, 1, &BaseConfig::default());
    let ResolvedStep::Arg(values) = &s[0] else { panic!("not ARG") };
    assert_eq!(values[0], ("TARGETSTAGE".to_string(), Some("final".to_string())));
    assert_eq!(values[1].1.as_deref(), Some(crate::image::Platform::host().architecture.as_str()));
    let opts = PlanOptions { build_args: args(&[("TARGETOS", "freebsd")]), ..Default::default() };
    let p = plan_of(src, opts).unwrap();
    assert_eq!(p.stages[1].base, Base::Image("build-freebsd".into()), "a build argument overrides it");
}

#[test]
fn source_date_epoch_comes_from_a_build_arg_or_a_global_default() {
    let src = "ARG SOURCE_DATE_EPOCH=1700000001\nFROM x\n";
    assert_eq!(plan_of(src, PlanOptions::default()).unwrap().source_date_epoch(), Some(1_700_000_001));
    let opts = PlanOptions { build_args: args(&[("SOURCE_DATE_EPOCH", "1700000002")]), ..Default::default() };
    assert_eq!(plan_of(src, opts).unwrap().source_date_epoch(), Some(1_700_000_002));
    let e = plan_of("ARG SOURCE_DATE_EPOCH=soon\nFROM x\n", PlanOptions::default()).unwrap_err();
    assert!(e.to_string().contains("invalid SOURCE_DATE_EPOCH: soon"), "{e}");
}

/// BuildKit's testExportedHistoryFlattenArgs, and ARGs staying in scope in a stage built on a stage.
#[test]
fn run_steps_carry_the_declared_args_for_history() {
    let p = plan_of("FROM x\nARG foo=bar\nARG bar=123\nARG foo=bar2\nRUN ls\n", PlanOptions::default()).unwrap();
    let mut scope = StageScope::new(&p, 0, &BaseConfig::default());
    let steps: Vec<ResolvedStep> = p.stages[0].instructions.iter().map(|i| scope.resolve(i).unwrap()).collect();
    let ResolvedStep::Run { args, .. } = &steps[3] else { panic!("not RUN") };
    assert_eq!(args, &[("foo".to_string(), "bar2".to_string()), ("bar".to_string(), "123".to_string())]);
    let inherited = BaseConfig { args: scope.declared_args(), ..Default::default() };
    let child = StageScope::new(&p, 0, &inherited);
    assert!(child.run_env().contains(&("foo".into(), "bar2".into())));
}

/// BuildKit's testRunSecurityInsecure, where the entitlement is not granted (kiln grants none).
#[test]
fn insecure_steps_are_refused() {
    let p =
        plan_of("FROM x\nRUN --security=insecure true\nRUN --security=loose true\n", PlanOptions::default()).unwrap();
    let mut scope = StageScope::new(&p, 0, &BaseConfig::default());
    let ins = &p.stages[0].instructions;
    assert!(scope.resolve(&ins[0]).unwrap_err().to_string().contains("entitlement security.insecure is not allowed"));
    assert!(scope.resolve(&ins[1]).unwrap_err().to_string().contains("security \"loose\" is not valid"));
}

/// BuildKit's testMountArg and testMountFromError.
#[test]
fn mount_options_expand_but_from_does_not() {
    let src = "FROM x\nARG T=cache P=/c\nRUN --mount=type=$T,target=$P true\n";
    let p = plan_of(src, PlanOptions::default()).unwrap();
    let s = steps(&p, 0, &BaseConfig::default());
    let ResolvedStep::Run { mounts, .. } = &s[1] else { panic!("not RUN") };
    assert_eq!(
        (mounts[0].kind, mounts[0].target.as_str(), mounts[0].id.as_deref()),
        (RunMountKind::Cache, "/c", Some("/c"))
    );
    let e = plan_of("FROM x AS t\nFROM x\nENV s=t\nRUN --mount=from=$s,target=/t true\n", PlanOptions::default())
        .unwrap_err();
    assert!(e.to_string().contains("'from' doesn't support variable expansion"), "{e}");
}

/// BuildKit's testOnBuildInheritedStageWithFrom: a base stage's trigger reads from another stage.
#[test]
fn triggers_of_a_base_stage_add_dependencies() {
    let src = "FROM x AS src\nFROM x AS base\nONBUILD COPY --from=src /a /b\nFROM base AS mid\nFROM scratch\nCOPY --from=mid /b /\n";
    let p = plan_of(src, PlanOptions::default()).unwrap();
    assert!(p.stages[2].deps.contains(&0));
    assert_eq!(p.order, [0, 1, 2, 3]);
}

#[test]
fn from_override_replaces_the_first_base() {
    let opts = PlanOptions { from_override: Some("registry.local/ubi9:latest".into()), ..Default::default() };
    let p = plan_of("FROM busybox\nFROM scratch\n", opts).unwrap();
    assert_eq!(p.stages[0].base, Base::Image("registry.local/ubi9:latest".into()));
    assert_eq!(p.stages[1].base, Base::Scratch);
}

#[test]
fn from_override_with_the_last_stage_rule_replaces_the_last_base() {
    let opts = PlanOptions {
        from_override: Some("registry.local/ubi9:latest".into()),
        from_rule: FromRule::Last,
        ..Default::default()
    };
    let p = plan_of("FROM busybox AS build\nFROM build AS final\nCOPY --from=build /a /b\n", opts).unwrap();
    assert_eq!(p.stages[0].base, Base::Image("busybox".into()));
    assert_eq!(p.stages[1].base, Base::Image("registry.local/ubi9:latest".into()));
    // The stage is still needed through COPY --from, no longer as the base.
    assert_eq!(p.order, [0, 1]);
}

#[test]
fn stage_env_is_set_after_every_from_and_expands() {
    let opts = PlanOptions { stage_env: vec![("A".into(), "x \"q\" $HOME".into())], ..Default::default() };
    let p = plan_of("FROM busybox AS one\nFROM scratch\nENV B=2\n", opts).unwrap();
    for stage in 0..2 {
        let base = BaseConfig { env: vec![("HOME".into(), "/root".into())], ..Default::default() };
        let s = steps(&p, stage, &base);
        assert_eq!(s[0], ResolvedStep::Env(vec![("A".into(), "x \"q\" /root".into())]), "stage {stage}");
    }
    assert_eq!(p.stages[1].instructions.len(), 2);
}

#[test]
fn copy_arguments_expand_and_chmod_is_checked() {
    let src = "FROM x AS a\nFROM x\nARG D=/dst M=go-w\nCOPY --from=a --chown=1:2 --chmod=$M src* ${D}/\nCOPY --chmod=999 a b\n";
    let p = plan_of(src, PlanOptions::default()).unwrap();
    let mut scope = StageScope::new(&p, 1, &BaseConfig::default());
    let ins = &p.stages[1].instructions;
    scope.resolve(&ins[0]).unwrap();
    let ResolvedStep::Copy(c) = scope.resolve(&ins[1]).unwrap() else { panic!("not COPY") };
    assert_eq!(c.from, Some(CopyFrom::Stage(0)));
    assert_eq!((c.sources.clone(), c.dest.as_str()), (vec!["src*".to_string()], "/dst/"));
    assert_eq!(c.chmod.map(|m| (m.text.clone(), m.apply(0o666, false))), Some(("go-w".to_string(), 0o644)));
    let e = scope.resolve(&ins[2]).unwrap_err();
    assert!(
        e.to_string().ends_with("invalid chmod parameter: '999'. it should be octal string and between 0 and 07777"),
        "{e}"
    );
}

/// BuildKit's testAddChecksum (NonHTTPSource).
#[test]
fn add_checksum_needs_one_remote_source() {
    let sum = format!("sha256:{}", "a".repeat(64));
    let src = format!("FROM x\nADD --checksum={sum} foo /f\nADD --checksum={sum} http://h/a http://h/b /d/\n");
    let p = plan_of(&src, PlanOptions::default()).unwrap();
    let mut scope = StageScope::new(&p, 0, &BaseConfig::default());
    let ins = &p.stages[0].instructions;
    assert!(scope.resolve(&ins[0]).unwrap_err().to_string().contains("checksum requires HTTP(S) or Git sources"));
    assert!(
        scope.resolve(&ins[1]).unwrap_err().to_string().contains("checksum can't be specified for multiple sources")
    );
}

/// BuildKit's testDockerfileCopyFromArgs.
#[test]
fn copy_from_refuses_variables() {
    let e = plan_of("FROM x AS a\nFROM x\nARG S=a\nCOPY --from=$S a b\n", PlanOptions::default()).unwrap_err();
    assert!(e.to_string().contains("variable expansion is not supported for --from"), "{e}");
}

#[test]
fn bad_stage_references_are_errors_with_lines() {
    let e = plan_of("FROM x\nCOPY --from=1 a b\nFROM y\n", PlanOptions::default()).unwrap_err();
    assert!(e.to_string().starts_with("Dockerfile:2: invalid stage index 1"), "{e}");
    let e = plan_of("FROM x\nCOPY --from=later a b\nFROM y AS later\n", PlanOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("cannot copy from stage \"later\", it needs to be defined before current stage"),
        "{e}"
    );
    let e = plan_of("RUN x\nFROM y\n", PlanOptions::default()).unwrap_err();
    assert_eq!(e.to_string(), "Dockerfile:1: RUN before the first FROM: only ARG may come before FROM");
}

#[test]
fn unknown_from_names_are_images() {
    let p = plan_of("FROM x\nCOPY --from=nginx:1.25 /etc/nginx /n\n", PlanOptions::default()).unwrap();
    let s = steps(&p, 0, &BaseConfig::default());
    let ResolvedStep::Copy(c) = &s[0] else { panic!("not COPY") };
    assert_eq!(c.from, Some(CopyFrom::Image("nginx:1.25".into())));
}

#[test]
fn heredoc_sources_expand_unless_quoted() {
    let src = "FROM x\nARG N=kiln\nCOPY <<A <<'B' /d/\nhello $N\nA\nraw $N\nB\n";
    let p = plan_of(src, PlanOptions::default()).unwrap();
    let s = steps(&p, 0, &BaseConfig::default());
    let ResolvedStep::Copy(c) = &s[1] else { panic!("not COPY") };
    assert_eq!(c.sources, ["A", "B"]);
    assert_eq!(c.heredocs[0].content, "hello kiln\n");
    assert_eq!(c.heredocs[1].content, "raw $N\n");
}

#[test]
fn run_mounts_and_shell_are_resolved() {
    let src = "FROM x\nSHELL [\"/bin/bash\", \"-c\"]\nRUN --mount=type=cache,target=/c echo $HOME\n";
    let p = plan_of(src, PlanOptions::default()).unwrap();
    let s = steps(&p, 0, &BaseConfig::default());
    let ResolvedStep::Run { cmd, shell, mounts, .. } = &s[1] else { panic!("not RUN") };
    assert_eq!(cmd, &CommandLine::Shell("echo $HOME".into()));
    assert_eq!(shell, &["/bin/bash", "-c"]);
    assert_eq!(mounts[0].kind, RunMountKind::Cache);
}

use crate::dockerfile::instruction::CommandLine;
