//! The build arguments every Dockerfile has without declaring them, as BuildKit defines them
//! (dockerfile2llb `defaultArgs` and `proxyEnvFromBuildArgs`):
//!
//! - platform arguments and `TARGETSTAGE`, in the global scope from the start: usable in FROM lines and,
//!   re-declared with a bare `ARG NAME`, inside a stage; a `--build-arg` of the same name overrides each;
//! - proxy arguments (`http_proxy`, `HTTPS_PROXY`, ...), which a RUN step gets in its environment in both
//!   spellings without an ARG line, and which stay out of cache keys and history.

use std::collections::BTreeMap;

use crate::image::Platform;

/// Proxy build arguments; kept out of the image history and of cache keys.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The platform arguments and `TARGETSTAGE`, in BuildKit's order; `target_stage` is the stage being built
/// (`default` when it has no name), `overrides` the build arguments.
pub fn platform_args(
    build: &Platform,
    target: &Platform,
    target_stage: &str,
    overrides: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let variant = |p: &Platform| p.variant.clone().unwrap_or_default();
    let pairs = [
        ("BUILDPLATFORM", build.to_string()),
        ("BUILDOS", build.os.clone()),
        ("BUILDOSVERSION", String::new()),
        ("BUILDARCH", build.architecture.clone()),
        ("BUILDVARIANT", variant(build)),
        ("TARGETPLATFORM", target.to_string()),
        ("TARGETOS", target.os.clone()),
        ("TARGETOSVERSION", String::new()),
        ("TARGETARCH", target.architecture.clone()),
        ("TARGETVARIANT", variant(target)),
        ("TARGETSTAGE", if target_stage.is_empty() { "default".to_string() } else { target_stage.to_string() }),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_string(), overrides.get(k).cloned().unwrap_or(v))).collect()
}

/// Whether `name` is one of the arguments this module defines (never reported as unused).
pub fn is_predefined(name: &str) -> bool {
    PROXY_ARGS.contains(&name)
        || name == "SOURCE_DATE_EPOCH"
        || name.starts_with("BUILDKIT_")
        || matches!(
            name,
            "BUILDPLATFORM"
                | "BUILDOS"
                | "BUILDOSVERSION"
                | "BUILDARCH"
                | "BUILDVARIANT"
                | "TARGETPLATFORM"
                | "TARGETOS"
                | "TARGETOSVERSION"
                | "TARGETARCH"
                | "TARGETVARIANT"
                | "TARGETSTAGE"
        )
}

/// The proxy variables a RUN step gets: each proxy build argument in both spellings (`http_proxy` sets
/// `HTTP_PROXY` too). When both spellings are given, the lower-case one wins, as in BuildKit (it reads
/// the arguments in sorted order, upper case first).
pub fn proxy_env(build_args: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for upper in ["HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY"] {
        let lower = upper.to_ascii_lowercase();
        let value = build_args.get(&lower).or_else(|| build_args.get(upper)).filter(|v| !v.is_empty());
        if let Some(v) = value {
            out.push((upper.to_string(), v.clone()));
            out.push((lower, v.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_arguments_and_overrides() {
        let amd = Platform { os: "linux".into(), architecture: "amd64".into(), variant: None };
        let overrides = BTreeMap::from([("TARGETOS".to_string(), "freebsd".to_string())]);
        let args: BTreeMap<String, String> = platform_args(&amd, &amd, "", &overrides).into_iter().collect();
        assert_eq!(args["TARGETPLATFORM"], "linux/amd64");
        assert_eq!(args["BUILDARCH"], "amd64");
        assert_eq!(args["TARGETVARIANT"], "");
        assert_eq!(args["TARGETOS"], "freebsd");
        assert_eq!(args["TARGETSTAGE"], "default");
        assert!(is_predefined("TARGETSTAGE") && is_predefined("https_proxy") && !is_predefined("FOO"));
    }

    #[test]
    fn proxies_in_both_spellings() {
        let args = BTreeMap::from([
            ("http_proxy".to_string(), "hp".to_string()),
            ("NO_PROXY".to_string(), "np".to_string()),
            ("HTTPS_PROXY".to_string(), "upper".to_string()),
            ("https_proxy".to_string(), "lower".to_string()),
        ]);
        assert_eq!(
            proxy_env(&args),
            [
                ("HTTP_PROXY", "hp"),
                ("http_proxy", "hp"),
                ("HTTPS_PROXY", "lower"),
                ("https_proxy", "lower"),
                ("NO_PROXY", "np"),
                ("no_proxy", "np")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }
}
