//! `kiln build --dry-run`: the plan as text — stages, bases, dependencies, which stages could run in
//! parallel, and every step with its arguments after expansion. Base images are not pulled for this, so
//! their ENV is unknown and shown as such.

use std::fmt::Write as _;

use super::scope::{BaseConfig, ResolvedStep, StageScope};
use super::{Base, Plan, PlanError};

/// Renders the plan of the needed stages.
pub fn render_dry_run(plan: &Plan) -> Result<String, PlanError> {
    let mut out = String::new();
    let target = &plan.stages[plan.target];
    let _ = writeln!(out, "target: stage {} (build order: {})", target.label(), order_text(plan));
    for level in 0..=plan.order.iter().map(|&i| plan.stages[i].level).max().unwrap_or(0) {
        let group: Vec<String> =
            plan.order.iter().filter(|&&i| plan.stages[i].level == level).map(|&i| plan.stages[i].label()).collect();
        if group.len() > 1 {
            let _ = writeln!(out, "parallel: {}", group.join(", "));
        }
    }
    for &index in &plan.order {
        let stage = &plan.stages[index];
        let base = match &stage.base {
            Base::Scratch => "scratch".to_string(),
            Base::Image(image) => format!("image {image} (its ENV is not known without pulling it)"),
            Base::Stage(i) => format!("stage {}", plan.stages[*i].label()),
        };
        let deps: Vec<String> = stage.deps.iter().map(|d| plan.stages[*d].label()).collect();
        let _ = writeln!(out, "\nstage {} (line {}): FROM {base}", stage.label(), stage.span.start_line);
        if !deps.is_empty() {
            let _ = writeln!(out, "  depends on: {}", deps.join(", "));
        }
        let mut scope = StageScope::new(plan, index, &BaseConfig::default());
        for instruction in &stage.instructions {
            let step = scope.resolve(instruction)?;
            let _ = writeln!(out, "  {:>4}: {}", instruction.span.start_line, describe(&step, plan));
        }
    }
    Ok(out)
}

fn order_text(plan: &Plan) -> String {
    plan.order.iter().map(|&i| plan.stages[i].label()).collect::<Vec<_>>().join(" → ")
}

fn describe(step: &ResolvedStep, plan: &Plan) -> String {
    use crate::dockerfile::instruction::CommandLine;
    let line = |c: &CommandLine| match c {
        CommandLine::Shell(s) => s.clone(),
        CommandLine::Exec(a) => format!("{a:?}"),
    };
    let from = |f: &Option<super::CopyFrom>| match f {
        Some(super::CopyFrom::Stage(i)) => format!(" --from={}", plan.stages[*i].label()),
        Some(super::CopyFrom::Image(image)) => format!(" --from={image}"),
        None => String::new(),
    };
    let pairs = |p: &[(String, String)]| p.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join(" ");
    match step {
        ResolvedStep::Run { cmd, mounts, .. } => {
            let m = if mounts.is_empty() { String::new() } else { format!(" ({} mounts)", mounts.len()) };
            format!("RUN{m} {}", line(cmd))
        }
        ResolvedStep::Copy(c) => format!("COPY{} {} {}", from(&c.from), c.sources.join(" "), c.dest),
        ResolvedStep::Add(c) => format!("ADD {} {}", c.sources.join(" "), c.dest),
        ResolvedStep::Env(p) => format!("ENV {}", pairs(p)),
        ResolvedStep::Label(p) => format!("LABEL {}", pairs(p)),
        ResolvedStep::Expose(p) => format!("EXPOSE {}", p.join(" ")),
        ResolvedStep::Workdir(w) => format!("WORKDIR {w}"),
        ResolvedStep::User(u) => format!("USER {u}"),
        ResolvedStep::Volume(v) => format!("VOLUME {v:?}"),
        ResolvedStep::Cmd(c) => format!("CMD {}", line(c)),
        ResolvedStep::Entrypoint(c) => format!("ENTRYPOINT {}", line(c)),
        ResolvedStep::Shell(s) => format!("SHELL {s:?}"),
        ResolvedStep::Stopsignal(s) => format!("STOPSIGNAL {s}"),
        ResolvedStep::Healthcheck(h) => format!("HEALTHCHECK {:?}", h.test),
        ResolvedStep::Onbuild(t) => format!("ONBUILD {t}"),
        ResolvedStep::Maintainer(m) => format!("MAINTAINER {m}"),
        ResolvedStep::Arg(a) => {
            let shown: Vec<String> = a
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v:?}"),
                    None => format!("{k} (unset)"),
                })
                .collect();
            format!("ARG {}", shown.join(" "))
        }
    }
}
