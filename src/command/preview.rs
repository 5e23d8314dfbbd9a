//! `twinops plan --base REV`: the pull-request preview. Compiles the
//! policies at the merge base and at the head (both from git objects) over
//! one fleet, plans the head against the fleet as the base leaves it, and
//! adds the head's live plan when the environment can be reached.

use std::path::Path;

use crate::cli::{Command, PlanFormat};
use crate::command::environment::{self, Seed, block_on};
use crate::command::{
    Failure, Io, Project, committed, git_failure, load_project, read_fleet, written,
};
use crate::compile;
use crate::config::Config;
use crate::diag::{Diagnostics, SourceMap};
use crate::exit::ExitStatus;
use crate::fleet::Fleet;
use crate::gitops::Repository;
use crate::gitops::preview::{self, Live, Preview};
use crate::hub::Hub;
use crate::plan::{self, Context, Origin};
use crate::render;

/// Options of `twinops plan --base`.
struct Options<'a> {
    base: &'a str,
    fleet: Option<&'a Path>,
    format: PlanFormat,
    detailed_exitcode: bool,
}

/// Runs `plan --base`; `command` is a [`Command::Plan`] with a base.
pub(super) fn run(
    command: &Command,
    config: &Config,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
    io: &mut Io<'_>,
) -> Result<ExitStatus, Failure> {
    let Command::Plan {
        fleet,
        base: Some(base),
        format,
        detailed_exitcode,
        ..
    } = command
    else {
        return Ok(ExitStatus::OperationalError);
    };
    let options = Options {
        base,
        fleet: fleet.as_deref(),
        format: *format,
        detailed_exitcode: *detailed_exitcode,
    };
    preview(config, &options, sources, diags, io)
}

fn preview(
    config: &Config,
    options: &Options<'_>,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
    io: &mut Io<'_>,
) -> Result<ExitStatus, Failure> {
    let repository = Repository::discover(&config.root).map_err(|error| git_failure(&error))?;
    let (head_config, head) = committed(config)?;
    let base = repository
        .merge_base(options.base, &head.id)
        .map_err(|error| git_failure(&error))?;
    let mut base_diags = Diagnostics::new();
    let head_project = load_project(&head_config, sources, diags)?;
    // A base without a project (the change that introduces twinops, or
    // moves its policies) has no policies.
    let base_project = config
        .at_revision(&base.id)
        .ok()
        .and_then(|base_config| load_project(&base_config, sources, &mut base_diags).ok())
        .unwrap_or_else(|| Project {
            schemas: crate::schema::SchemaSet::build(&[], &mut Diagnostics::new()),
            policies: crate::validate::PolicySet::default(),
        });
    let fleet = if let Some(path) = options.fleet.or(head_config.fleet.as_deref()) {
        read_fleet(&head_config, path)?
    } else {
        let (_, hub) = environment::open(config, Seed::OnCreate, io.err)?;
        block_on(hub.fleet())?.map_err(|error| environment::hub_failure(&error))?
    };
    let base_desired = compile::fleet(
        &base_project.policies,
        &base_project.schemas,
        &fleet,
        &mut base_diags,
    );
    let head_desired = compile::fleet(&head_project.policies, &head_project.schemas, &fleet, diags);
    let base_plan = plan_of(&base_project, &base_desired, &fleet, sources);
    let as_base_leaves = plan::applied(&base_plan, &fleet);
    let mut change = plan_of(&head_project, &head_desired, &as_base_leaves, sources);
    // What devices report says nothing about a change of policies.
    change.lagging.clear();
    let targets = preview::targets(
        &base_desired,
        &base_project.policies,
        &head_desired,
        &head_project.policies,
    );
    let head_errors = diags.clone().into_sorted();
    let (new_errors, resolved_errors) =
        preview::errors(&base_diags.into_sorted(), &head_errors, sources);
    let live = live_plan(config, &head_project, sources, io);
    let preview = Preview {
        base,
        head,
        change,
        targets,
        new_errors,
        resolved_errors,
        live,
    };
    let apply = format!(
        "twinops apply --rev {} --env {} --auto-approve",
        preview.head.short, config.environment
    );
    written(match options.format {
        PlanFormat::Human => render::preview_human(io.out, &preview, config.terminal.color_stdout),
        PlanFormat::Json => render::preview_json(io.out, &preview),
        PlanFormat::Markdown => render::preview_markdown(io.out, &preview, &apply),
    })?;
    Ok(if diags.has_errors() {
        ExitStatus::InvalidPolicies
    } else if options.detailed_exitcode && !preview.change.changes.is_empty() {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    })
}

/// A plan of `project`'s compiled policies against `fleet`, made offline.
fn plan_of(
    project: &Project,
    desired: &compile::DesiredFleet,
    fleet: &Fleet,
    sources: &SourceMap,
) -> plan::Plan {
    let context = Context {
        origin: Origin {
            hub: None,
            policy_set: plan::policy_set_digest(&project.policies, &project.schemas),
            commit: None,
        },
        create_modules: false,
    };
    plan::diff(
        desired,
        fleet,
        &project.policies,
        &project.schemas,
        sources,
        &context,
    )
}

/// The head against the chosen environment's hub, or why not.
fn live_plan(config: &Config, head: &Project, sources: &SourceMap, io: &mut Io<'_>) -> Live {
    let environment = config.environment.clone();
    let skipped = |reason: String| Live::Skipped {
        environment: environment.clone(),
        reason,
    };
    let (chosen, hub) = match environment::open(config, Seed::OnCreate, io.err) {
        Ok(opened) => opened,
        Err(failure) => return skipped(failure.message),
    };
    let fleet = match block_on(hub.fleet()) {
        Ok(Ok(fleet)) => fleet,
        Ok(Err(error)) => return skipped(error.to_string()),
        Err(failure) => return skipped(failure.message),
    };
    let mut diags = Diagnostics::new();
    let desired = compile::fleet(&head.policies, &head.schemas, &fleet, &mut diags);
    let context = Context {
        origin: Origin {
            hub: Some(hub.identity()),
            policy_set: plan::policy_set_digest(&head.policies, &head.schemas),
            commit: config.revision.as_ref().map(|commit| commit.id.clone()),
        },
        create_modules: chosen.create_modules,
    };
    Live::Planned {
        environment,
        plan: plan::diff(
            &desired,
            &fleet,
            &head.policies,
            &head.schemas,
            sources,
            &context,
        ),
    }
}
