//! Diagnostics: problems in what the user wrote, as data with spans.
//!
//! Every stage pushes [`Diagnostic`]s into a [`Diagnostics`] sink and returns
//! its best output; the command checks the sink between stages and the CLI
//! renders it once, at the edge. Nothing here prints.

mod span;
mod suggest;

pub use span::{FileId, Location, SourceFile, SourceMap, Span};
pub use suggest::did_you_mean;

use serde::Serialize;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Stops the run: policies are invalid (exit 3).
    Error,
    /// Reported, but the run goes on.
    Warning,
}

/// A span with a short note saying what it shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What is there; may be empty.
    pub message: String,
}

/// One problem in the user's input, with a stable code and source locations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable code such as `twinops::load::yaml_syntax`.
    pub code: String,
    /// One lowercase line, no final period.
    pub message: String,
    /// The place the problem is; `None` for problems with no location.
    pub primary: Option<Label>,
    /// Other places involved (the other policy of a conflict, an overridden leaf).
    pub related: Vec<Label>,
    /// What to do about it, including a did-you-mean.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic from a stage error: message from `Display`, code and help
    /// from its `miette::Diagnostic` derive.
    pub fn from_error<E: miette::Diagnostic + ?Sized>(error: &E, severity: Severity) -> Self {
        Self {
            severity,
            code: error
                .code()
                .map_or_else(|| "twinops::error".to_owned(), |code| code.to_string()),
            message: error.to_string(),
            primary: None,
            related: Vec::new(),
            help: error.help().map(|help| help.to_string()),
        }
    }

    /// The same diagnostic, located at `span`.
    #[must_use]
    pub fn at(mut self, span: Span, label: impl Into<String>) -> Self {
        self.primary = Some(Label {
            span,
            message: label.into(),
        });
        self
    }

    /// The same diagnostic, with one more related location.
    #[must_use]
    pub fn with_related(mut self, span: Span, label: impl Into<String>) -> Self {
        self.related.push(Label {
            span,
            message: label.into(),
        });
        self
    }

    /// The same diagnostic, with its help replaced (unless `help` is `None`).
    #[must_use]
    pub fn with_help(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    fn sort_key(&self) -> (Option<(FileId, usize)>, Severity, &str, &str) {
        (
            self.primary
                .as_ref()
                .map(|label| (label.span.file, label.span.start)),
            self.severity,
            &self.code,
            &self.message,
        )
    }
}

/// The sink every stage pushes into.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// An empty sink.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one diagnostic.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    /// Adds an error located at `span`, labelled `label`.
    pub fn error<E: miette::Diagnostic>(&mut self, error: &E, span: Span, label: &str) {
        self.push(Diagnostic::from_error(error, Severity::Error).at(span, label));
    }

    /// Adds all of `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    /// Whether any error (not warning) was pushed.
    #[must_use]
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// Number of diagnostics of `severity`.
    #[must_use]
    pub fn count(&self, severity: Severity) -> usize {
        self.items.iter().filter(|d| d.severity == severity).count()
    }

    /// Whether the sink is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The diagnostics in a stable order: by file and offset, then severity,
    /// code and message; exact duplicates removed.
    #[must_use]
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        self.items.dedup();
        self.items
    }

    /// The diagnostics in push order.
    #[must_use]
    pub fn as_slice(&self) -> &[Diagnostic] {
        &self.items
    }
}
