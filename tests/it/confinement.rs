//! The attacks of issue 14, as a hostile Dockerfile, context or base image would try them: reading or
//! writing the host through symlinks. A marker file that exists only on the host (unique content, in a
//! world-writable directory outside every context, so that nothing but confinement stands in the way) must
//! never reach an image, and nothing may be created beside it. Root, rootless and chroot mode wherever a
//! RUN is involved; relative paths; secrets that must never reach a disk.

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::harness::rootless;
use crate::harness::{
    Kiln, Registry, Workspace, busybox_rootfs, busybox_workspace, ci, processes_with_cmdline, require, tool,
    umoci_unpack, wait_for,
};

/// A directory on the host holding `secret`, whose content exists nowhere else.
struct HostMarker {
    dir: tempfile::TempDir,
    content: String,
}

impl HostMarker {
    fn new() -> HostMarker {
        let dir = tempfile::Builder::new().prefix("kiln-host-marker-").tempdir().expect("temp dir");
        let content =
            format!("host-only-{}-{}", std::process::id(), std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos());
        std::fs::write(dir.path().join("secret"), &content).unwrap();
        // Readable and writable by anyone: only confinement keeps a rootless build out.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(dir.path().join("secret"), std::fs::Permissions::from_mode(0o644)).unwrap();
        HostMarker { dir, content }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn secret(&self) -> PathBuf {
        self.dir.path().join("secret")
    }

    /// The directory holds only `secret`, unchanged, with no new link to it.
    fn assert_untouched(&self) {
        let names: Vec<String> = std::fs::read_dir(self.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["secret"], "nothing was created on the host");
        assert_eq!(std::fs::read_to_string(self.secret()).unwrap(), self.content, "the host file is unchanged");
        assert_eq!(std::fs::metadata(self.secret()).unwrap().nlink(), 1, "no hard link to the host file");
    }

    /// Whether the marker's content is anywhere in `image`'s filesystem (unpacked by umoci, searched by grep;
    /// grep -r does not follow symlinks).
    fn leaked_into(&self, kiln: &Kiln, image: &str) -> bool {
        let (_keep, rootfs) = umoci_unpack(kiln.store(), image);
        let found = std::process::Command::new("grep").args(["-rqF", &self.content]).arg(&rootfs).status().unwrap();
        found.success()
    }
}

fn is_root() -> bool {
    tool("id", &["-u"]).trim() == "0"
}

/// The busybox base image in `kiln`'s store.
fn base(kiln: &Kiln) {
    let ws = busybox_workspace();
    rootless::give(ws.path());
    kiln.build(&ws, "busybox:test", &[]);
}

/// A workspace the kiln under test (perhaps another user) can read.
fn workspace(dockerfile: &str) -> Workspace {
    let ws = Workspace::new();
    ws.dockerfile(dockerfile);
    rootless::give(ws.path());
    ws
}

fn build(kiln: &Kiln, ws: &Workspace, tag: &str, extra: &[&str]) -> crate::harness::Run {
    let ctx = ws.path().to_string_lossy().into_owned();
    let mut args = vec!["build", "-t", tag];
    args.extend_from_slice(extra);
    args.push(&ctx);
    kiln.run(&args)
}

fn fails_with(kiln: &Kiln, ws: &Workspace, tag: &str, expected: &str) {
    let run = build(kiln, ws, tag, &[]);
    assert_ne!(run.code, 0, "{tag} must fail\n{}", run.stderr);
    assert!(run.stderr.contains(expected), "{tag}: expected {expected:?} in:\n{}", run.stderr);
}

/// kiln in a mode, or `None` (skipped with a message; a failure under CI) when this machine cannot have it.
fn kiln_in(mode: &str) -> Option<Kiln> {
    match mode {
        "root" => Some(Kiln::new()),
        "rootless" => rootless::kiln(),
        _ => {
            if !is_root() || !require("setpriv") {
                assert!(!ci(), "CI runs as root: chroot mode must be tested there");
                eprintln!("skipping: imitating a pod without mount rights takes root (setpriv)");
                return None;
            }
            // Without mount rights, root would still get a user namespace (rootless mode): ask for chroot.
            Some(Kiln::without_mount_rights().with_env("KILN_ISOLATION", "chroot"))
        }
    }
}

#[test]
fn context_links_to_host_files_and_directories_resolve_inside_the_context() {
    for mode in ["root", "rootless"] {
        let Some(kiln) = kiln_in(mode) else { continue };
        if !require("umoci") {
            return;
        }
        let host = HostMarker::new();
        let ws = workspace("FROM scratch\nCOPY link /x\n");
        ws.file("ok.txt", "ok");
        symlink(host.secret(), ws.path().join("link")).unwrap();
        symlink(host.dir(), ws.path().join("linkdir")).unwrap();
        fails_with(&kiln, &ws, "ctx:1", "link: not found in the build context");
        ws.dockerfile("FROM scratch\nCOPY linkdir/secret /x\n");
        fails_with(&kiln, &ws, "ctx:2", "linkdir/secret: not found in the build context");
        ws.dockerfile("FROM scratch\nADD link /x\n");
        fails_with(&kiln, &ws, "ctx:3", "not found in the build context");
        ws.dockerfile("FROM scratch\nCOPY lin* /glob/\n");
        fails_with(&kiln, &ws, "ctx:4", "not found in the build context");
        // Copied as a whole, the links are links in the image and nothing of the host comes along.
        ws.dockerfile("FROM scratch\nCOPY . /ctx/\n");
        assert_eq!(build(&kiln, &ws, "ctx:5", &[]).code, 0, "{mode}");
        assert!(!host.leaked_into(&kiln, "localhost/ctx:5"), "{mode}: the host file is not in the image");
        let (_keep, r) = umoci_unpack(kiln.store(), "localhost/ctx:5");
        assert_eq!(std::fs::read_link(r.join("ctx/link")).unwrap(), host.secret(), "{mode}: the link itself");
        host.assert_untouched();
    }
}

#[test]
fn a_link_resolves_to_the_same_path_inside_the_context() {
    if !require("umoci") {
        return;
    }
    let kiln = Kiln::new();
    let host = HostMarker::new();
    let ws = workspace("FROM scratch\nCOPY link /x\nCOPY linkdir/secret /y\n");
    symlink(host.secret(), ws.path().join("link")).unwrap();
    symlink(host.dir(), ws.path().join("linkdir")).unwrap();
    let inside = ws.path().join(host.dir().strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::write(inside.join("secret"), "the context's own").unwrap();
    kiln.build(&ws, "same:1", &[]);
    let (_keep, r) = umoci_unpack(kiln.store(), "localhost/same:1");
    assert_eq!(std::fs::read_to_string(r.join("x")).unwrap(), "the context's own");
    assert_eq!(std::fs::read_to_string(r.join("y")).unwrap(), "the context's own");
}

/// A stage links a host directory and a host file; later steps use them through `COPY --from` and through
/// `ro` and `rw` bind mounts. Nothing of the host may be read, nothing created there.
fn stage_links_stay_inside(mode: &str) {
    let Some(kiln) = kiln_in(mode) else { return };
    if !require("umoci") {
        return;
    }
    base(&kiln);
    let host = HostMarker::new();
    let dir = host.dir().display().to_string();
    let stage = format!(
        "FROM localhost/busybox:test AS a\nRUN ln -s {dir} /hostdir && ln -s {dir}/secret /hostfile && ln -s /etc /etclink\n\
         FROM localhost/busybox:test\n"
    );
    let ws = workspace(&format!("{stage}COPY --from=a /hostdir/secret /s\n"));
    fails_with(&kiln, &ws, "stage:1", "/hostdir/secret: not found in stage a");
    ws.dockerfile(&format!("{stage}COPY --from=a /hostfile /s\n"));
    fails_with(&kiln, &ws, "stage:2", "/hostfile: not found in stage a");
    ws.dockerfile(&format!("{stage}COPY --from=a /hostdir /d/\n"));
    fails_with(&kiln, &ws, "stage:3", "/hostdir: not found in stage a");
    // `/etclink/passwd` is the stage's own /etc/passwd.
    ws.dockerfile(&format!("{stage}COPY --from=a /etclink/passwd /p\n"));
    kiln.build(&ws, "stage:4", &[]);
    let (_keep, r) = umoci_unpack(kiln.store(), "localhost/stage:4");
    assert!(std::fs::read_to_string(r.join("p")).unwrap().contains("app:x:1000"), "{mode}: the stage's passwd");
    assert!(!host.leaked_into(&kiln, "localhost/stage:4"), "{mode}");
    for (tag, flags) in [("stage:5", ""), ("stage:6", ",rw")] {
        ws.dockerfile(&format!(
            "{stage}RUN --mount=type=bind,from=a,source=/hostdir,target=/m{flags} \
             sh -c 'cat /m/secret > /read; echo planted > /m/planted'\n"
        ));
        fails_with(&kiln, &ws, tag, "source \"/hostdir\" not found in stage a");
        host.assert_untouched();
    }
    // When the stage has that path itself, the bind shows the stage's own directory, and an `rw` bind is a
    // private copy: writes go nowhere. Chroot mode cannot mount at all and says so.
    let own = format!(
        "FROM localhost/busybox:test AS a\nRUN mkdir -p {dir} && echo stage-own > {dir}/secret && ln -s {dir} /hostdir\n\
         FROM localhost/busybox:test\n\
         RUN --mount=type=bind,from=a,source=/hostdir,target=/m cat /m/secret > /ro-read\n\
         RUN --mount=type=bind,from=a,source=/hostdir,target=/m,rw sh -c 'cat /m/secret > /rw-read; echo planted > /m/planted'\n"
    );
    ws.dockerfile(&own);
    if mode == "chroot" {
        fails_with(&kiln, &ws, "stage:7", "chroot isolation");
        host.assert_untouched();
        return;
    }
    kiln.build(&ws, "stage:7", &[]);
    let (_keep, r) = umoci_unpack(kiln.store(), "localhost/stage:7");
    assert_eq!(std::fs::read_to_string(r.join("ro-read")).unwrap(), "stage-own\n", "{mode}");
    assert_eq!(std::fs::read_to_string(r.join("rw-read")).unwrap(), "stage-own\n", "{mode}");
    assert!(r.join("m").symlink_metadata().is_err(), "{mode}: the mount point is not in the image");
    host.assert_untouched();
}

#[test]
fn stage_links_stay_inside_as_root() {
    stage_links_stay_inside("root");
}

#[test]
fn stage_links_stay_inside_rootless() {
    stage_links_stay_inside("rootless");
}

#[test]
fn stage_links_stay_inside_in_chroot_mode() {
    stage_links_stay_inside("chroot");
}

/// Context links used as bind sources: resolved inside the context (not found here), in every mode.
fn context_bind_sources_stay_inside(mode: &str) {
    let Some(kiln) = kiln_in(mode) else { return };
    base(&kiln);
    let host = HostMarker::new();
    let ws = workspace("");
    symlink(host.dir(), ws.path().join("linkdir")).unwrap();
    symlink(host.secret(), ws.path().join("link")).unwrap();
    for (tag, source, flags) in [("cb:1", "linkdir", ""), ("cb:2", "linkdir", ",rw"), ("cb:3", "link", "")] {
        ws.dockerfile(&format!(
            "FROM localhost/busybox:test\nRUN --mount=type=bind,source={source},target=/m{flags} \
             sh -c 'cat /m/secret /m; echo planted > /m/planted'\n"
        ));
        let run = build(&kiln, &ws, tag, &[]);
        assert_ne!(run.code, 0, "{mode} {tag}");
        assert!(run.stderr.contains("not found in the build context"), "{mode} {tag}: {}", run.stderr);
        host.assert_untouched();
    }
}

#[test]
fn context_bind_sources_stay_inside_as_root() {
    context_bind_sources_stay_inside("root");
}

#[test]
fn context_bind_sources_stay_inside_rootless() {
    context_bind_sources_stay_inside("rootless");
}

#[test]
fn context_bind_sources_stay_inside_in_chroot_mode() {
    context_bind_sources_stay_inside("chroot");
}

/// An image pushed to a registry whose rootfs links a host directory and `/etc`.
#[test]
fn an_image_holding_links_to_the_host_stays_inside() {
    if !require("skopeo") || !require("umoci") {
        return;
    }
    let Some(registry) = Registry::start() else { return };
    let host = HostMarker::new();
    let publisher = Kiln::new();
    let ws = Workspace::new();
    let rootfs = ws.path().join("rootfs");
    busybox_rootfs(&rootfs);
    symlink("/etc", rootfs.join("a")).unwrap();
    symlink(host.dir(), rootfs.join("hostdir")).unwrap();
    ws.dockerfile("FROM scratch\nCOPY rootfs/ /\n");
    let image = registry.name("hostile/links:1");
    publisher.build(&ws, &image, &["--push", "--tls-verify=false"]);
    for mode in ["root", "rootless"] {
        let Some(kiln) = kiln_in(mode) else { continue };
        let pull = ["--tls-verify=false"];
        let ws = workspace(&format!("FROM {image}\nCOPY --from={image} /a/passwd /copied-passwd\n"));
        assert_eq!(build(&kiln, &ws, "img:1", &pull).code, 0, "{mode}");
        let (_keep, r) = umoci_unpack(kiln.store(), "localhost/img:1");
        let passwd = std::fs::read_to_string(r.join("copied-passwd")).unwrap();
        assert!(passwd.contains("app:x:1000:1000"), "{mode}: the image's own /etc/passwd, not the host's");
        ws.dockerfile(&format!("FROM {image}\nCOPY --from={image} /hostdir/secret /s\n"));
        let run = build(&kiln, &ws, "img:2", &pull);
        assert!(run.code != 0 && run.stderr.contains("not found in image"), "{mode}: {}", run.stderr);
        ws.dockerfile(&format!(
            "FROM {image}\nRUN --mount=type=bind,from={image},source=/hostdir,target=/m,rw touch /m/planted\n"
        ));
        let run = build(&kiln, &ws, "img:3", &pull);
        assert!(run.code != 0 && run.stderr.contains("not found in image"), "{mode}: {}", run.stderr);
        ws.dockerfile(&format!(
            "FROM {image}\nRUN --mount=type=bind,from={image},source=/a,target=/m cat /m/passwd > /p\n"
        ));
        assert_eq!(build(&kiln, &ws, "img:4", &pull).code, 0, "{mode}");
        assert!(!host.leaked_into(&kiln, "localhost/img:4"), "{mode}");
        host.assert_untouched();
    }
}

/// One uncompressed layer as an OCI image in a layout directory, copied to `reference` with skopeo.
fn push_raw_layer(layer: Vec<u8>, reference: &str) {
    use sha2::Digest as _;
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let (layer_digest, layer_size) = put(&layer);
    let config = serde_json::json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "config": {}
    });
    let (config_digest, config_size) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}]
    });
    let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": "evil"}
        }]
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let source = format!("oci:{}:evil", layout.display());
    tool("skopeo", &["copy", "--dest-tls-verify=false", &source, &format!("docker://{reference}")]);
}

/// A tar written entry by entry, with names and links the writer of a real layer would never produce.
fn hostile_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        let field = &mut h.as_old_mut().name;
        field[..name.len()].copy_from_slice(name.as_bytes());
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        h.set_cksum();
        builder.append(&h, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn hostile_layers_stay_inside_the_rootfs() {
    if !require("skopeo") {
        return;
    }
    let Some(registry) = Registry::start() else { return };
    let host = HostMarker::new();
    let abs = host.dir().display().to_string();
    let up = format!("../../../../../../../..{abs}");
    let names = [format!("{up}/dotdot"), format!("{abs}/absolute")];
    let secret_out = format!("{up}/secret");
    let paths = hostile_tar(&[
        (&names[0], tar::EntryType::Regular, "", b"x"),
        (&names[1], tar::EntryType::Regular, "", b"x"),
        ("l2", tar::EntryType::Symlink, &abs, b""),
        ("l1", tar::EntryType::Symlink, "l2", b""),
        ("l1/chained", tar::EntryType::Regular, "", b"x"),
        ("l1/.wh.secret", tar::EntryType::Regular, "", b""),
        ("l2/.wh..wh..opq", tar::EntryType::Regular, "", b""),
        ("up", tar::EntryType::Symlink, "../../../../../../..", b""),
        ("up/escaped", tar::EntryType::Regular, "", b"x"),
    ]);
    push_raw_layer(paths, &registry.name("hostile/paths:1"));
    let hardlink = hostile_tar(&[("hl", tar::EntryType::Link, &secret_out, b"")]);
    push_raw_layer(hardlink, &registry.name("hostile/hardlink:1"));
    for mode in ["root", "rootless"] {
        let Some(kiln) = kiln_in(mode) else { continue };
        // COPY --from unpacks the image's rootfs: every entry lands inside it.
        let image = registry.name("hostile/paths:1");
        let ws = workspace(&format!("FROM scratch\nCOPY --from={image} /l1 /copied\nCOPY --from={image} /escaped /\n"));
        let run = build(&kiln, &ws, "layers:1", &["--tls-verify=false"]);
        assert_eq!(run.code, 0, "{mode}: {}", run.stderr);
        if require("umoci") {
            let (_keep, r) = umoci_unpack(kiln.store(), "localhost/layers:1");
            for name in ["copied/chained", "copied/dotdot", "copied/absolute", "escaped"] {
                assert!(r.join(name).is_file(), "{mode}: {name} landed inside the rootfs");
            }
        }
        host.assert_untouched();
        assert!(!Path::new("/escaped").exists());
        let image = registry.name("hostile/hardlink:1");
        let ws = workspace(&format!("FROM scratch\nCOPY --from={image} /hl /copied\n"));
        let run = build(&kiln, &ws, "layers:2", &["--tls-verify=false"]);
        assert_ne!(run.code, 0, "{mode}");
        assert!(run.stderr.contains("entry \"hl\"") && run.stderr.contains("hard link to"), "{mode}: {}", run.stderr);
        host.assert_untouched();
    }
}

/// `kiln build .` from the context directory, with a relative bind source and a relative secret file.
fn relative_paths_work(mode: &str) {
    let Some(kiln) = kiln_in(mode) else { return };
    if !require("umoci") {
        return;
    }
    base(&kiln);
    let ws = workspace(
        "FROM localhost/busybox:test\n\
         RUN --mount=type=bind,source=sub,target=/m cp /m/f /from-bind\n\
         RUN --mount=type=secret,id=s wc -c < /run/secrets/s > /secret-size\n",
    );
    ws.file("sub/f", "bound").file("secret.txt", "12345");
    rootless::give(ws.path());
    let mut command = kiln.command(&["build", "-t", "relative:1", "--secret", "id=s,src=secret.txt", "."]);
    command.current_dir(ws.path());
    let run = kiln.run_command(command);
    assert_eq!(run.code, 0, "{mode}: {}", run.stderr);
    let (_keep, r) = umoci_unpack(kiln.store(), "localhost/relative:1");
    assert_eq!(std::fs::read_to_string(r.join("from-bind")).unwrap(), "bound");
    assert_eq!(std::fs::read_to_string(r.join("secret-size")).unwrap().trim(), "5");
}

#[test]
fn relative_paths_work_as_root() {
    relative_paths_work("root");
}

#[test]
fn relative_paths_work_rootless() {
    relative_paths_work("rootless");
}

/// A secret from the environment is readable in the step, and a build killed while the step runs leaves
/// its value nowhere in the store.
#[test]
fn a_secret_never_reaches_the_disk_even_when_the_build_is_killed() {
    let kiln = Kiln::new();
    base(&kiln);
    let value = format!("s3cr3t-{}", std::process::id());
    // The Dockerfile (and so the image's history) names only the secret's digest.
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(value.as_bytes()));
    let ws = workspace(&format!(
        "FROM localhost/busybox:test\n\
         RUN --mount=type=secret,id=tok,mode=0440,uid=1000 sh -c 'test \"$(sha256sum < /run/secrets/tok)\" = \"{hash}  -\" \
         && stat -c %a:%u /run/secrets/tok > /seen && mount | grep -q \" /run/secrets/tok \"'\n\
         RUN --mount=type=secret,id=tok {}\n",
        sleep_argv().trim_end_matches('\0').replace('\0', " ")
    ));
    let ctx = ws.path().to_string_lossy().into_owned();
    let mut command = kiln.command(&["build", "-t", "secret:1", "--secret", "id=tok,env=KILN_TEST_TOKEN", &ctx]);
    command.env("KILN_TEST_TOKEN", &value).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let started = wait_for(|| sleeping_steps() > 0);
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    assert!(started, "the second step started: {}", String::from_utf8_lossy(&output.stderr));
    assert!(wait_for(|| sleeping_steps() == 0), "the step died with kiln");
    let grep = std::process::Command::new("grep").arg("-rlF").arg(&value).arg(kiln.store()).output().unwrap();
    assert_eq!(
        grep.status.code(),
        Some(1),
        "the secret is nowhere in the store: {}",
        String::from_utf8_lossy(&grep.stdout)
    );
}

/// The argv of the step that sleeps, unique to this test process.
fn sleep_argv() -> String {
    format!("sleep\0{}\0", 2000 + std::process::id() % 1000)
}

fn sleeping_steps() -> usize {
    processes_with_cmdline(&sleep_argv())
}

#[test]
fn an_unreadable_context_file_is_named() {
    if !is_root() {
        assert!(!ci(), "CI runs as root: this must be tested there");
        eprintln!("skipping: making a file the build user cannot read takes root");
        return;
    }
    let Some(kiln) = rootless::kiln() else { return };
    let ws = workspace("FROM scratch\nCOPY . /ctx/\n");
    ws.file("private.key", "root only");
    std::fs::set_permissions(ws.path().join("private.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = build(&kiln, &ws, "unreadable:1", &[]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("private.key") && run.stderr.contains("Permission denied"), "{}", run.stderr);
}

#[test]
fn device_nodes_a_rootless_unpack_cannot_make_are_warned_about() {
    if !is_root() {
        assert!(!ci(), "CI runs as root: this must be tested there");
        eprintln!("skipping: making a device node takes root");
        return;
    }
    let Some(kiln) = rootless::kiln() else { return };
    base(&kiln);
    let ws = workspace("FROM localhost/busybox:test\nCOPY dev/ /devices/\nRUN ls /devices > /listing\n");
    std::fs::create_dir(ws.path().join("dev")).unwrap();
    tool("mknod", &[&ws.path().join("dev/mynull").to_string_lossy(), "c", "1", "3"]);
    tool("mkfifo", &[&ws.path().join("dev/pipe").to_string_lossy()]);
    rootless::give(ws.path());
    let run = build(&kiln, &ws, "devices:1", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("device node(s) could not be created") && run.stderr.contains("devices/mynull"),
        "{}",
        run.stderr
    );
}

/// A heredoc's name comes from the Dockerfile: one shaped like a path is placed inside kiln's scratch
/// filesystem, as BuildKit places it in a scratch state, never beside the host's files.
#[test]
fn a_heredoc_named_like_a_path_stays_inside() {
    if !require("umoci") {
        return;
    }
    let kiln = Kiln::new();
    let host = HostMarker::new();
    let name = format!("../../../../../../../..{}/planted", host.dir().display());
    let ws = workspace(&format!("FROM scratch\nCOPY <<{name} /x\nhello\n{name}\n"));
    let run = build(&kiln, &ws, "heredoc:1", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    host.assert_untouched();
    let (_keep, r) = umoci_unpack(kiln.store(), "localhost/heredoc:1");
    assert_eq!(std::fs::read_to_string(r.join("x")).unwrap(), "hello\n");
}
