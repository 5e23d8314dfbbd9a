//! Config: flags + `twinops.toml` + environment → [`Config`], once.
//!
//! The only module that reads the environment (`NO_COLOR`, whether stdout
//! and stderr are terminals, the connection strings `iothub` environments
//! name) and the project file; `main` alone reads `TWINOPS_LOG`, to start
//! logging before anything else.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::{Cli, ColorChoice, ErrorFormat};
use crate::diag::{Diagnostic, Severity, SourceFile, SourceMap, Span};
use crate::gitops::{CommitInfo, GitError, Repository};
use crate::hub::rest::Scheme;
use crate::hub::sas::Secret;
use crate::hub::throttle::Tier;
use crate::validate::Unschematized;

/// The project file's name.
pub const PROJECT_FILE: &str = "twinops.toml";

/// `twinops.toml`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct ProjectFile {
    /// Directory of policy YAML files.
    #[serde(default = "default_policies")]
    policies: String,
    /// Directory of project twin configuration schemas (added to the bundled ones).
    #[serde(default)]
    schemas: Option<String>,
    /// Allow desired properties no schema governs.
    #[serde(default)]
    allow_unschematized: bool,
    /// The default fleet.
    #[serde(default)]
    fleet: Option<FleetSection>,
    /// Named hubs to plan and apply against.
    #[serde(default)]
    environments: BTreeMap<String, EnvironmentSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
enum EnvironmentSection {
    /// The embedded SQLite hub.
    Local {
        /// The database file.
        database: String,
        /// Snapshot loaded when the database is first created.
        #[serde(default)]
        seed: Option<String>,
        /// Create missing module identities for every policy.
        #[serde(default)]
        create_modules: bool,
    },
    /// Azure IoT Hub (or the emulator) over REST.
    Iothub {
        /// The environment variable that holds the connection string.
        #[serde(default = "default_connection_string_env")]
        connection_string_env: String,
        /// The hub's tier, for pacing.
        #[serde(default)]
        tier: Tier,
        /// The hub's unit count, for pacing.
        #[serde(default = "default_units")]
        units: u32,
        /// Extra trusted CA certificates (PEM), such as the emulator's.
        #[serde(default)]
        ca_file: Option<String>,
        /// Plain HTTP, for an emulator started without `--tls`.
        #[serde(default)]
        plain_http: bool,
        /// Requests in flight at once during apply.
        #[serde(default = "default_concurrency")]
        concurrency: usize,
        /// Create missing module identities for every policy.
        #[serde(default)]
        create_modules: bool,
    },
}

fn default_connection_string_env() -> String {
    DEFAULT_CONNECTION_STRING_ENV.to_owned()
}

fn default_units() -> u32 {
    1
}

fn default_concurrency() -> usize {
    16
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetSection {
    /// NDJSON fleet snapshot.
    snapshot: Option<String>,
}

fn default_policies() -> String {
    "policies".to_owned()
}

/// The environment variable an `iothub` environment reads its connection
/// string from unless it names another.
pub const DEFAULT_CONNECTION_STRING_ENV: &str = "IOTHUB_CONNECTION_STRING";

/// Where an environment's twins live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubLocation {
    /// The embedded SQLite hub.
    Local {
        /// The database file.
        database: PathBuf,
        /// Snapshot loaded when the database is first created.
        seed: Option<PathBuf>,
    },
    /// Azure IoT Hub or the emulator, over REST.
    IotHub {
        /// The environment variable holding the connection string.
        connection_string_env: String,
        /// Its value, when set.
        connection_string: Option<Secret>,
        /// The tier, for pacing.
        tier: Tier,
        /// The unit count, for pacing.
        units: u32,
        /// Extra trusted CA certificates.
        ca_file: Option<PathBuf>,
        /// HTTPS, or plain HTTP for an emulator without TLS.
        scheme: Scheme,
    },
}

/// A named hub and how twinops treats it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// Its name in `twinops.toml`.
    pub name: String,
    /// Where its twins live.
    pub hub: HubLocation,
    /// Create missing module identities for every policy.
    pub create_modules: bool,
    /// Requests in flight at once during apply.
    pub concurrency: usize,
}

/// The environment used when `twinops.toml` names none: a local hub in
/// `.twinops/local.db`, seeded from the default fleet snapshot.
pub const DEFAULT_ENVIRONMENT: &str = "local";

/// Everything a command needs to know about where and how to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The project directory (where `twinops.toml` is).
    pub root: PathBuf,
    /// Policy directory.
    pub policies: PathBuf,
    /// Project schema directory, if any.
    pub schemas: Option<PathBuf>,
    /// Whether unschematized desired properties are allowed.
    pub unschematized: Unschematized,
    /// Default fleet snapshot.
    pub fleet: Option<PathBuf>,
    /// Environments by name.
    pub environments: BTreeMap<String, Environment>,
    /// The environment chosen with `--env` (default `local`).
    pub environment: String,
    /// What the terminal allows.
    pub terminal: Terminal,
    /// Diagnostics format.
    pub error_format: ErrorFormat,
    /// The project file.
    pub project_file: PathBuf,
    /// With `--rev`: the commit whose policies, schemas and project file
    /// are read (from git objects, never the work tree).
    pub revision: Option<CommitInfo>,
}

/// What the process's terminal allows: colour, prompts, progress bars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "four independent facts about the terminal"
)]
pub struct Terminal {
    /// Colour on stdout (a terminal, and no `NO_COLOR`).
    pub color_stdout: bool,
    /// Colour on stderr.
    pub color_stderr: bool,
    /// Whether stdin is a terminal (apply asks for confirmation there).
    pub interactive: bool,
    /// Whether to draw progress bars (stderr is a terminal, no `NO_COLOR`).
    pub progress: bool,
}

/// Why there is no config.
#[derive(Debug)]
pub enum ConfigFailure {
    /// No project file, or it cannot be read (operational).
    Operational(Box<Diagnostic>),
    /// The project file is invalid (a user error, with its source).
    Invalid(Box<(Diagnostic, SourceMap)>),
}

impl Config {
    /// Finds and reads the project file and resolves the flags.
    ///
    /// # Errors
    /// When there is no readable, valid project file.
    pub fn resolve(cli: &Cli, cwd: &Path) -> Result<Self, ConfigFailure> {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        let color = |terminal: bool| match cli.color {
            _ if no_color => false,
            ColorChoice::Never => false,
            ColorChoice::Always => true,
            ColorChoice::Auto => terminal,
        };
        let terminal = Terminal {
            color_stdout: color(std::io::stdout().is_terminal()),
            color_stderr: color(std::io::stderr().is_terminal()),
            interactive: std::io::stdin().is_terminal(),
            progress: std::io::stderr().is_terminal() && !no_color,
        };
        let found = cli
            .config
            .as_ref()
            .map(|path| cwd.join(path))
            .or_else(|| find_project_file(cwd));
        if found.is_none() && !cli.command.needs_project() {
            return Ok(Self {
                environment: cli.env.clone(),
                terminal,
                error_format: cli.error_format,
                ..Self::defaults(cwd)
            });
        }
        let path = found.ok_or_else(|| {
            ConfigFailure::Operational(Box::new(operational(
                format!(
                    "no `{PROJECT_FILE}` in `{}` or any parent directory",
                    cwd.display()
                ),
                Some("run twinops inside a project, or pass `--config FILE`"),
            )))
        })?;
        let root = path
            .parent()
            .map_or_else(|| cwd.to_path_buf(), Path::to_path_buf);
        let base = Self {
            project_file: path.clone(),
            environment: cli.env.clone(),
            terminal,
            error_format: cli.error_format,
            ..Self::defaults(&root)
        };
        if let Some(revision) = &cli.rev {
            return base.at_revision(revision);
        }
        let bytes = std::fs::read(&path).map_err(|error| {
            ConfigFailure::Operational(Box::new(operational(
                format!("cannot read `{}`: {error}", path.display()),
                None,
            )))
        })?;
        let source = SourceFile::from_bytes(crate::load::display_path(cwd, &path), &bytes);
        base.with_project_file(&source)
    }

    /// This project as it is at a git revision: its project file, and
    /// (through [`Config::revision`]) its policies and schemas, read from
    /// git objects.
    ///
    /// # Errors
    /// When there is no repository, the revision is unknown, the project
    /// file does not exist there or is invalid.
    pub fn at_revision(&self, revision: &str) -> Result<Self, ConfigFailure> {
        let failed = |error: &GitError| {
            ConfigFailure::Operational(Box::new(Diagnostic::from_error(error, Severity::Error)))
        };
        let repository = Repository::discover(&self.root).map_err(|error| failed(&error))?;
        let commit = repository
            .commit(revision)
            .map_err(|error| failed(&error))?;
        let source = repository
            .read_file(&commit.id, &self.project_file)
            .map_err(|error| failed(&error))?
            .ok_or_else(|| {
                ConfigFailure::Operational(Box::new(operational(
                    format!(
                        "`{}` does not exist at `{revision}` ({})",
                        crate::load::display_path(&self.root, &self.project_file),
                        commit.short
                    ),
                    None,
                )))
            })?;
        let mut config = self.with_project_file(&source)?;
        config.revision = Some(commit);
        Ok(config)
    }

    /// This config with the settings of `source`, a project file.
    fn with_project_file(&self, source: &SourceFile) -> Result<Self, ConfigFailure> {
        let shown = source.path.clone();
        let project: ProjectFile = toml::from_str(&source.text).map_err(|error| {
            let span = error.span().unwrap_or(0..0);
            let message = error.message().trim_end_matches('.').to_owned();
            let mut sources = SourceMap::new();
            let file = sources.add(source.clone());
            ConfigFailure::Invalid(Box::new((
                Diagnostic {
                    severity: Severity::Error,
                    code: "twinops::config::invalid".to_owned(),
                    message: format!("invalid `{shown}`: {}", lowercase_first(&message)),
                    primary: None,
                    related: Vec::new(),
                    help: message.contains("unknown field").then(|| {
                        "the keys are `policies`, `schemas`, `allow_unschematized`, \
                         `[fleet] snapshot` and `[environments.NAME]`: with `kind = \"local\"`, \
                         `database`, `seed`, `create_modules`; with `kind = \"iothub\"`, \
                         `connection_string_env`, `tier`, `units`, `ca_file`, `plain_http`, \
                         `concurrency`, `create_modules`"
                            .to_owned()
                    }),
                }
                .at(Span::new(file, span.start, span.end), ""),
                sources,
            )))
        })?;
        let root = &self.root;
        let fleet = project
            .fleet
            .and_then(|fleet| fleet.snapshot)
            .map(|snapshot| root.join(snapshot));
        let environments = environments(project.environments, root, fleet.as_ref());
        Ok(Self {
            policies: root.join(&project.policies),
            schemas: project.schemas.map(|dir| root.join(dir)),
            unschematized: if project.allow_unschematized {
                Unschematized::Allow
            } else {
                Unschematized::Deny
            },
            fleet,
            environments,
            revision: None,
            ..self.clone()
        })
    }
}

/// The value of environment variable `name`, as a secret.
#[must_use]
pub fn secret_from_env(name: &str) -> Option<Secret> {
    std::env::var(name).ok().map(Secret::new)
}

impl Config {
    /// A project at `root` with every default: policies in `policies/`, no
    /// fleet, the `local` environment in `.twinops/local.db`, no colour, no
    /// terminal.
    #[must_use]
    pub fn defaults(root: &Path) -> Self {
        let local = Environment {
            name: DEFAULT_ENVIRONMENT.to_owned(),
            hub: HubLocation::Local {
                database: root.join(".twinops/local.db"),
                seed: None,
            },
            create_modules: false,
            concurrency: 1,
        };
        Self {
            root: root.to_path_buf(),
            policies: root.join("policies"),
            schemas: None,
            unschematized: Unschematized::Deny,
            fleet: None,
            environments: BTreeMap::from([(DEFAULT_ENVIRONMENT.to_owned(), local)]),
            environment: DEFAULT_ENVIRONMENT.to_owned(),
            terminal: Terminal::default(),
            error_format: ErrorFormat::Human,
            project_file: root.join(PROJECT_FILE),
            revision: None,
        }
    }

    /// The environment chosen with `--env`.
    ///
    /// # Errors
    /// An operational diagnostic naming the known environments.
    pub fn chosen_environment(&self) -> Result<&Environment, Box<Diagnostic>> {
        self.environments.get(&self.environment).ok_or_else(|| {
            let names: Vec<&str> = self.environments.keys().map(String::as_str).collect();
            let help = crate::diag::did_you_mean(&self.environment, names.iter().copied())
                .map_or_else(
                    || format!("environments in `{PROJECT_FILE}`: {}", names.join(", ")),
                    |near| format!("did you mean `{near}`?"),
                );
            Box::new(operational(
                format!("no environment `{}` in `{PROJECT_FILE}`", self.environment),
                Some(&help),
            ))
        })
    }
}

/// The environments of the project file, plus the default `local` one when
/// the file does not name it.
fn environments(
    sections: BTreeMap<String, EnvironmentSection>,
    root: &Path,
    fleet: Option<&PathBuf>,
) -> BTreeMap<String, Environment> {
    let mut environments: BTreeMap<String, Environment> = sections
        .into_iter()
        .map(|(name, section)| {
            let environment = match section {
                EnvironmentSection::Local {
                    database,
                    seed,
                    create_modules,
                } => Environment {
                    name: name.clone(),
                    hub: HubLocation::Local {
                        database: root.join(database),
                        seed: seed.map(|seed| root.join(seed)),
                    },
                    create_modules,
                    concurrency: 1,
                },
                EnvironmentSection::Iothub {
                    connection_string_env,
                    tier,
                    units,
                    ca_file,
                    plain_http,
                    concurrency,
                    create_modules,
                } => Environment {
                    name: name.clone(),
                    hub: HubLocation::IotHub {
                        connection_string: std::env::var(&connection_string_env)
                            .ok()
                            .map(Secret::new),
                        connection_string_env,
                        tier,
                        units: units.max(1),
                        ca_file: ca_file.map(|file| root.join(file)),
                        scheme: if plain_http {
                            Scheme::Http
                        } else {
                            Scheme::Https
                        },
                    },
                    create_modules,
                    concurrency: concurrency.max(1),
                },
            };
            (name, environment)
        })
        .collect();
    environments
        .entry(DEFAULT_ENVIRONMENT.to_owned())
        .or_insert_with(|| Environment {
            name: DEFAULT_ENVIRONMENT.to_owned(),
            hub: HubLocation::Local {
                database: root.join(".twinops/local.db"),
                seed: fleet.cloned(),
            },
            create_modules: false,
            concurrency: 1,
        });
    environments
}

fn find_project_file(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(PROJECT_FILE))
        .find(|candidate| candidate.is_file())
}

/// A span-less operational diagnostic.
#[must_use]
pub fn operational(message: String, help: Option<&str>) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        code: "twinops::operational".to_owned(),
        message,
        primary: None,
        related: Vec::new(),
        help: help.map(str::to_owned),
    }
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}
