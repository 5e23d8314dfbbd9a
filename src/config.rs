//! Config: flags + `twinops.toml` + environment → [`Config`], once.
//!
//! The only module that reads the environment (`NO_COLOR`, whether stdout
//! and stderr are terminals) and the project file.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::{Cli, ColorChoice, ErrorFormat};
use crate::diag::{Diagnostic, Severity, SourceFile, SourceMap, Span};
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
    /// Diagnostics format.
    pub error_format: ErrorFormat,
    /// Colour on stderr.
    pub color_stderr: bool,
    /// Colour on stdout.
    pub color_stdout: bool,
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
        let path = match &cli.config {
            Some(path) => cwd.join(path),
            None => find_project_file(cwd).ok_or_else(|| {
                ConfigFailure::Operational(Box::new(operational(
                    format!(
                        "no `{PROJECT_FILE}` in `{}` or any parent directory",
                        cwd.display()
                    ),
                    Some("run twinops inside a project, or pass `--config FILE`"),
                )))
            })?,
        };
        let root = path
            .parent()
            .map_or_else(|| cwd.to_path_buf(), Path::to_path_buf);
        let bytes = std::fs::read(&path).map_err(|error| {
            ConfigFailure::Operational(Box::new(operational(
                format!("cannot read `{}`: {error}", path.display()),
                None,
            )))
        })?;
        let shown = crate::load::display_path(cwd, &path);
        let source = SourceFile::from_bytes(shown.clone(), &bytes);
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
                        "the keys are `policies`, `schemas`, `allow_unschematized` and \
                         `[fleet] snapshot`"
                            .to_owned()
                    }),
                }
                .at(Span::new(file, span.start, span.end), ""),
                sources,
            )))
        })?;
        Ok(Self {
            policies: root.join(&project.policies),
            schemas: project.schemas.map(|dir| root.join(dir)),
            unschematized: if project.allow_unschematized {
                Unschematized::Allow
            } else {
                Unschematized::Deny
            },
            fleet: project
                .fleet
                .and_then(|fleet| fleet.snapshot)
                .map(|snapshot| root.join(snapshot)),
            root,
            error_format: cli.error_format,
            color_stderr: color(std::io::stderr().is_terminal()),
            color_stdout: color(std::io::stdout().is_terminal()),
        })
    }
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
