//! `twinops history` and `twinops blame`: the audit, from git history.
//!
//! history: the commits that touched policies, schemas or the project file,
//! each compiled once (oldest first, each compared with the one before) over
//! the fleet. blame: a device's compiled leaves with the policy line that
//! set each and that line's commit, author and date, beside the live twin.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cli::{Command, OutputFormat};
use crate::command::environment::{self, Seed, block_on};
use crate::command::{Failure, Io, committed, git_failure, load_project, read_fleet, written};
use crate::compile::{self, DesiredFleet};
use crate::config::{Config, operational};
use crate::diag::{Diagnostics, Severity, SourceMap};
use crate::exit::ExitStatus;
use crate::fleet::Fleet;
use crate::gitops::audit::{self, Entry};
use crate::gitops::{CommitInfo, Repository};
use crate::hub::Hub;
use crate::render;
use crate::validate::PolicySet;

/// The fleet the audit compiles over: `--fleet`, the project's snapshot,
/// or the environment's hub.
fn audit_fleet(config: &Config, fleet: Option<&Path>, io: &mut Io<'_>) -> Result<Fleet, Failure> {
    let fleet = if let Some(path) = fleet.or(config.fleet.as_deref()) {
        read_fleet(config, path)?
    } else {
        let (_, hub) = environment::open(config, Seed::OnCreate, io.err)?;
        block_on(hub.fleet())?.map_err(|error| environment::hub_failure(&error))?
    };
    if fleet.devices.is_empty() {
        return Err(Failure::new(operational(
            format!(
                "no twins to compile the policies over: environment `{}` holds none",
                config.environment
            ),
            Some(
                "pass `--fleet SNAPSHOT`, set `[fleet] snapshot` in twinops.toml, or choose an environment with `--env`",
            ),
        )));
    }
    Ok(fleet)
}

/// The policies at `revision` compiled over `fleet`, with their error count;
/// a revision without a project is an empty policy set.
fn compiled_at(
    config: &Config,
    revision: &str,
    fleet: &Fleet,
    sources: &mut SourceMap,
) -> (DesiredFleet, PolicySet, usize) {
    let Ok(at) = config.at_revision(revision) else {
        return (DesiredFleet::default(), PolicySet::default(), 0);
    };
    let mut diags = Diagnostics::new();
    // A revision whose policy directory is gone (deleted, renamed) has none.
    let Ok(project) = load_project(&at, sources, &mut diags) else {
        return (DesiredFleet::default(), PolicySet::default(), 1);
    };
    let desired = compile::fleet(&project.policies, &project.schemas, fleet, &mut diags);
    (desired, project.policies, diags.count(Severity::Error))
}

/// Runs `history` or `blame`.
pub(super) fn run(
    command: &Command,
    config: &Config,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
    io: &mut Io<'_>,
) -> Result<ExitStatus, Failure> {
    match command {
        Command::History {
            device,
            since,
            fleet,
            format,
        } => {
            let options = HistoryOptions {
                device: device.as_deref(),
                since: since.as_deref(),
                fleet: fleet.as_deref(),
                format: *format,
            };
            history(config, &options, sources, io)
        }
        Command::Blame {
            device,
            property,
            fleet,
            format,
        } => {
            let options = BlameOptions {
                device,
                property: property.as_deref(),
                fleet: fleet.as_deref(),
                format: *format,
            };
            blame(config, &options, sources, diags, io)
        }
        _ => Ok(ExitStatus::OperationalError),
    }
}

/// Options of `twinops history`.
struct HistoryOptions<'a> {
    device: Option<&'a str>,
    since: Option<&'a str>,
    fleet: Option<&'a Path>,
    format: OutputFormat,
}

fn history(
    config: &Config,
    options: &HistoryOptions<'_>,
    sources: &mut SourceMap,
    io: &mut Io<'_>,
) -> Result<ExitStatus, Failure> {
    let repository = Repository::discover(&config.root).map_err(|error| git_failure(&error))?;
    let head = config
        .revision
        .as_ref()
        .map_or_else(|| "HEAD".to_owned(), |commit| commit.id.clone());
    let mut paths: Vec<&Path> = vec![&config.policies, &config.project_file];
    if let Some(schemas) = &config.schemas {
        paths.push(schemas);
    }
    if let Some(since) = options.since {
        let reachable = repository
            .is_ancestor(since, &head)
            .map_err(|error| git_failure(&error))?;
        if !reachable {
            return Err(Failure::new(operational(
                format!(
                    "`{since}` is not an ancestor of `{head}`: there is no history between them"
                ),
                Some("name a commit on the branch's own history"),
            )));
        }
    }
    let commits = repository
        .log(&head, options.since, &paths)
        .map_err(|error| git_failure(&error))?;
    let fleet = audit_fleet(config, options.fleet, io)?;
    let mut entries: Vec<Entry> = Vec::new();
    let mut previous: Option<(DesiredFleet, PolicySet)> = None;
    for commit in commits.iter().rev() {
        let before = if let Some(before) = previous.take() {
            before
        } else {
            let (desired, policies, _) =
                compiled_at(config, &format!("{}^", commit.id), &fleet, sources);
            (desired, policies)
        };
        let (desired, policies, errors) = compiled_at(config, &commit.id, &fleet, sources);
        let effect = audit::effect(
            (&before.0, &before.1),
            (&desired, &policies),
            options.device,
        );
        if options.device.is_none() || !effect.device_leaves.is_empty() {
            entries.push(Entry {
                commit: commit.clone(),
                effect,
                errors,
            });
        }
        previous = Some((desired, policies));
    }
    entries.reverse();
    written(match options.format {
        OutputFormat::Human => render::history_human(io.out, &entries),
        OutputFormat::Json => render::history_json(io.out, &entries),
    })?;
    Ok(ExitStatus::Success)
}

/// Options of `twinops blame`.
struct BlameOptions<'a> {
    device: &'a str,
    property: Option<&'a str>,
    fleet: Option<&'a Path>,
    format: OutputFormat,
}

fn blame(
    config: &Config,
    options: &BlameOptions<'_>,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
    io: &mut Io<'_>,
) -> Result<ExitStatus, Failure> {
    let repository = Repository::discover(&config.root).map_err(|error| git_failure(&error))?;
    let (head_config, head) = committed(config)?;
    let project = load_project(&head_config, sources, diags)?;
    let fleet = if let Some(path) = options.fleet {
        read_fleet(config, path)?
    } else {
        let (_, hub) = environment::open(config, Seed::OnCreate, io.err)?;
        block_on(hub.fleet())?.map_err(|error| environment::hub_failure(&error))?
    };
    let Some(device) = fleet.device(options.device) else {
        return Err(Failure::new(operational(
            format!("no device `{}` in the fleet", options.device),
            None,
        )));
    };
    let desired = compile::fleet(&project.policies, &project.schemas, &fleet, diags);
    let mut lines = audit::lines(&desired, &project.policies, sources, device);
    if let Some(property) = options.property {
        let wanted = if property.starts_with('/') {
            property.to_owned()
        } else {
            format!("/{}", property.replace('.', "/"))
        };
        lines.retain(|line| {
            line.path == wanted
                || line
                    .path
                    .strip_prefix(&wanted)
                    .is_some_and(|rest| rest.starts_with('/'))
        });
    }
    let mut blamed: BTreeMap<String, Vec<CommitInfo>> = BTreeMap::new();
    for line in &mut lines {
        let (Some(file), Some(number)) = (&line.file, line.line) else {
            continue;
        };
        if !blamed.contains_key(file) {
            let per_line = repository
                .blame(&head.id, file)
                .map_err(|error| git_failure(&error))?;
            blamed.insert(file.clone(), per_line);
        }
        line.commit = blamed
            .get(file)
            .and_then(|per_line| per_line.get(number.saturating_sub(1)))
            .cloned();
    }
    let stamps: Vec<(String, Option<String>)> = std::iter::once(&device.twin)
        .chain(device.modules.values())
        .map(|twin| {
            let id = crate::hub::TwinId::from(twin).display();
            let stamp = twin
                .json
                .pointer("/tags/twinops/commit")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned);
            (id, stamp)
        })
        .collect();
    let blame = render::Blame {
        device: options.device,
        head: &head,
        lines: &lines,
        stamps: &stamps,
    };
    written(match options.format {
        OutputFormat::Human => render::blame_human(io.out, &blame),
        OutputFormat::Json => render::blame_json(io.out, &blame),
    })?;
    Ok(if diags.has_errors() {
        ExitStatus::InvalidPolicies
    } else {
        ExitStatus::Success
    })
}
