//! kiln as the build pod: kiln's own image (built by kiln from the repository's Containerfile, without a CA
//! bundle) run by podman with default security, kiln as the container's command — as root, as OpenShift's
//! restricted SCC runs pods (an arbitrary uid with gid 0, no_new_privs, no /dev/fuse), as a user with a
//! sub-id range, and as each `kiln bake --emit --pod-security` profile asks (its emitted `securityContext`
//! translated to podman options). Each build inside pushes its image to the test registry, and that image
//! must hold the same files as the same build done on the host. The isolation line says once what each way
//! of running gets.

use std::path::{Path, PathBuf};

use crate::harness::pod::{Pod, tree, tree_diff, unpack_from_registry};
use crate::harness::{Kiln, Registry, Run, Workspace, busybox_workspace, skopeo_config, umoci_unpack};

/// Steps every namespaced way of running must build exactly as the host does: writes, a replaced file, a
/// deletion (whiteout), links, modes, a COPY, config; /proc and /dev used, not captured (chroot mode too,
/// where /dev/null may be a plain file the step writes); and no process
/// a step can see through /proc (the pod's own, where it is bound in) lets it into another root: the
/// kernel's ptrace rules keep a step out of kiln's processes and out of everything beyond its user namespace.
const STEPS: &str = "RUN echo hello > /hello.txt && mkdir -p /opt/app/bin && cp /bin/busybox /opt/app/bin/tool \\
 && chmod 0750 /opt/app/bin/tool
RUN rm /bin/vi && ln -s /hello.txt /opt/app/link && ln /hello.txt /opt/app/hard && mkdir -m 1777 /opt/app/tmp
COPY data.txt /opt/app/data.txt
RUN echo discarded > /dev/null && echo kept > /opt/app/kept
RUN id -u > /opt/app/uid && wc -c < /opt/app/data.txt > /opt/app/size && sed -i s/hello/bye/ /hello.txt
RUN test -r /proc/self/status && grep -q '^Pid:' /proc/self/status && echo ok > /dev/null && echo proc > /opt/app/proc
RUN touch /marker && for p in /proc/[0-9]*; do if ls $p/root/ >/dev/null 2>&1 && ! test -e $p/root/marker; then \\
 echo \"the root of $p is reachable: $(tr '\\0' ' ' < $p/cmdline)\"; exit 1; fi; done; rm /marker
ENV APP=1
WORKDIR /opt/app
";

/// The same without the instructions that use /proc or device nodes, which chroot mode cannot give.
fn steps_without_kernel_fs() -> String {
    let mut instructions: Vec<String> = Vec::new();
    for line in STEPS.lines() {
        match instructions.last_mut() {
            Some(last) if last.ends_with("\\\n") => last.push_str(&format!("{line}\n")),
            _ => instructions.push(format!("{line}\n")),
        }
    }
    instructions.into_iter().filter(|i| !i.contains("/proc")).collect()
}

/// Builds `steps` over a busybox base from the test registry on the host and in kiln's pod (run with
/// podman `options`), and checks that the two images hold the same files and config. Returns kiln's
/// stderr in the pod; `None` when the test is skipped.
fn builds_as_on_the_host(options: &[&str], steps: &str) -> Option<String> {
    let pod = Pod::start()?;
    let base = pod.registry.name("busybox:pod");
    Kiln::new().build(&busybox_workspace(), &base, &["--push", "--tls-verify=false"]);
    let ws = Workspace::new();
    ws.file("data.txt", "from the context\n").dockerfile(&format!("FROM {base}\n{steps}"));
    let host = Kiln::new();
    host.build(&ws, "app:host", &["--tls-verify=false"]);
    let (_keep_host, host_root) = umoci_unpack(host.store(), "localhost/app:host");

    let target = pod.registry.name("app:pod");
    let run = build_in(&pod, options, &ws, &["--tls-verify=false", "--push", "-t", &target]);
    assert_eq!(run.code, 0, "kiln failed in the pod ({options:?}):\n{}", run.stderr);
    let (_keep_pod, pod_root) = unpack_from_registry(&target);
    let host_tree = tree(&host_root);
    for (path, there) in [("/opt/app/data.txt", true), ("/opt/app/hard", true), ("/bin/vi", false)] {
        assert_eq!(host_tree.contains_key(path), there, "the host's build is the reference: {path}");
    }
    let diff = tree_diff(&host_tree, &tree(&pod_root));
    assert!(diff.is_empty(), "the pod ({options:?}) built other files than the host:\n{}", diff.join("\n"));
    let config = skopeo_config(&format!("docker://{target}"));
    assert_eq!(config["config"]["WorkingDir"], "/opt/app");
    assert!(config["config"]["Env"].as_array().is_some_and(|e| e.iter().any(|v| v == "APP=1")), "{config}");
    assert_eq!(run.stderr.matches("RUN isolation:").count(), 1, "said once:\n{}", run.stderr);
    Some(run.stderr)
}

/// `kiln build FLAGS /ctx` as the pod's command, with the workspace at /ctx and the store in /tmp.
fn build_in(pod: &Pod, options: &[&str], ws: &Workspace, flags: &[&str]) -> Run {
    let mut command = vec!["kiln", "--root", "/tmp/store", "build"];
    command.extend_from_slice(flags);
    command.push("/ctx");
    pod.run(options, ws.path(), &command)
}

fn isolation_line(stderr: &str) -> &str {
    stderr.lines().find(|l| l.starts_with("RUN isolation:")).unwrap_or_default()
}

#[test]
fn as_root_kiln_being_pid_1() {
    let Some(stderr) = builds_as_on_the_host(&[], STEPS) else { return };
    let line = isolation_line(&stderr);
    assert!(line.contains("rootless (root in a user namespace with all of its ids"), "{line}");
    assert!(line.contains("/proc bound from the pod"), "{line}");
}

/// What `kiln bake --emit job --pod-security PROFILE` gives the kiln container as its `securityContext`.
fn emitted_security_context(profile: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("app")).unwrap();
    std::fs::write(dir.path().join("app/Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(dir.path().join("kiln-bake.toml"), "[target.app]\ncontext = \"app\"\ntags = [\"r.example/app\"]\n")
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir.path())
        .args(["bake", "--emit", "job", "--kiln-image", "r.example/kiln:1", "--pod-security", profile])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job: serde_json::Value = yaml_serde::from_str(&String::from_utf8_lossy(&out.stdout)).expect("one Job");
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"].clone()
}

/// The podman options that run a container as `context` (a Kubernetes `securityContext`) asks, on a node
/// whose runtime default seccomp profile is containers-common's (CRI-O's; podman's own). Every field must
/// be translated: a setting the emitter adds and this does not know fails here, not in a cluster.
fn podman_options(context: &serde_json::Value) -> Vec<String> {
    let mut options = Vec::new();
    let mut opt = |a: &str, b: String| options.extend([a.to_string(), b]);
    // Where the pod names no uid, OpenShift assigns one of the namespace's range, with gid 0.
    let uid = context["runAsUser"].as_u64().unwrap_or(1_000_680_000);
    opt("--user", format!("{uid}:{}", context["runAsGroup"].as_u64().unwrap_or(0)));
    for (key, value) in context.as_object().expect("a securityContext") {
        match (key.as_str(), value) {
            ("runAsUser" | "runAsGroup", _) => {}
            ("runAsNonRoot", v) => assert!(v == true && uid != 0, "{context}"),
            ("allowPrivilegeEscalation", v) if v == false => opt("--security-opt", "no-new-privileges".into()),
            ("capabilities", v) if v == &serde_json::json!({ "drop": ["ALL"] }) => opt("--cap-drop", "ALL".into()),
            ("seccompProfile", v) => match (v["type"].as_str(), v["localhostProfile"].as_str()) {
                (Some("RuntimeDefault"), None) => {}
                // The nodes are to hold containers-common's profile under this name (README).
                (Some("Localhost"), Some("kiln/seccomp.json")) => {
                    opt("--security-opt", "seccomp=/usr/share/containers/seccomp.json".into())
                }
                (Some("Unconfined"), None) => opt("--security-opt", "seccomp=unconfined".into()),
                _ => panic!("seccompProfile {v} is not translated"),
            },
            ("appArmorProfile", v) if v["type"] == "Unconfined" => opt("--security-opt", "apparmor=unconfined".into()),
            _ => panic!("securityContext field {key}: {value} is not translated"),
        }
    }
    options
}

/// Builds as on the host in a pod run as `kiln bake --emit --pod-security PROFILE` says; the isolation line.
fn emitted_pod_builds_as_on_the_host(profile: &str) -> Option<String> {
    let options = podman_options(&emitted_security_context(profile));
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let stderr = builds_as_on_the_host(&options, STEPS)?;
    Some(isolation_line(&stderr).to_string())
}

#[test]
fn as_an_arbitrary_uid_of_group_0_without_privilege_escalation() {
    // OpenShift's restricted SCC: a uid from the project's range, no passwd entry, gid 0, no_new_privs, no
    // capabilities — what `kiln bake --emit` gives its pods by default.
    let Some(line) = emitted_pod_builds_as_on_the_host("openshift") else { return };
    assert!(line.contains("uid 1000680000 as root of a user namespace, no other id"), "{line}");
    assert!(line.contains("no range for uid 1000680000 in /etc/subuid"), "{line}");
    assert!(line.contains("/proc bound from the pod"), "{line}");
}

#[test]
fn as_bakes_kubernetes_profile_with_the_containers_common_seccomp_profile() {
    let Some(line) = emitted_pod_builds_as_on_the_host("kubernetes") else { return };
    assert!(line.contains("uid 1000680000 as root of a user namespace, no other id"), "{line}");
    assert!(line.contains("/proc bound from the pod"), "{line}");
    assert!(line.contains("the pod's host name (sethostname is refused here)"), "{line}");
}

#[test]
fn as_bakes_kubernetes_unconfined_profile() {
    let Some(line) = emitted_pod_builds_as_on_the_host("kubernetes-unconfined") else { return };
    assert!(line.contains("uid 1000680000 as root of a user namespace, no other id"), "{line}");
    assert!(line.contains("/proc bound from the pod"), "{line}");
    // Without a seccomp profile, a step may name its own uts namespace.
    assert!(!line.contains("host name"), "{line}");
}

#[test]
fn as_a_user_with_a_subuid_range() {
    let Some(stderr) = builds_as_on_the_host(&["--user", "1000:1000"], STEPS) else { return };
    let line = isolation_line(&stderr);
    assert!(line.contains("uid 1000 as root of a user namespace, with sub-ids 100000-165535"), "{line}");
}

#[test]
fn as_a_user_with_a_subuid_range_without_privilege_escalation() {
    let options = ["--user", "1000:1000", "--security-opt", "no-new-privileges"];
    let Some(stderr) = builds_as_on_the_host(&options, STEPS) else { return };
    let line = isolation_line(&stderr);
    assert!(line.contains("no other id (newuidmap failed"), "{line}");
    assert!(line.contains("no_new_privs is set"), "says why the range is not used: {line}");
}

#[test]
fn with_an_unmasked_proc_the_step_gets_a_fresh_one() {
    // podman's unmask, Kubernetes' `procMount: Unmasked`.
    let options = ["--user", "1000680000:0", "--security-opt", "unmask=/proc/*"];
    let Some(stderr) = builds_as_on_the_host(&options, STEPS) else { return };
    let line = isolation_line(&stderr);
    assert!(line.contains("rootless (uid 1000680000") && !line.contains("/proc bound"), "{line}");
}

#[test]
fn with_cap_sys_admin_root_keeps_its_own_namespaces() {
    let Some(stderr) = builds_as_on_the_host(&["--cap-add", "SYS_ADMIN"], STEPS) else { return };
    let line = isolation_line(&stderr);
    assert!(
        line.contains("root (mount, pid, uts and ipc namespaces), overlay rootfs") && !line.contains("fallbacks"),
        "{line}"
    );
}

#[test]
fn root_with_every_capability_dropped_but_chroot_uses_chroot_mode() {
    // Without CAP_SETFCAP root cannot map itself into a user namespace, nor drop bounding capabilities.
    let options = ["--cap-drop", "ALL", "--cap-add", "SYS_CHROOT"];
    let Some(stderr) = builds_as_on_the_host(&options, &steps_without_kernel_fs()) else { return };
    let line = isolation_line(&stderr);
    assert!(line.contains("chroot (no namespaces") && line.contains("CAP_SETFCAP"), "{line}");
}

#[test]
fn where_user_namespaces_are_refused_root_falls_back_to_chroot_mode() {
    let dir = tempfile::tempdir().unwrap();
    let profile = seccomp_refusing_namespaces(dir.path());
    let option = format!("seccomp={}", profile.display());
    let Some(stderr) = builds_as_on_the_host(&["--security-opt", &option], &steps_without_kernel_fs()) else {
        return;
    };
    let line = isolation_line(&stderr);
    assert!(line.contains("chroot (no namespaces"), "{line}");
    assert!(line.contains("seccomp"), "says what refused the namespaces: {line}");
}

#[test]
fn where_nothing_can_isolate_the_error_says_what_is_missing() {
    let Some(pod) = Pod::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let option = format!("seccomp={}", seccomp_refusing_namespaces(dir.path()).display());
    let ws = Workspace::new();
    ws.dockerfile("FROM scratch\nCOPY Dockerfile /\nRUN true\n");
    let run = build_in(&pod, &["--user", "1000680000:0", "--security-opt", &option], &ws, &["-t", "x"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("/ctx/Dockerfile:3"), "{}", run.stderr);
    assert!(run.stderr.contains("seccomp") && run.stderr.contains("unshare(CLONE_NEWUSER)"), "{}", run.stderr);
    assert!(run.stderr.contains("CAP_SYS_CHROOT"), "{}", run.stderr);
}

#[test]
fn without_a_ca_bundle_a_tls_registry_takes_ca_file_and_says_so_without_it() {
    let Some(pod) = Pod::start() else { return };
    let Some(tls) = Registry::with_tls() else { return };
    let ca = tls.ca.clone().expect("the registry's CA");
    let ca_flag = format!("--ca-file={}", ca.display());
    let base = tls.name("busybox:pod");
    Kiln::new().build(&busybox_workspace(), &base, &["--push", &ca_flag]);
    let ws = Workspace::new();
    ws.dockerfile(&format!("FROM {base}\nRUN echo tls > /tls.txt\n"));
    let target = tls.name("app:tls");

    let run = build_in(&pod, &[], &ws, &["--push", "-t", &target]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("no CA certificate") && run.stderr.contains("--ca-file"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);

    let certs = format!("{}:/certs:ro", tls.cert_dir().display());
    let run = build_in(&pod, &["-v", &certs], &ws, &["--ca-file=/certs/ca.crt", "--push", "-t", &target]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let config = skopeo_config_tls(&target, &ca);
    assert_eq!(config["rootfs"]["diff_ids"].as_array().map(Vec::len), Some(2), "base + RUN layer: {config}");
}

/// The config of `target` in a TLS registry whose CA is `ca`.
fn skopeo_config_tls(target: &str, ca: &Path) -> serde_json::Value {
    let cert_dir = ca.parent().expect("cert dir").to_string_lossy().into_owned();
    let reference = format!("docker://{target}");
    let text = crate::harness::tool("skopeo", &["inspect", "--cert-dir", &cert_dir, "--config", "--raw", &reference]);
    serde_json::from_str(&text).expect("config JSON")
}

/// A seccomp profile like Docker's and containerd's default (Kubernetes' `RuntimeDefault` on containerd):
/// podman's own, except that creating namespaces and mounting need CAP_SYS_ADMIN, which a pod lacks.
fn seccomp_refusing_namespaces(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string("/usr/share/containers/seccomp.json")
        .expect("podman's seccomp profile (containers-common, installed with podman)");
    let mut profile: serde_json::Value = serde_json::from_str(&text).expect("seccomp JSON");
    let refused = ["unshare", "clone", "clone3", "mount", "umount", "umount2", "pivot_root"];
    let rules = profile["syscalls"].as_array_mut().expect("syscalls");
    for rule in rules.iter_mut() {
        if let Some(names) = rule["names"].as_array_mut() {
            names.retain(|n| !refused.contains(&n.as_str().unwrap_or_default()));
        }
    }
    rules.retain(|rule| rule["names"].as_array().is_some_and(|n| !n.is_empty()));
    // clone without any CLONE_NEW* flag; clone3's flags cannot be filtered, so it reports ENOSYS (libc then
    // uses clone), as Docker's profile does.
    rules.push(serde_json::json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": 0x7E02_0000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
    rules.push(serde_json::json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}));
    rules.push(serde_json::json!({"names": ["unshare", "mount", "umount", "umount2", "pivot_root"],
        "action": "SCMP_ACT_ERRNO", "errnoRet": 1}));
    let path = dir.join("seccomp.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&profile).expect("JSON")).expect("write the profile");
    path
}
