//! Steps that change only the image config: ENV, LABEL, EXPOSE, USER, VOLUME, CMD, ENTRYPOINT, SHELL,
//! STOPSIGNAL, HEALTHCHECK, ONBUILD, MAINTAINER (and WORKDIR's config half).
//!
//! Each function applies the reference's rule for one instruction; none touches the filesystem.

use crate::build::state::ImageState;
use crate::dockerfile::instruction::CommandLine;
use crate::image::{HealthConfig, ImageConfig};
use crate::plan::HealthcheckSpec;

/// Why a config step failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An EXPOSE word that is not `port[/proto]` or `from-to[/proto]`.
    #[error("invalid port specification {0:?}: expected PORT[/tcp|udp|sctp] or FROM-TO[/PROTO]")]
    BadPort(String),
}

/// `ENV k=v ...`: set or replace each variable, keeping the order of first definition.
pub fn env(config: &mut ImageConfig, pairs: &[(String, String)]) {
    let env = config.config.env.get_or_insert_with(Vec::new);
    for (key, value) in pairs {
        let entry = format!("{key}={value}");
        match env.iter_mut().find(|e| e.split_once('=').map(|(k, _)| k) == Some(key.as_str())) {
            Some(existing) => *existing = entry,
            None => env.push(entry),
        }
    }
}

/// `LABEL k=v ...` (and `--label`): set or replace each label.
pub fn labels(config: &mut ImageConfig, pairs: &[(String, String)]) {
    let labels = config.config.labels.get_or_insert_with(Default::default);
    for (key, value) in pairs {
        labels.insert(key.clone(), value.clone());
    }
}

/// `EXPOSE 80 443/tcp 53/udp 8000-8002`: ports as `port/proto` keys, ranges expanded as Docker does.
pub fn expose(config: &mut ImageConfig, ports: &[String]) -> Result<(), ConfigError> {
    let exposed = config.config.exposed_ports.get_or_insert_with(Default::default);
    for word in ports {
        for port in expand_port(word)? {
            exposed.insert(port, Default::default());
        }
    }
    Ok(())
}

/// One EXPOSE word as the `port/proto` keys it stands for (ranges expanded, protocol lower-cased).
pub fn expand_port(word: &str) -> Result<Vec<String>, ConfigError> {
    let bad = || ConfigError::BadPort(word.to_string());
    let (ports, proto) = match word.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (word, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (a.parse::<u16>().map_err(|_| bad())?, b.parse::<u16>().map_err(|_| bad())?),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// `USER name[:group]`: recorded as written (after expansion).
pub fn user(config: &mut ImageConfig, user: &str) {
    config.config.user = Some(user.to_string());
}

/// `VOLUME /a /b`: mount points recorded in the config.
pub fn volumes(config: &mut ImageConfig, paths: &[String]) {
    let volumes = config.config.volumes.get_or_insert_with(Default::default);
    for path in paths {
        volumes.insert(path.clone(), Default::default());
    }
}

/// The argv a shell-form CMD/ENTRYPOINT/HEALTHCHECK becomes: the stage's SHELL plus the text.
pub fn argv(line: &CommandLine, shell: &[String]) -> Vec<String> {
    match line {
        CommandLine::Exec(args) => args.clone(),
        CommandLine::Shell(text) => shell.iter().cloned().chain(std::iter::once(text.clone())).collect(),
    }
}

/// `CMD`: the default arguments; marks the stage as having set CMD itself.
pub fn cmd(state: &mut ImageState, line: &CommandLine, shell: &[String]) {
    state.config.config.cmd = Some(argv(line, shell));
    state.cmd_set_in_stage = true;
}

/// `ENTRYPOINT`: sets the entrypoint and, per the reference, drops a CMD inherited from the base image.
pub fn entrypoint(state: &mut ImageState, line: &CommandLine, shell: &[String]) {
    state.config.config.entrypoint = Some(argv(line, shell));
    if !state.cmd_set_in_stage {
        state.config.config.cmd = None;
    }
}

/// `SHELL [...]`: recorded in the config (a Docker field, kept in OCI format too) and used by later steps.
pub fn shell(config: &mut ImageConfig, shell: &[String]) {
    config.config.shell = Some(shell.to_vec());
}

/// `STOPSIGNAL`.
pub fn stop_signal(config: &mut ImageConfig, signal: &str) {
    config.config.stop_signal = Some(signal.to_string());
}

/// `HEALTHCHECK`: replaces any inherited check (`NONE` disables it).
pub fn healthcheck(config: &mut ImageConfig, check: HealthConfig) {
    config.config.healthcheck = Some(check);
}

/// The config form of a resolved HEALTHCHECK.
pub fn health_config(spec: &HealthcheckSpec) -> HealthConfig {
    HealthConfig {
        test: spec.test.clone(),
        interval: spec.interval,
        timeout: spec.timeout,
        start_period: spec.start_period,
        start_interval: spec.start_interval,
        retries: spec.retries,
    }
}

/// `ONBUILD`: appends a trigger to run when this image is used as a base.
pub fn onbuild(config: &mut ImageConfig, trigger: &str) {
    config.config.on_build.get_or_insert_with(Vec::new).push(trigger.to_string());
}

/// `MAINTAINER`: the deprecated author field.
pub fn maintainer(config: &mut ImageConfig, name: &str) {
    config.author = Some(name.to_string());
}

/// `WORKDIR`: the config half (the directory itself is created by a layer).
pub fn workdir(config: &mut ImageConfig, dir: &str) {
    config.config.working_dir = Some(dir.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_dockers_rules() {
        assert_eq!(expand_port("80").unwrap(), ["80/tcp"]);
        assert_eq!(expand_port("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(expand_port("8000-8002/tcp").unwrap(), ["8000/tcp", "8001/tcp", "8002/tcp"]);
        assert!(expand_port("http").is_err());
        assert!(expand_port("80/icmp").is_err());
        assert!(expand_port("9-1").is_err());
    }

    #[test]
    fn env_replaces_in_place() {
        let mut config = ImageConfig::default();
        env(&mut config, &[("A".into(), "1".into()), ("B".into(), "2".into())]);
        env(&mut config, &[("A".into(), "3".into())]);
        assert_eq!(config.config.env.as_deref().unwrap(), ["A=3", "B=2"]);
    }

    #[test]
    fn entrypoint_resets_only_an_inherited_cmd() {
        let mut state = ImageState::from_base(ImageConfig::default(), Vec::new());
        state.config.config.cmd = Some(vec!["inherited".into()]);
        entrypoint(&mut state, &CommandLine::Exec(vec!["/e".into()]), &[]);
        assert_eq!(state.config.config.cmd, None);

        let shell = ["/bin/sh".to_string(), "-c".to_string()];
        cmd(&mut state, &CommandLine::Shell("run it".into()), &shell);
        entrypoint(&mut state, &CommandLine::Exec(vec!["/e".into()]), &shell);
        assert_eq!(state.config.config.cmd.as_deref().unwrap(), ["/bin/sh", "-c", "run it"]);
    }
}
