//! `twinops plan`: what apply would change on each twin, and why.

use std::io::Write;
use std::path::Path;

use crate::cli::PlanFormat;
use crate::command::environment::{self, Seed, block_on, hub_failure};
use crate::command::{
    Failure, Io, load_project, read_fleet, snapshot_failure, snapshot_file, written,
};
use crate::compile;
use crate::config::Config;
use crate::config::operational;
use crate::diag::{Diagnostics, SourceMap};
use crate::exit::ExitStatus;
use crate::fleet::Fleet;
use crate::hub::lines::HubLines;
use crate::hub::{AnyHub, Hub};
use crate::plan::stream::{self, Streamed};
use crate::plan::{self, Context, Origin, Plan, saved};
use crate::render;

/// A plan, and the hub it was made against (none for a snapshot).
pub(super) struct Planned {
    pub(super) plan: Plan,
    pub(super) hub: Option<AnyHub>,
    /// Requests in flight at once when it is applied.
    pub(super) concurrency: usize,
}

/// Loads, compiles and plans; `None` when the policies are invalid.
///
/// A snapshot file or a local hub is planned as it is read
/// ([`stream`](crate::plan::stream)); a REST hub's fleet is read whole first.
pub(super) fn make(
    config: &Config,
    fleet_file: Option<&Path>,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
    log: &mut dyn Write,
) -> Result<Option<Planned>, Failure> {
    let project = load_project(config, sources, diags)?;
    if diags.has_errors() {
        return Ok(None);
    }
    let (hub, environment) = if fleet_file.is_some() {
        (None, None)
    } else {
        let (environment, hub) = environment::open(config, Seed::OnCreate, log)?;
        (Some(hub), Some(environment))
    };
    let context = Context {
        origin: Origin {
            hub: hub.as_ref().map(AnyHub::identity),
            policy_set: plan::policy_set_digest(&project.policies, &project.schemas),
            commit: config.revision.as_ref().map(|commit| commit.id.clone()),
        },
        create_modules: environment.as_ref().is_some_and(|e| e.create_modules),
    };
    let streamed = stream::Project {
        policies: &project.policies,
        schemas: &project.schemas,
        sources,
    };
    let planned = match (fleet_file, &hub) {
        (Some(path), _) => {
            let file = snapshot_file(config, path)?;
            stream::plan(&mut *file.lines()?, streamed, &context, diags)
                .map_err(|error| snapshot_failure(&error))?
        }
        (None, Some(AnyHub::Local(local))) => {
            stream::plan(&mut HubLines::new(local), streamed, &context, diags)
                .map_err(|error| hub_failure(&error))?
        }
        (None, _) => Streamed::Unordered,
    };
    let plan = match planned {
        Streamed::Plan(plan) => plan,
        Streamed::Unordered => {
            // Read whole: a REST hub, or lines in another order.
            let fleet = match (fleet_file, &hub) {
                (Some(path), _) => read_fleet(config, path)?,
                (None, Some(hub)) => block_on(hub.fleet())?.map_err(|error| hub_failure(&error))?,
                (None, None) => Fleet::default(),
            };
            let desired = compile::fleet(&project.policies, &project.schemas, &fleet, diags);
            plan::diff(
                &desired,
                &fleet,
                &project.policies,
                &project.schemas,
                sources,
                &context,
            )
        }
    };
    if diags.has_errors() {
        return Ok(None);
    }
    Ok(Some(Planned {
        plan,
        hub,
        concurrency: environment.map_or(1, |environment| environment.concurrency),
    }))
}

/// Options of `twinops plan`.
pub(super) struct Options<'a> {
    pub(super) fleet: Option<&'a Path>,
    pub(super) out: Option<&'a Path>,
    pub(super) format: PlanFormat,
    pub(super) detailed_exitcode: bool,
}

pub(super) fn run(
    config: &Config,
    options: &Options<'_>,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
    io: &mut Io<'_>,
) -> Result<ExitStatus, Failure> {
    let Some(Planned { plan, .. }) = make(config, options.fleet, sources, diags, io.err)? else {
        return Ok(ExitStatus::InvalidPolicies);
    };
    let apply = match options.out {
        Some(path) => format!("twinops apply {}", path.display()),
        None => format!("twinops apply --env {}", config.environment),
    };
    let render = |out: &mut dyn Write| match options.format {
        PlanFormat::Human => render::plan_human(out, &plan, config.terminal.color_stdout),
        PlanFormat::Json => render::plan_json(out, &plan),
        PlanFormat::Markdown => render::plan_markdown(out, &plan, &apply),
    };
    let save = |path: &Path| {
        environment::write_atomically_with(path, &mut |out| saved::write_file(&plan, out))
    };
    match (options.out, options.format) {
        // The text and the Markdown are a summary, held while the plan
        // file is written on another core, then shown first.
        (Some(path), PlanFormat::Human | PlanFormat::Markdown) => {
            let (shown, saved) = std::thread::scope(|scope| {
                let saving = scope.spawn(|| save(path));
                let mut shown = Vec::new();
                let rendered = render(&mut shown);
                (rendered.map(|()| shown), saving.join())
            });
            written(shown.and_then(|shown| io.out.write_all(&shown)))?;
            saved.map_err(|_| {
                Failure::new(operational(
                    format!("cannot write `{}`", path.display()),
                    None,
                ))
            })??;
        }
        // The JSON is the whole plan: it streams out, then to the file.
        (out, _) => {
            written(render(io.out))?;
            out.map(save).transpose()?;
        }
    }
    if let Some(path) = options.out {
        let _ = writeln!(
            io.err,
            "Saved the plan to `{}`; apply it with `{apply}`.",
            path.display()
        );
    }
    Ok(if options.detailed_exitcode && !plan.changes.is_empty() {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}
