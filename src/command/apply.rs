//! `twinops apply [PLAN]`: apply a saved plan, or plan, confirm and apply.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::apply::{self, ApplyReport};
use crate::command::environment::{self, Seed, block_on};
use crate::command::plan::{Planned, make};
use crate::command::{Failure, Io, default_lock_dir, git_failure, written};
use crate::config::{Config, operational};
use crate::diag::{Diagnostic, Diagnostics, Severity, SourceMap};
use crate::exit::ExitStatus;
use crate::gitops::runner::{Lock, lock_path};
use crate::gitops::{CommitInfo, Repository};
use crate::hub::{AnyHub, Hub};
use crate::load;
use crate::plan::{Plan, saved};
use crate::render;

/// Options of `twinops apply`.
pub(super) struct Options<'a> {
    pub(super) plan: Option<&'a Path>,
    pub(super) auto_approve: bool,
    pub(super) report: Option<&'a Path>,
    pub(super) allow_dirty: bool,
    pub(super) push_notes: Option<&'a str>,
}

pub(super) fn run(
    config: &Config,
    options: &Options<'_>,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
    io: &mut Io<'_>,
) -> Result<ExitStatus, Failure> {
    let repository = match &config.revision {
        Some(_) => Some(committed_only(config, options.allow_dirty)?),
        None if options.push_notes.is_some() => {
            return Err(Failure::new(operational(
                "`--push-notes` needs `--rev`: notes record applies of commits".to_owned(),
                None,
            )));
        }
        None => None,
    };
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
            // An apply of a commit that finds it in effect is on the record too.
            if let (Some(repository), Some(commit)) = (&repository, &config.revision) {
                let nothing = ApplyReport::default();
                record(
                    repository,
                    commit,
                    config,
                    &hub,
                    &nothing,
                    options.push_notes,
                    io,
                )?;
            }
            return Ok(ExitStatus::Success);
        }
        if !options.auto_approve && !confirmed(config, io)? {
            written(writeln!(io.out, "Apply cancelled."))?;
            return Ok(ExitStatus::OperationalError);
        }
        (plan, hub, concurrency)
    };
    let report = execute(config, &plan, &hub, concurrency, io.err)?;
    written(render::report_human(io.out, &report))?;
    if let (Some(repository), Some(commit)) = (&repository, &config.revision) {
        record(
            repository,
            commit,
            config,
            &hub,
            &report,
            options.push_notes,
            io,
        )?;
    }
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

/// The repository, once it is clear that the policies, schemas and project
/// file in the work tree are committed (or `--allow-dirty` says to go on).
fn committed_only(config: &Config, allow_dirty: bool) -> Result<Repository, Failure> {
    let repository = Repository::discover(&config.root).map_err(|error| git_failure(&error))?;
    let mut paths: Vec<&Path> = vec![&config.policies, &config.project_file];
    if let Some(schemas) = &config.schemas {
        paths.push(schemas);
    }
    let uncommitted = repository
        .uncommitted(&paths)
        .map_err(|error| git_failure(&error))?;
    if !uncommitted.is_empty() && !allow_dirty {
        return Err(Failure::new(operational(
            format!(
                "refusing to apply a committed state while policy files have uncommitted changes: {}",
                crate::render::abbreviated(&uncommitted)
            ),
            Some("commit or stash them, or pass `--allow-dirty` to apply the commit anyway"),
        )));
    }
    Ok(repository)
}

/// Records the apply as a note on the commit (and pushes the notes when
/// asked): who, when, which environment and hub, and what happened.
fn record(
    repository: &Repository,
    commit: &CommitInfo,
    config: &Config,
    hub: &AnyHub,
    report: &ApplyReport,
    push_notes: Option<&str>,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    let note = crate::gitops::ApplyNote {
        environment: config.environment.clone(),
        hub: hub.identity(),
        by: repository.who(),
        at: crate::hub::model::timestamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        ),
        changed: report.count(|outcome| matches!(outcome, apply::Outcome::Applied { .. })),
        stale: report.count(|outcome| matches!(outcome, apply::Outcome::Stale { .. })),
        failed: report.count(|outcome| matches!(outcome, apply::Outcome::Failed { .. })),
    };
    if let Some(remote) = push_notes {
        repository
            .sync_notes(remote)
            .map_err(|error| git_failure(&error))?;
    }
    repository
        .add_note(&commit.id, &note.line())
        .map_err(|error| git_failure(&error))?;
    let _ = writeln!(
        io.err,
        "Recorded the apply on {} in `{}`.",
        commit.short,
        crate::gitops::NOTES_REF
    );
    if let Some(remote) = push_notes {
        repository
            .push_notes(remote)
            .map_err(|error| git_failure(&error))?;
        let _ = writeln!(
            io.err,
            "Pushed `{}` to `{remote}`.",
            crate::gitops::NOTES_REF
        );
    }
    Ok(())
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

/// Applies `plan`, holding the hub's lock (the one `twinops run` takes) so
/// that an apply and a runner on this machine never write at once.
fn execute(
    config: &Config,
    plan: &Plan,
    hub: &AnyHub,
    concurrency: usize,
    err: &mut dyn Write,
) -> Result<ApplyReport, Failure> {
    let lock_path = lock_path(&default_lock_dir(), &hub.identity().id);
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
    let report = block_on(async {
        let lock = Lock::acquire(&lock_path, &AtomicBool::new(false), || {
            let _ = writeln!(err, "Waiting for another apply to this hub to finish.");
        })
        .await;
        match lock {
            Ok(_held) => Ok(apply::execute(plan, hub, concurrency, &mut progress).await),
            Err(error) => Err(Failure::new(operational(
                format!("cannot lock `{}`: {error}", lock_path.display()),
                None,
            ))),
        }
    })??;
    bar.finish_and_clear();
    Ok(report)
}
