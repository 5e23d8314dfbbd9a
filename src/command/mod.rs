//! Commands: one file per subcommand, each wiring inputs → stages → render.
//! No rules live here; shared steps (load the project, read the fleet) are
//! the functions below.

mod apply;
mod audit;
mod compile;
mod environment;
mod plan;
mod preview;
mod run;
mod schema;
mod serve;
mod snapshots;
mod status;
mod validate;

use std::io::{BufRead, Write};
use std::path::Path;

use crate::cli::{Command, HubCommand};
use crate::config::{Config, operational};
use crate::diag::{Diagnostic, Diagnostics, FileId, SourceFile, SourceMap};
use crate::exit::ExitStatus;
use crate::fleet::Fleet;
use crate::gitops::{CommitInfo, Repository};
use crate::hub::lines::{SnapshotLines, TwinLines};
use crate::hub::snapshot;
use crate::load;
use crate::schema::{PolicySchema, SchemaSet};
use crate::validate::{self as validate_stage, PolicySet};

/// An operational failure: a span-less diagnostic, boxed.
pub type Failure = Box<Diagnostic>;

/// The streams a command talks through.
pub struct Io<'a> {
    /// The result.
    pub out: &'a mut dyn Write,
    /// Logs and prompts (diagnostics are rendered by the caller).
    pub err: &'a mut dyn Write,
    /// Answers to prompts.
    pub input: &'a mut dyn BufRead,
}

/// Runs one subcommand; user problems go to `diags`, the result to `io.out`.
///
/// # Errors
/// An operational failure (a file, the fleet, the hub), as a span-less
/// diagnostic.
pub fn run(
    command: &Command,
    config: &Config,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
    io: &mut Io<'_>,
) -> Result<ExitStatus, Failure> {
    let out = &mut *io.out;
    match command {
        Command::Validate {
            fleet,
            no_fleet,
            format,
        } => {
            let fleet = if *no_fleet {
                None
            } else {
                fleet.clone().or_else(|| config.fleet.clone())
            };
            validate::run(config, fleet.as_deref(), *format, sources, diags, out)
        }
        Command::Compile {
            fleet,
            device,
            format,
        } => {
            let fleet = fleet
                .clone()
                .or_else(|| config.fleet.clone())
                .ok_or_else(|| {
                    operational(
                        "no fleet to compile for".to_owned(),
                        Some("pass `--fleet FILE`, or set `[fleet] snapshot` in twinops.toml"),
                    )
                })?;
            compile::run(
                config,
                &fleet,
                device.as_deref(),
                *format,
                sources,
                diags,
                out,
            )
        }
        Command::Plan { base: Some(_), .. } => preview::run(command, config, sources, diags, io),
        Command::Plan {
            fleet,
            out: file,
            format,
            detailed_exitcode,
            ..
        } => {
            let options = plan::Options {
                fleet: fleet.as_deref(),
                out: file.as_deref(),
                format: *format,
                detailed_exitcode: *detailed_exitcode,
            };
            plan::run(config, &options, sources, diags, io)
        }
        Command::Apply {
            plan,
            auto_approve,
            report,
            allow_dirty,
            push_notes,
        } => {
            let options = apply::Options {
                plan: plan.as_deref(),
                auto_approve: *auto_approve,
                report: report.as_deref(),
                allow_dirty: *allow_dirty,
                push_notes: push_notes.as_deref(),
            };
            apply::run(config, &options, sources, diags, io)
        }
        Command::Status {
            fleet,
            twins,
            format,
        } => status::run(config, fleet.as_deref(), *twins, *format, io),
        Command::Snapshot { out: file } => snapshots::export(config, file, io),
        Command::Hub {
            command: HubCommand::Import { file },
        } => snapshots::import(config, file, io),
        Command::Hub {
            command: HubCommand::Serve(args),
        } => serve::run(config, args, io),
        Command::Run(args) => run::run(config, args, io),
        Command::History { .. } | Command::Blame { .. } => {
            audit::run(command, config, sources, diags, io)
        }
        Command::Schema { name } => schema::run(name.as_deref(), out),
    }
}

/// A loaded project: its schemas and its sound policies.
pub(super) struct Project {
    schemas: SchemaSet,
    policies: PolicySet,
}

/// Reads schemas and policies, and validates them.
pub(super) fn load_project(
    config: &Config,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
) -> Result<Project, Failure> {
    let schema_files = match (&config.schemas, &config.revision) {
        (Some(dir), Some(revision)) => {
            at_revision(config, revision, dir, &[".schema.json"])?.unwrap_or_default()
        }
        (Some(dir), None) if dir.is_dir() => {
            read(load::read_dir(&config.root, dir, &[".schema.json"]))?
        }
        _ => Vec::new(),
    };
    let schema_ids = add_all(sources, schema_files);
    let schema_refs: Vec<(FileId, &SourceFile)> = schema_ids
        .iter()
        .filter_map(|&id| sources.get(id).map(|file| (id, file)))
        .collect();
    let schemas = SchemaSet::build(&schema_refs, diags);

    let policy_files = match &config.revision {
        Some(revision) => at_revision(config, revision, &config.policies, &[".yaml", ".yml"])?
            .ok_or_else(|| {
                operational(
                    format!(
                        "`{}` does not exist at {}",
                        load::display_path(&config.root, &config.policies),
                        revision.short
                    ),
                    None,
                )
            })?,
        None => read(load::read_dir(
            &config.root,
            &config.policies,
            &[".yaml", ".yml"],
        ))?,
    };
    let policy_ids = add_all(sources, policy_files);
    let policy_refs: Vec<(FileId, &SourceFile)> = policy_ids
        .iter()
        .filter_map(|&id| sources.get(id).map(|file| (id, file)))
        .collect();
    let policy_schema = PolicySchema::bundled().map_err(|error| {
        Failure::new(Diagnostic::from_error(&error, crate::diag::Severity::Error))
    })?;
    let documents = load::documents(&policy_refs, &policy_schema, diags);
    let policies =
        validate_stage::policies(documents, &schemas, config.unschematized, sources, diags);
    Ok(Project { schemas, policies })
}

/// Where applies and runners on this machine lock each hub unless told
/// otherwise.
fn default_lock_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("twinops-locks")
}

/// A git failure as an operational one.
fn git_failure(error: &crate::gitops::GitError) -> Failure {
    Failure::new(Diagnostic::from_error(error, crate::diag::Severity::Error))
}

/// The project as committed: at `--rev`, else at `HEAD`, with that commit.
fn committed(config: &Config) -> Result<(Config, CommitInfo), Failure> {
    let at = match &config.revision {
        Some(_) => config.clone(),
        None => config
            .at_revision("HEAD")
            .map_err(|failure| match failure {
                crate::config::ConfigFailure::Operational(diagnostic) => diagnostic,
                crate::config::ConfigFailure::Invalid(invalid) => Failure::new(invalid.0),
            })?,
    };
    let head = at
        .revision
        .clone()
        .ok_or_else(|| Failure::new(operational("no commit to read".to_owned(), None)))?;
    Ok((at, head))
}

/// The files under `dir` at `revision`, from git objects; `None` when
/// `dir` does not exist there.
fn at_revision(
    config: &Config,
    revision: &CommitInfo,
    dir: &Path,
    extensions: &[&str],
) -> Result<Option<Vec<SourceFile>>, Failure> {
    Repository::discover(&config.root)
        .and_then(|repository| repository.read_dir(&revision.id, dir, extensions))
        .map_err(|error| git_failure(&error))
}

fn add_all(sources: &mut SourceMap, files: Vec<SourceFile>) -> Vec<FileId> {
    files.into_iter().map(|file| sources.add(file)).collect()
}

fn read<T>(result: Result<T, load::LoadError>) -> Result<T, Failure> {
    result
        .map_err(|error| Failure::new(Diagnostic::from_error(&error, crate::diag::Severity::Error)))
}

/// Where a fleet snapshot is read from: with `--rev`, the project's own
/// snapshot (or a seed) as it is at that revision when git has it there,
/// else the file on disk.
enum SnapshotFile {
    /// Committed text, with the path shown for it.
    Committed {
        shown: String,
        text: std::sync::Arc<str>,
    },
    /// A file on disk, and how messages show it.
    Disk {
        path: std::path::PathBuf,
        shown: String,
    },
}

fn snapshot_file(config: &Config, path: &Path) -> Result<SnapshotFile, Failure> {
    let shown = load::display_path(&config.root, path);
    // Only the project's own snapshot and seeds are committed files; a
    // `--fleet FILE` is always the file on disk.
    let project_file = config.fleet.as_deref() == Some(path)
        || config.environments.values().any(|environment| {
            matches!(&environment.hub, crate::config::HubLocation::Local { seed: Some(seed), .. } if seed == path)
        });
    let committed = match &config.revision {
        Some(revision) if project_file => Repository::discover(&config.root)
            .and_then(|repository| repository.read_file(&revision.id, path))
            .map_err(|error| {
                Failure::new(Diagnostic::from_error(&error, crate::diag::Severity::Error))
            })?,
        _ => None,
    };
    Ok(match committed {
        Some(file) => SnapshotFile::Committed {
            shown: file.path,
            text: file.text,
        },
        None => SnapshotFile::Disk {
            path: path.to_owned(),
            shown,
        },
    })
}

impl SnapshotFile {
    /// Its lines, a batch at a time.
    fn lines(&self) -> Result<Box<dyn TwinLines + '_>, Failure> {
        Ok(match self {
            Self::Committed { shown, text } => Box::new(SnapshotLines::new(text.as_bytes(), shown)),
            Self::Disk { path, shown } => {
                let file = std::fs::File::open(path).map_err(|error| {
                    environment::hub_failure(&crate::hub::HubError::Io {
                        path: shown.clone(),
                        reason: error.to_string(),
                    })
                })?;
                Box::new(SnapshotLines::new(file, shown))
            }
        })
    }
}

/// Reads a fleet snapshot whole (see [`snapshot_file`]).
fn read_fleet(config: &Config, path: &Path) -> Result<Fleet, Failure> {
    let fleet = match snapshot_file(config, path)? {
        SnapshotFile::Committed { shown, text } => snapshot::parse(&shown, &text),
        SnapshotFile::Disk { path, shown } => snapshot::read(&path, &shown),
    };
    fleet.map_err(|error| snapshot_failure(&error))
}

/// Imports a snapshot into a local hub, all or nothing, as it is read.
fn import_snapshot(
    config: &Config,
    hub: &crate::hub::local::LocalHub,
    path: &Path,
) -> Result<usize, Failure> {
    let file = snapshot_file(config, path)?;
    hub.import_lines(&mut *file.lines()?)
        .map_err(|error| snapshot_failure(&error))
}

/// A snapshot that cannot be read, with its first bad lines listed.
fn snapshot_failure(error: &crate::hub::HubError) -> Failure {
    let mut diagnostic = Diagnostic::from_error(error, crate::diag::Severity::Error);
    if let crate::hub::HubError::InvalidSnapshot { lines, .. } = error {
        let listed: Vec<String> = lines.iter().map(ToString::to_string).collect();
        diagnostic.message = format!("{}\n  {}", diagnostic.message, listed.join("\n  "));
    }
    Failure::new(diagnostic)
}

/// Writes to stdout, turning an I/O failure into an operational diagnostic;
/// a reader that went away (`| head`) is not a failure.
fn written(result: std::io::Result<()>) -> Result<(), Failure> {
    match result {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::new(
            operational(format!("cannot write output: {error}"), None),
        )),
        _ => Ok(()),
    }
}
