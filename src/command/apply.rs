//! `twinops apply [PLAN]`: apply a saved plan, or plan, confirm and apply.

use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::apply::{self, ApplyReport};
use crate::command::environment::{self, Seed, block_on};
use crate::command::plan::{Planned, make};
use crate::command::{Failure, Io, written};
use crate::config::{Config, operational};
use crate::diag::{Diagnostic, Diagnostics, Severity, SourceMap};
use crate::exit::ExitStatus;
use crate::hub::{AnyHub, Hub};
use crate::load;
use crate::plan::{Plan, saved};
use crate::render;

/// Options of `twinops apply`.
pub(super) struct Options<'a> {
    pub(super) plan: Option<&'a Path>,
    pub(super) auto_approve: bool,
    pub(super) report: Option<&'a Path>,
}

pub(super) fn run(
    config: &Config,
    options: &Options<'_>,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
    io: &mut Io<'_>,
) -> Result<ExitStatus, Failure> {
    let (plan, hub, concurrency) = if let Some(path) = options.plan {
        let (environment, hub) = environment::open(config, Seed::OnCreate, io.err)?;
        (
            read_saved(config, path, &hub)?,
            hub,
            environment.concurrency,
        )
    } else {
        let Some(Planned {
            plan,
            hub,
            concurrency,
        }) = make(config, None, sources, diags, io.err)?
        else {
            return Ok(ExitStatus::InvalidPolicies);
        };
        let Some(hub) = hub else {
            return Err(Failure::new(operational(
                "no hub to apply to".to_owned(),
                None,
            )));
        };
        written(render::plan_human(
            io.out,
            &plan,
            config.terminal.color_stdout,
        ))?;
        if plan.changes.is_empty() {
            return Ok(ExitStatus::Success);
        }
        if !options.auto_approve && !confirmed(config, io)? {
            written(writeln!(io.out, "Apply cancelled."))?;
            return Ok(ExitStatus::OperationalError);
        }
        (plan, hub, concurrency)
    };
    let report = execute(config, &plan, &hub, concurrency)?;
    written(render::report_human(io.out, &report))?;
    if let Some(path) = options.report {
        let mut text = Vec::new();
        written(render::report_json(&mut text, &report))?;
        environment::write_atomically(path, &text)?;
    }
    Ok(if report.succeeded() {
        ExitStatus::Success
    } else {
        ExitStatus::OperationalError
    })
}

fn read_saved(config: &Config, path: &Path, hub: &AnyHub) -> Result<Plan, Failure> {
    let shown = load::display_path(&config.root, path);
    let text = std::fs::read_to_string(path).map_err(|error| {
        Failure::new(operational(
            format!("cannot read plan `{shown}`: {error}"),
            None,
        ))
    })?;
    saved::from_json(&shown, &text, &hub.identity())
        .map_err(|error| Failure::new(Diagnostic::from_error(&error, Severity::Error)))
}

/// Asks on the terminal; without one, refuses rather than guess.
fn confirmed(config: &Config, io: &mut Io<'_>) -> Result<bool, Failure> {
    if !config.terminal.interactive {
        return Err(Failure::new(operational(
            "refusing to apply without confirmation: stdin is not a terminal".to_owned(),
            Some("review the plan, then pass `--auto-approve`, or apply a saved plan"),
        )));
    }
    let _ = write!(io.err, "Apply these changes? Only `yes` is accepted: ");
    let _ = io.err.flush();
    let mut answer = String::new();
    io.input.read_line(&mut answer).map_err(|error| {
        Failure::new(operational(
            format!("cannot read the answer: {error}"),
            None,
        ))
    })?;
    Ok(answer.trim() == "yes")
}

fn execute(
    config: &Config,
    plan: &Plan,
    hub: &AnyHub,
    concurrency: usize,
) -> Result<ApplyReport, Failure> {
    let bar = if config.terminal.progress {
        ProgressBar::with_draw_target(
            Some(plan.changes.len() as u64),
            ProgressDrawTarget::stderr(),
        )
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} twins {eta}") {
        bar.set_style(style);
    }
    let mut progress = |done: usize| bar.set_position(done as u64);
    let report = block_on(apply::execute(plan, hub, concurrency, &mut progress))?;
    bar.finish_and_clear();
    Ok(report)
}
