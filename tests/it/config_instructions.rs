//! Every config instruction, as the image config says it (read back by skopeo from the store).

use crate::harness::{Kiln, Workspace, require, skopeo_config};

#[test]
fn config_instructions_land_in_the_config_as_buildkit_writes_them() {
    if !require("skopeo") {
        return;
    }
    let ws = Workspace::new();
    ws.dockerfile(
        r#"FROM scratch AS base
ENV A=1 B="two words"
CMD ["base-cmd"]
LABEL a=1
FROM base
ARG V=3
ENV C=$A-$V
LABEL "b c"="d e" version=$V
EXPOSE 80 53/udp 8000-8001
USER 1000:1000
VOLUME /data /cache
WORKDIR /app
WORKDIR sub
STOPSIGNAL SIGTERM
SHELL ["/bin/bash", "-eu", "-c"]
HEALTHCHECK --interval=5s --retries=3 CMD curl -f http://localhost/
ONBUILD RUN echo child
ENTRYPOINT run-it
MAINTAINER someone@example.com
"#,
    );
    let kiln = Kiln::new();
    let id = kiln.build(&ws, "cfg:1", &["--label", "extra=yes"]);
    assert_eq!(id.len(), 64, "image ID is the last line: {id}");
    let c = skopeo_config(&kiln.oci_ref("localhost/cfg:1"));
    let cfg = &c["config"];
    // FROM scratch starts with BuildKit's default PATH.
    let path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    assert_eq!(cfg["Env"], serde_json::json!([path, "A=1", "B=two words", "C=1-3"]));
    assert_eq!(cfg["Labels"], serde_json::json!({"a": "1", "b c": "d e", "version": "3", "extra": "yes"}));
    assert_eq!(cfg["ExposedPorts"], serde_json::json!({"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}));
    assert_eq!(cfg["User"], "1000:1000");
    assert_eq!(cfg["Volumes"], serde_json::json!({"/data": {}, "/cache": {}}));
    assert_eq!(cfg["WorkingDir"], "/app/sub");
    assert_eq!(cfg["StopSignal"], "SIGTERM");
    assert_eq!(cfg["Shell"], serde_json::json!(["/bin/bash", "-eu", "-c"]));
    assert_eq!(cfg["Healthcheck"]["Test"], serde_json::json!(["CMD-SHELL", "curl -f http://localhost/"]));
    assert_eq!(cfg["Healthcheck"]["Interval"], 5_000_000_000i64);
    assert_eq!(cfg["OnBuild"], serde_json::json!(["RUN echo child"]));
    // Shell-form ENTRYPOINT goes through the SHELL in force, and resets the CMD inherited from `base`.
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/bash", "-eu", "-c", "run-it"]));
    assert!(cfg.get("Cmd").is_none(), "inherited CMD must be reset by ENTRYPOINT: {cfg}");
    assert_eq!(c["author"], "someone@example.com");
    let history = c["history"].as_array().unwrap();
    // History as BuildKit writes it: the resolved instruction, not the line as written.
    assert!(history.iter().any(|h| h["created_by"] == "ENV A=1 B=two words" && h["empty_layer"] == true));
    assert!(history.iter().any(|h| h["created_by"] == "EXPOSE [53/udp 80/tcp 8000/tcp 8001/tcp]"));
    let workdir_layers =
        history.iter().filter(|h| h["created_by"].as_str().unwrap_or("").starts_with("WORKDIR")).count();
    assert_eq!(workdir_layers, 2);
    assert_eq!(c["rootfs"]["diff_ids"].as_array().unwrap().len(), 2, "one layer per WORKDIR that created directories");
}

#[test]
fn cmd_set_in_the_same_stage_survives_entrypoint() {
    if !require("skopeo") {
        return;
    }
    let ws = Workspace::new();
    ws.dockerfile("FROM scratch\nCMD [\"a\"]\nENTRYPOINT [\"e\"]\n");
    let kiln = Kiln::new();
    kiln.build(&ws, "cmd:1", &[]);
    let c = skopeo_config(&kiln.oci_ref("localhost/cmd:1"));
    assert_eq!(c["config"]["Cmd"], serde_json::json!(["a"]));
}

#[test]
fn onbuild_triggers_run_in_the_child_and_are_not_inherited() {
    if !require("skopeo") || !require("umoci") {
        return;
    }
    let kiln = Kiln::new();
    let base = Workspace::new();
    base.dockerfile("FROM scratch\nONBUILD COPY app.txt /app/\n");
    kiln.build(&base, "onbuild-base:1", &[]);
    let child = Workspace::new();
    child.file("app.txt", "from the child context").dockerfile("FROM localhost/onbuild-base:1\nLABEL child=1\n");
    kiln.build(&child, "onbuild-child:1", &[]);
    let c = skopeo_config(&kiln.oci_ref("localhost/onbuild-child:1"));
    assert!(c["config"].get("OnBuild").is_none_or(|v| v.is_null() || v.as_array().is_some_and(|a| a.is_empty())));
    let (_keep, rootfs) = crate::harness::umoci_unpack(kiln.store(), "localhost/onbuild-child:1");
    assert_eq!(std::fs::read_to_string(rootfs.join("app/app.txt")).unwrap(), "from the child context");
}

#[test]
fn dry_run_prints_the_resolved_plan() {
    let ws = Workspace::new();
    ws.dockerfile(
        "ARG TAG=1\nFROM busybox:$TAG AS build\nARG TAG\nENV X=$TAG\nFROM scratch\nCOPY --from=build /x /y\n",
    );
    let out = Kiln::new().ok(&["build", "--dry-run", "--build-arg", "TAG=2", &ws.path().to_string_lossy()]);
    assert!(out.contains("FROM image busybox:2"), "{out}");
    assert!(out.contains("ENV X=\"2\""), "{out}");
    assert!(out.contains("depends on: build"), "{out}");
}
