//! RUN: the command runs in the sandbox over an overlay of the parent's snapshots; the overlay's upper dir
//! is the step's diff, becomes its layer, and is then kept (renamed, not copied) as the diff snapshot the
//! next step stacks on. Where no overlay can be mounted (chroot mode, or a kernel without it), the step
//! runs in a private copy of the rootfs, the diff comes from a metadata walk, and the copy becomes the
//! next snapshot.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};

use crate::build::events::Event;
use crate::build::stage::StageEnv;
use crate::build::state::{ImageState, LayerRef};
use crate::build::step::placed::Placement;
use crate::build::step::{StepError, config, run_mounts, write_layer};
use crate::build::users::Accounts;
use crate::build::{history, rootfs};
use crate::cache::lineage::Position;
use crate::confine::Root;
use crate::dockerfile::instruction::{CommandLine, Heredoc};
use crate::image;
use crate::layer::{self, Entry, EntryKind};
use crate::plan::{RunMount, predefined};
use crate::sandbox::{self, Isolation, Network, RootfsKind, RootfsSpec, RunSpec, Sandbox};
use crate::supply;

/// Output lines kept for the error message of a failing command.
const TAIL_LINES: usize = 12;

/// A RUN step after resolution.
pub struct RunStep<'a> {
    /// The command.
    pub cmd: &'a CommandLine,
    /// The SHELL in force.
    pub shell: &'a [String],
    /// Heredoc bodies named on the line.
    pub heredocs: &'a [Heredoc],
    /// Image ENV plus the build args in scope.
    pub env: &'a [(String, String)],
    /// `--mount` options.
    pub mounts: &'a [RunMount],
    /// `--network`.
    pub network: Option<&'a str>,
    /// `Dockerfile:LINE RUN ...`, for the fetch log and egress refusals.
    pub label: &'a str,
}

/// Runs the step; returns its layer, or `None` when the command changed nothing.
pub async fn execute(
    env: &StageEnv<'_>,
    state: &ImageState,
    run: &RunStep<'_>,
    position: &Position,
) -> Result<Option<LayerRef>, StepError> {
    let store = env.ctx.store;
    let sandbox = env.ctx.sandbox()?;
    let scratch = store.temp_dir()?;
    let cwd = state.config.config.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".to_string());
    // The cache-directory locks and the leases on the bind sources are held until the step is done.
    let run_mounts::Prepared { mounts, vars, locks: _cache_locks, roots: _bind_roots } =
        run_mounts::prepare(env, run.mounts, &cwd, scratch.path()).await?;
    if sandbox.isolation == Isolation::Chroot && !mounts.is_empty() {
        let targets: Vec<&str> = mounts.iter().map(sandbox::SandboxMount::target).collect();
        return Err(StepError::Unsupported(format!(
            "RUN --mount on {}: chroot isolation cannot mount; build with rootless or root isolation",
            targets.join(", ")
        )));
    }
    let mut work = Workspace::prepare(env, state, &sandbox, scratch.path())?;
    let accounts = work.accounts();
    let user = state.config.config.user.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| "0".to_string());
    let ids = accounts.resolve(&user, Some(0))?;
    let mut process_env = run.env.to_vec();
    let hostname = sandbox_hostname(env);
    // Secrets (env=) win over ENV; then the proxies and HOSTNAME, which never enter the cache key.
    let late = vars.into_iter().chain(predefined::proxy_env(&env.plan.build_args));
    for (key, value) in late.chain(std::iter::once(("HOSTNAME".to_string(), hostname.clone()))) {
        process_env.retain(|(k, _)| *k != key);
        process_env.push((key, value));
    }
    let (args, script) = command_args(run, scratch.path())?;
    let network = network(env, run.network, sandbox.isolation)?;
    let home = process_env.iter().find(|(k, _)| k == "HOME").map(|(_, v)| v.clone());
    let home = home.or_else(|| accounts.home(ids.uid)).unwrap_or_else(|| "/".to_string());
    let supply = step_supply(env, run, &work, sandbox.isolation, &process_env, &home, network, scratch.path())?;
    supply.apply_env(&mut process_env);
    let placement = work.place(&supply.placed)?;
    let mut spec = RunSpec {
        isolation: sandbox.isolation,
        rootfs: work.rootfs.clone(),
        args,
        env: environment(process_env, accounts.home(ids.uid)),
        cwd,
        uid: ids.uid,
        gid: ids.gid,
        groups: ids.groups,
        network,
        netns: None,
        mounts,
        facilities: sandbox.facilities,
        etc_files: etc_files(scratch.path(), &hostname)?,
        hostname,
        umask: 0o022,
        created_report: scratch.path().join("created"),
        secret_stage: secret_stage(scratch.path())?,
    };
    match script {
        // Chroot mode cannot bind the script: it is provided as /etc files are (a copy, removed after the
        // step), and run through its interpreter, as the kernel would, so it needs no exec bit.
        Some(mount) if spec.isolation == Isolation::Chroot && mount.bind_source().is_some() => {
            let (source, target) = (mount.bind_source().unwrap_or_default(), mount.target().to_string());
            let text = std::fs::read_to_string(&source).map_err(StepError::Temp)?;
            spec.args = shebang_argv(&text, &target);
            spec.etc_files.push((source, target));
        }
        other => spec.mounts.extend(other),
    }
    let skipped = give_supply(&mut spec, &supply);
    if !skipped.is_empty() {
        env.ctx.reporter.report(Event::Warning(format!(
            "{}: chroot isolation cannot mount; left out: {} (the variables still name the CA bundle)",
            run.label,
            skipped.join(", ")
        )));
    }
    let outcome = run_command(env, &spec, run);
    let outcome = with_refusals(env, outcome, supply.egress.as_ref(), run.label)?;
    drop(supply);
    let mut created = outcome.created;
    created.extend(work.settle(&placement)?);
    let entries = work.diff(&created)?;
    // Even an empty diff is a layer (BuildKit commits one for every RUN).
    let layer = write_layer(env, state, position, entries)?;
    let mut diff_ids = state.diff_ids();
    diff_ids.extend(layer.as_ref().map(|l| l.diff_id.clone()));
    work.keep_as_snapshot(store, &env.ctx.owned_snapshots, &image::chain_id(&diff_ids), &created)?;
    Ok(layer)
}

/// What the supply chain gives this step (CA trust, Nexus routing, the proxy-only network).
#[allow(clippy::too_many_arguments)]
fn step_supply(
    env: &StageEnv<'_>,
    run: &RunStep<'_>,
    work: &Workspace,
    isolation: Isolation,
    process_env: &[(String, String)],
    home: &str,
    network: Network,
    scratch: &Path,
) -> Result<supply::StepSupply, StepError> {
    if !env.ctx.supply.is_active() {
        return Ok(supply::StepSupply::default());
    }
    let networked = network == Network::Host;
    if env.ctx.supply.proxy_only() && networked && isolation == Isolation::Chroot {
        return Err(StepError::Unsupported(
            "--network proxy-only cannot be enforced in chroot isolation (it has no network namespace); \
             use rootless or root isolation, or --network host"
                .to_string(),
        ));
    }
    // Created only when the step needs files of its own (rewritten apt and dnf repository files).
    let dir = scratch.join("supply");
    let request = supply::StepRequest { label: run.label, home, env: process_env, scratch: &dir, networked };
    let view = supply::ImageView::new(work.view.clone());
    env.ctx.supply.step(&request, &view).map_err(|e| StepError::Supply(Box::new(e)))
}

/// Puts the supply's mounts and network into the spec. Its mounts never go inside the step's own
/// `--mount`s (a cache at `~/.m2` keeps its own settings; the variables still point at kiln's). In chroot
/// mode, which cannot mount, its files are provided only where the image lacks them, as /etc files are;
/// the directory overlays (apt, dnf routing) cannot be, and are returned.
fn give_supply(spec: &mut RunSpec, supply: &supply::StepSupply) -> Vec<String> {
    let mut skipped = Vec::new();
    let own: Vec<String> = spec.mounts.iter().map(|m| m.target().trim_end_matches('/').to_string()).collect();
    for m in &supply.mounts {
        let inside_own = own.iter().any(|t| !t.is_empty() && m.target().starts_with(&format!("{t}/")));
        match m {
            _ if inside_own => {}
            // Without mounts, kiln's files are copied where missing and removed afterwards.
            sandbox::SandboxMount::Tmpfs { .. } if spec.isolation == Isolation::Chroot => {}
            sandbox::SandboxMount::Bind { root, subpath, target, .. } if spec.isolation == Isolation::Chroot => {
                let source = root.join(subpath);
                if source.is_file() {
                    spec.etc_files.push((source, target.clone()));
                } else {
                    skipped.push(target.clone());
                }
            }
            other => spec.mounts.push(other.clone()),
        }
    }
    if let Some(path) = &supply.netns {
        spec.network = Network::None;
        spec.netns = Some(path.clone());
    }
    if let (RootfsSpec::Overlay { lower, .. }, Some(stubs)) = (&mut spec.rootfs, &supply.lower) {
        // An absolute lower dir among the snapshot-relative ones: overlay takes both.
        lower.insert(0, stubs.to_string_lossy().into_owned());
    }
    skipped
}

/// Reports what the egress proxy refused during the step; a failed step also names it in its error.
fn with_refusals(
    env: &StageEnv<'_>,
    outcome: Result<sandbox::Outcome, StepError>,
    egress: Option<&supply::egress::StepSession>,
    label: &str,
) -> Result<sandbox::Outcome, StepError> {
    let refusals = egress.map(|e| e.refusals()).unwrap_or_default();
    for line in &refusals {
        env.ctx.reporter.report(Event::Warning(format!("{label}: {line}")));
    }
    match outcome {
        Err(StepError::RunFailed { code, command, mut tail }) if !refusals.is_empty() => {
            tail.extend(refusals.iter().map(|r| format!("kiln: {r}")));
            Err(StepError::RunFailed { code, command, tail })
        }
        other => other,
    }
}

/// argv for the step, plus a bind for a heredoc script that carries its own interpreter (`#!`).
fn command_args(run: &RunStep<'_>, scratch: &Path) -> Result<(Vec<String>, Option<sandbox::SandboxMount>), StepError> {
    let CommandLine::Shell(text) = run.cmd else { return Ok((config::argv(run.cmd, run.shell), None)) };
    if run.heredocs.is_empty() {
        return Ok((config::argv(run.cmd, run.shell), None));
    }
    let whole = run.heredocs.len() == 1 && is_just_heredoc(text, &run.heredocs[0].name);
    if whole && run.heredocs[0].content.starts_with("#!") {
        // BuildKit runs such a script as a file of its own, from /dev/pipes.
        let doc = &run.heredocs[0];
        let path = scratch.join("script");
        std::fs::write(&path, &doc.content).map_err(StepError::Temp)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(StepError::Temp)?;
        let target = format!("/dev/pipes/{}", doc.name);
        let root = std::path::absolute(scratch).map_err(StepError::Temp)?;
        let mount =
            sandbox::SandboxMount::Bind { root, subpath: "script".to_string(), target: target.clone(), readonly: true };
        return Ok((vec![target], Some(mount)));
    }
    if whole {
        return Ok((config::argv(&CommandLine::Shell(run.heredocs[0].content.clone()), run.shell), None));
    }
    // The shell reads the heredocs itself: the line, then each body and its terminator.
    let mut script = text.clone();
    for doc in run.heredocs {
        script.push('\n');
        script.push_str(&doc.content);
        if !doc.content.ends_with('\n') && !doc.content.is_empty() {
            script.push('\n');
        }
        script.push_str(&doc.name);
    }
    Ok((config::argv(&CommandLine::Shell(script), run.shell), None))
}

/// The argv the kernel builds for a `#!` script at `path`: the interpreter, its one optional argument (the
/// rest of the line), then the script's path.
fn shebang_argv(script: &str, path: &str) -> Vec<String> {
    let line = script.lines().next().unwrap_or_default().trim_start_matches("#!").trim();
    let mut argv: Vec<String> = match line.split_once([' ', '\t']) {
        Some((interpreter, arg)) => vec![interpreter.to_string(), arg.trim().to_string()],
        None => vec![line.to_string()],
    };
    argv.retain(|a| !a.is_empty());
    argv.push(path.to_string());
    argv
}

fn is_just_heredoc(text: &str, name: &str) -> bool {
    let word = text.trim().trim_start_matches("<<").trim_start_matches('-');
    word.trim_matches(|c| c == '"' || c == '\'') == name
}

/// PATH and HOME as runc sets them when the image does not.
fn environment(mut pairs: Vec<(String, String)>, home: Option<String>) -> Vec<String> {
    if !pairs.iter().any(|(k, _)| k == "PATH") {
        pairs.insert(0, ("PATH".to_string(), sandbox::DEFAULT_PATH.to_string()));
    }
    if !pairs.iter().any(|(k, _)| k == "HOME") {
        pairs.push(("HOME".to_string(), home.unwrap_or_else(|| "/".to_string())));
    }
    pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The step's network; chroot isolation has no network namespace, so it refuses `none` rather than run
/// the step with the host's network.
fn network(env: &StageEnv<'_>, flag: Option<&str>, isolation: Isolation) -> Result<Network, StepError> {
    let network = match flag {
        None | Some("default") => env.ctx.options.network,
        Some("host") => Network::Host,
        Some("none") => Network::None,
        Some(other) => {
            return Err(StepError::Unsupported(format!("RUN --network={other}: expected default, host or none")));
        }
    };
    if network == Network::None && isolation == Isolation::Chroot {
        return Err(StepError::Unsupported(
            "network none: chroot isolation has no network namespace to cut the step off the network; \
             build with rootless or root isolation"
                .to_string(),
        ));
    }
    Ok(network)
}

/// The host name of RUN steps: BuildKit's `buildkitsandbox`, or the `BUILDKIT_SANDBOX_HOSTNAME` build
/// argument.
fn sandbox_hostname(env: &StageEnv<'_>) -> String {
    env.plan
        .build_args
        .get("BUILDKIT_SANDBOX_HOSTNAME")
        .filter(|h| !h.is_empty())
        .cloned()
        .unwrap_or_else(|| "buildkitsandbox".to_string())
}

/// An empty directory the sandbox mounts its secrets tmpfs on (in its own mount namespace only).
fn secret_stage(scratch: &Path) -> Result<PathBuf, StepError> {
    let stage = std::path::absolute(scratch.join("secrets")).map_err(StepError::Temp)?;
    std::fs::create_dir(&stage).map_err(StepError::Temp)?;
    Ok(stage)
}

/// The step's /etc/resolv.conf, /etc/hosts and /etc/hostname, written in the scratch dir.
fn etc_files(scratch: &Path, hostname: &str) -> Result<Vec<(PathBuf, String)>, StepError> {
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_else(|_| "nameserver 127.0.0.1\n".into());
    let files = [
        ("resolv.conf", resolv),
        ("hosts", format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")),
        ("hostname", format!("{hostname}\n")),
    ];
    let mut out = Vec::new();
    for (name, text) in files {
        let path = scratch.join(name);
        std::fs::write(&path, text).map_err(StepError::Temp)?;
        out.push((path, format!("/etc/{name}")));
    }
    Ok(out)
}

/// Runs the command, streaming its output line by line; a non-zero exit is an error with the last lines.
fn run_command(env: &StageEnv<'_>, spec: &RunSpec, run: &RunStep<'_>) -> Result<sandbox::Outcome, StepError> {
    let reporter = env.ctx.reporter;
    let mut pending: Vec<u8> = Vec::new();
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut emit = |line: &[u8]| {
        let text = String::from_utf8_lossy(line).trim_end_matches('\r').to_string();
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text.clone());
        reporter.report(Event::Output { line: text });
    };
    let outcome = sandbox::run(spec, &mut |chunk| {
        pending.extend_from_slice(chunk);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            emit(&line[..line.len() - 1]);
        }
    })?;
    if !pending.is_empty() {
        emit(&pending);
    }
    if let Some(problem) = &outcome.start_error {
        tail.push_back(problem.clone());
    }
    if outcome.exit_code != 0 {
        return Err(StepError::RunFailed { code: outcome.exit_code, command: describe(run), tail: tail.into() });
    }
    Ok(outcome)
}

/// The command as it ran, for the failure message (`/bin/sh -c invalidcmd`, as BuildKit names it).
fn describe(run: &RunStep<'_>) -> String {
    history::run_argv(run.cmd, run.shell, run.heredocs).join(" ")
}

/// Where the step's filesystem lives: an overlay over the parent's snapshots, a private copy of the
/// parent's full snapshot, or — when this build made that snapshot itself — the snapshot itself, claimed by
/// rename (creating files is what costs in a copy: ~20 s per 100k files on a slow disk).
struct Workspace {
    rootfs: RootfsSpec,
    /// Directories showing the parent's rootfs before the step runs, topmost first.
    view: Vec<PathBuf>,
    /// What the diff compares with.
    before: Before,
    /// The snapshots the step reads, held until it is done (none is claimed and changed meanwhile).
    _leases: Vec<crate::store::Lease>,
}

/// The parent's tree, for the diff and the mount-stub filter.
enum Before {
    /// Unchanged directories: the overlay's lowers, or the full snapshot a copy was made from.
    Lowers(Vec<PathBuf>),
    /// A claimed snapshot, changed in place: its metadata recorded before the step.
    Stamps(layer::TreeStamps),
}

impl Workspace {
    fn prepare(
        env: &StageEnv<'_>,
        state: &ImageState,
        sandbox: &Sandbox,
        scratch: &Path,
    ) -> Result<Workspace, StepError> {
        let store = env.ctx.store;
        if sandbox.rootfs == RootfsKind::Copy || sandbox.isolation == Isolation::Chroot {
            return Workspace::private(env, state, scratch);
        }
        let leases = rootfs::lowers(store, &state.layers, env.ctx.reporter)?;
        let lowers: Vec<PathBuf> = leases.iter().map(|l| l.tree().to_path_buf()).collect();
        let [upper, work, merged] = ["upper", "work", "merged"].map(|n| scratch.join(n));
        for dir in [&upper, &work, &merged] {
            std::fs::create_dir(dir).map_err(StepError::Temp)?;
        }
        let base = store.snapshot_dir();
        let names = lowers.iter().map(|l| l.strip_prefix(&base).unwrap_or(l).to_string_lossy().into_owned()).collect();
        let rootfs = RootfsSpec::Overlay {
            base,
            lower: names,
            upper,
            work,
            merged,
            fuse: sandbox.rootfs == RootfsKind::FuseOverlay,
        };
        Ok(Workspace { rootfs, view: lowers.clone(), before: Before::Lowers(lowers), _leases: leases })
    }

    /// A rootfs the step may change in place: this build's own snapshot of the parent chain (claimed), else
    /// a copy of the shared one.
    ///
    /// Snapshots share inodes (a derived one links the unchanged files of those it came from), so a claimed
    /// tree is first given inodes of its own wherever it shares one (`layer::unshare`): the step writes
    /// through nothing another snapshot holds. The claim itself fails while anyone holds a lease.
    fn private(env: &StageEnv<'_>, state: &ImageState, scratch: &Path) -> Result<Workspace, StepError> {
        let store = env.ctx.store;
        let chain = image::chain_id(&state.diff_ids());
        let existed = store.snapshot(&chain).is_some();
        let lease = || -> Result<crate::store::Lease, StepError> {
            if state.layers.is_empty() {
                rootfs::empty(store)?;
            }
            let lease = rootfs::lease(store, &state.layers, env.ctx.reporter)?.or_else(|| store.lease_snapshot(&chain));
            lease.ok_or_else(|| {
                StepError::Unsupported(format!("the snapshot of {chain} is being changed by another build"))
            })
        };
        let lower = lease()?;
        let owned = !existed || env.ctx.owned_snapshots.lock().unwrap_or_else(|e| e.into_inner()).remove(&chain);
        let lower = if owned {
            // Our own lease would stop the claim.
            drop(lower);
            if let Some(private) = store.claim_snapshot(&chain, &scratch.join("claimed")) {
                layer::unshare(&private)?;
                let before = Before::Stamps(layer::stamp_tree(&private)?);
                let rootfs = RootfsSpec::Dir(private.clone());
                return Ok(Workspace { rootfs, view: vec![private], before, _leases: Vec::new() });
            }
            lease()?
        } else {
            lower
        };
        let private = scratch.join("rootfs");
        layer::copy_tree(&lower, &private)?;
        Ok(Workspace {
            rootfs: RootfsSpec::Dir(private.clone()),
            view: vec![private],
            before: Before::Lowers(vec![lower.tree().to_path_buf()]),
            _leases: vec![lower],
        })
    }

    /// The image's /etc/passwd and /etc/group, from the topmost directory of the view that has each (each
    /// resolved inside that directory: an image's links never lead to the host's files).
    fn accounts(&self) -> Accounts {
        let roots: Vec<Root> = self.view.iter().filter_map(|l| Root::open(l).ok()).collect();
        let read = |rel: &str| {
            let bytes =
                roots.iter().find_map(|r| r.stat(rel).ok().filter(|m| m.is_file()).and_then(|_| r.read(rel).ok()));
            String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()
        };
        Accounts::from_text(&read("etc/passwd"), &read("etc/group"))
    }

    /// The supply's placed files for the step: over an overlay they are in the supply's lower dir already;
    /// a private rootfs gets them written in.
    fn place(&self, placed: &[supply::Placed]) -> Result<Placement, StepError> {
        let mut placement = Placement::new(supply::ImageView::new(self.view.clone()), placed);
        if let (RootfsSpec::Dir(tree), false) = (&self.rootfs, placement.is_empty()) {
            placement.write_into(&Root::open(tree).map_err(StepError::Temp)?)?;
        }
        Ok(placement)
    }

    /// Settles the placed files after the step (see `placed`); returns the paths removed from the tree.
    fn settle(&mut self, placement: &Placement) -> Result<Vec<String>, StepError> {
        if placement.is_empty() {
            return Ok(Vec::new());
        }
        match (&self.rootfs, &mut self.before) {
            (RootfsSpec::Overlay { upper, .. }, _) => {
                placement.settle_upper(&Root::open(upper).map_err(StepError::Temp)?)?;
                Ok(Vec::new())
            }
            (RootfsSpec::Dir(tree), before) => {
                let stamps = match before {
                    Before::Stamps(stamps) => Some(stamps),
                    Before::Lowers(_) => None,
                };
                placement.settle_tree(&Root::open(tree).map_err(StepError::Temp)?, stamps)
            }
        }
    }

    /// What the step changed, without the mount points the sandbox had to create.
    fn diff(&self, created: &[String]) -> Result<Vec<Entry>, StepError> {
        let entries = match (&self.rootfs, &self.before) {
            (RootfsSpec::Overlay { upper, .. }, _) => layer::entries_from_overlay_upper(upper)?,
            (RootfsSpec::Dir(dir), Before::Lowers(lowers)) => layer::diff_trees(&lowers[0], dir)?,
            (RootfsSpec::Dir(dir), Before::Stamps(stamps)) => layer::diff_since(stamps, dir)?,
        };
        Ok(drop_mount_stubs(entries, created, &self.before))
    }

    /// Keeps the step's filesystem as the snapshot of `chain` (the new chain; for a claimed tree the step
    /// left unchanged, the parent's again): the upper dir as a diff snapshot, or the private rootfs as a full
    /// one. Both are renames.
    fn keep_as_snapshot(
        &self,
        store: &crate::store::Store,
        owned: &std::sync::Mutex<HashSet<oci_spec::image::Digest>>,
        chain: &oci_spec::image::Digest,
        created: &[String],
    ) -> Result<(), StepError> {
        let chain = chain.clone();
        match &self.rootfs {
            RootfsSpec::Overlay { upper, .. } => {
                remove_stubs(upper, created);
                store.publish_diff_snapshot(&chain, upper)?;
            }
            RootfsSpec::Dir(copy) => {
                remove_stubs(copy, created);
                store.publish_snapshot(&chain, copy)?;
                owned.lock().unwrap_or_else(|e| e.into_inner()).insert(chain);
            }
        }
        Ok(())
    }
}

/// Removes the mount points the sandbox created (newest first; a directory only while empty), inside the
/// step's tree: the command may have replaced a parent with a link.
fn remove_stubs(root: &Path, created: &[String]) {
    let Ok(root) = Root::open(root) else { return };
    for rel in created.iter().rev() {
        match root.lstat(rel) {
            Ok(m) if m.is_dir() || (m.is_file() && m.size() == 0) => drop(root.remove(rel)),
            _ => {}
        }
    }
}

/// Leaves out of the layer the mount points the sandbox created (still empty) and the directories above
/// them that only changed because of that (same mode and owner as below), unless the command put something
/// else in them.
fn drop_mount_stubs(entries: Vec<Entry>, created: &[String], before: &Before) -> Vec<Entry> {
    if created.is_empty() {
        return entries;
    }
    let created: HashSet<&str> = created.iter().map(String::as_str).collect();
    let mut stub_parents: HashSet<String> = HashSet::new();
    for path in &created {
        let mut p = Path::new(path).parent();
        while let Some(dir) = p.filter(|d| !d.as_os_str().is_empty()) {
            stub_parents.insert(dir.to_string_lossy().into_owned());
            p = dir.parent();
        }
    }
    let lowers: Vec<Root> = match before {
        Before::Lowers(lowers) => lowers.iter().filter_map(|l| Root::open(l).ok()).collect(),
        Before::Stamps(_) => Vec::new(),
    };
    let is_stub = |e: &Entry| match &e.kind {
        EntryKind::Dir => {
            created.contains(e.path.as_str()) || (stub_parents.contains(&e.path) && same_as_before(e, before, &lowers))
        }
        // A created file is a bind target: the command's writes went to the bind's source.
        EntryKind::File(_) => created.contains(e.path.as_str()),
        _ => false,
    };
    let kept: Vec<&Entry> = entries.iter().filter(|e| !is_stub(e)).collect();
    let needed: HashSet<&str> = kept
        .iter()
        .flat_map(|e| {
            let skip = usize::from(e.kind != EntryKind::OpaqueDir);
            Path::new(&e.path).ancestors().skip(skip).filter_map(|a| a.to_str())
        })
        .collect();
    entries.iter().filter(|e| !is_stub(e) || needed.contains(e.path.as_str())).cloned().collect()
}

/// Whether a directory entry has the mode and owner it had before the step (`lowers`: the parent's
/// directories, opened as roots).
fn same_as_before(entry: &Entry, before: &Before, lowers: &[Root]) -> bool {
    let was = match before {
        Before::Lowers(_) => lowers
            .iter()
            .find_map(|l| l.lstat(&entry.path).ok())
            .filter(|m| m.is_dir())
            .map(|m| (m.permissions(), m.uid(), m.gid())),
        Before::Stamps(stamps) => stamps.dir_mode_owner(&entry.path),
    };
    was == Some((entry.mode & 0o7777, entry.uid, entry.gid))
}

#[cfg(test)]
mod tests {
    use super::shebang_argv;

    #[test]
    fn a_shebang_gives_the_interpreter_its_one_argument_and_the_script() {
        assert_eq!(shebang_argv("#!/bin/sh\necho", "/dev/pipes/EOF"), ["/bin/sh", "/dev/pipes/EOF"]);
        assert_eq!(shebang_argv("#! /usr/bin/env  python3 -u\n", "/p"), ["/usr/bin/env", "python3 -u", "/p"]);
    }
}
