//! Is a build failure worth another attempt? Decided from the error's types, never its text: a registry
//! answering 5xx/429/408, a timed-out or broken connection, an ADD URL answering 5xx — yes; a failing RUN,
//! a Dockerfile or plan error, a missing file, a refused credential — no.
//!
//! Wrapper errors are opened by matching their variants, because `#[error(transparent)]` wrappers hand
//! their *inner* error's source to `source()`, so the inner error itself never appears in the chain.

use std::error::Error;

use crate::build::BuildError;
use crate::build::step::StepError;
use crate::build::step::fetch::FetchError;
use crate::registry::RegistryError;
use crate::transfer::pull::PullError;
use crate::transfer::push::PushError;

/// Why `error` (anything a build or its push returned) may pass on a retry, or `None` when it is final.
pub fn transient(error: &anyhow::Error) -> Option<String> {
    error.chain().find_map(verdict).flatten()
}

/// `Some(verdict)` when `e` is a type this module knows (so the search stops), `None` to look further.
fn verdict(e: &(dyn Error + 'static)) -> Option<Option<String>> {
    if let Some(b) = e.downcast_ref::<BuildError>() {
        return Some(build(b));
    }
    if let Some(s) = e.downcast_ref::<StepError>() {
        return Some(step(s));
    }
    if let Some(r) = e.downcast_ref::<RegistryError>() {
        return Some(r.transient());
    }
    if let Some(p) = e.downcast_ref::<PullError>() {
        return Some(pull(p));
    }
    if let Some(p) = e.downcast_ref::<PushError>() {
        return Some(match p {
            PushError::Registry(r) => r.transient(),
            _ => None,
        });
    }
    None
}

fn build(e: &BuildError) -> Option<String> {
    match e {
        BuildError::Pull(p) => pull(p),
        BuildError::Step { source, .. } => step(source),
        _ => None,
    }
}

fn pull(e: &PullError) -> Option<String> {
    match e {
        PullError::Registry(r) => r.transient(),
        PullError::Store(_) => None,
    }
}

fn step(e: &StepError) -> Option<String> {
    match e {
        StepError::Image(b) => build(b),
        StepError::Cache(r) => r.transient(),
        StepError::Fetch(FetchError::Status { url, status }) if *status >= 500 || *status == 429 => {
            Some(format!("{url} answered {status}"))
        }
        // A RUN that failed is the Dockerfile's failure, whatever its output said about the network.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::NetFailure;

    fn status(code: u16) -> RegistryError {
        RegistryError::Status {
            registry: "r:5000".into(),
            op: "GET manifest x".into(),
            status: code,
            detail: String::new(),
        }
    }

    fn connect(failure: NetFailure) -> RegistryError {
        RegistryError::Connect { registry: "r".into(), op: "GET".into(), message: "m".into(), failure }
    }

    fn wrapped(e: BuildError) -> anyhow::Error {
        anyhow::Error::new(e).context("building app")
    }

    #[test]
    fn registry_5xx_timeouts_and_resets_are_transient() {
        let e = wrapped(BuildError::Pull(PullError::Registry(status(503))));
        assert_eq!(transient(&e).as_deref(), Some("registry r:5000 answered 503 to GET manifest x"));
        let step_pull = BuildError::Step {
            location: "Dockerfile:3".into(),
            instruction: "COPY --from=img".into(),
            source: StepError::Image(Box::new(BuildError::Pull(PullError::Registry(connect(NetFailure::Reset))))),
        };
        assert!(transient(&wrapped(step_pull)).is_some());
        let cache = BuildError::Step {
            location: "Dockerfile:4".into(),
            instruction: "RUN".into(),
            source: StepError::Cache(Box::new(connect(NetFailure::Timeout))),
        };
        assert!(transient(&wrapped(cache)).is_some());
        assert!(transient(&anyhow::Error::new(PushError::Registry(status(502)))).is_some());
    }

    #[test]
    fn everything_else_is_final() {
        for e in [
            BuildError::Pull(PullError::Registry(status(401))),
            BuildError::Pull(PullError::Registry(status(404))),
            BuildError::Pull(PullError::Registry(connect(NetFailure::Other))),
            BuildError::NotInStore("x".into()),
            BuildError::Step {
                location: "Dockerfile:2".into(),
                instruction: "RUN pip install".into(),
                source: StepError::RunFailed {
                    code: 1,
                    command: "pip install".into(),
                    tail: vec!["Connection reset by peer (503)".into()],
                },
            },
        ] {
            let text = e.to_string();
            assert_eq!(transient(&wrapped(e)), None, "{text}");
        }
    }
}
