//! Diagnostics on stderr: miette's graphical report (snippet, underline,
//! help) or one JSON document.

use std::fmt;
use std::io::Write;
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serde_json::{Value, json};

use crate::diag::{Diagnostic, Label, Severity, SourceMap};

/// Writes each diagnostic as a miette report, then a count line.
///
/// # Errors
/// When writing fails.
pub fn diagnostics_human(
    out: &mut dyn Write,
    diagnostics: &[Diagnostic],
    sources: &SourceMap,
    color: bool,
) -> std::io::Result<()> {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false);
    for diagnostic in diagnostics {
        let report = Report::new(diagnostic, sources);
        let mut text = String::new();
        if handler.render_report(&mut text, &report).is_err() {
            text = format!(
                "{}: {}\n",
                severity_word(diagnostic.severity),
                diagnostic.message
            );
        }
        write!(out, "{text}")?;
        writeln!(out)?;
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    if errors + warnings > 0 {
        writeln!(
            out,
            "{}, {}",
            super::count(errors, "error"),
            super::count(warnings, "warning")
        )?;
    }
    Ok(())
}

/// Writes the diagnostics as one JSON document.
///
/// # Errors
/// When writing fails.
pub fn diagnostics_json(
    out: &mut dyn Write,
    diagnostics: &[Diagnostic],
    sources: &SourceMap,
) -> std::io::Result<()> {
    super::json(
        out,
        &json!({ "format_version": 1, "diagnostics": diagnostics_value(diagnostics, sources) }),
    )
}

/// The diagnostics as a JSON array: severity, code, message, location, help.
#[must_use]
pub fn diagnostics_value(diagnostics: &[Diagnostic], sources: &SourceMap) -> Value {
    Value::Array(
        diagnostics
            .iter()
            .map(|diagnostic| {
                let mut object = json!({
                    "severity": diagnostic.severity,
                    "code": diagnostic.code,
                    "message": diagnostic.message,
                });
                if let Some(label) = &diagnostic.primary {
                    super::set(&mut object, "location", location(label, sources));
                }
                if let Some(help) = &diagnostic.help {
                    super::set(&mut object, "help", json!(help));
                }
                if !diagnostic.related.is_empty() {
                    let related = diagnostic
                        .related
                        .iter()
                        .map(|label| location(label, sources))
                        .collect();
                    super::set(&mut object, "related", related);
                }
                object
            })
            .collect(),
    )
}

fn location(label: &Label, sources: &SourceMap) -> Value {
    let Some(file) = sources.get(label.span.file) else {
        return json!({ "message": label.message });
    };
    let start = file.location(label.span.start);
    let end = file.location(label.span.end);
    json!({
        "file": file.path,
        "line": start.line,
        "column": start.column,
        "end_line": end.line,
        "end_column": end.column,
        "message": label.message,
    })
}

fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// A diagnostic in the shape miette renders.
#[derive(Debug)]
struct Report {
    message: String,
    code: String,
    severity: miette::Severity,
    help: Option<String>,
    source: Option<NamedSource<Arc<str>>>,
    labels: Vec<LabeledSpan>,
    related: Vec<Report>,
}

impl Report {
    fn new(diagnostic: &Diagnostic, sources: &SourceMap) -> Self {
        let primary_file = diagnostic.primary.as_ref().map(|label| label.span.file);
        let source = primary_file
            .and_then(|id| sources.get(id))
            .map(|file| NamedSource::new(file.path.clone(), Arc::clone(&file.text)));
        let mut labels: Vec<LabeledSpan> = diagnostic
            .primary
            .iter()
            .map(|label| labeled(label, true))
            .collect();
        let mut related = Vec::new();
        for label in &diagnostic.related {
            if Some(label.span.file) == primary_file {
                labels.push(labeled(label, false));
            } else if let Some(file) = sources.get(label.span.file) {
                related.push(Report {
                    message: if label.message.is_empty() {
                        "related".to_owned()
                    } else {
                        label.message.clone()
                    },
                    code: String::new(),
                    severity: miette::Severity::Advice,
                    help: None,
                    source: Some(NamedSource::new(file.path.clone(), Arc::clone(&file.text))),
                    labels: vec![labeled(label, true)],
                    related: Vec::new(),
                });
            }
        }
        Self {
            message: diagnostic.message.clone(),
            code: diagnostic.code.clone(),
            severity: match diagnostic.severity {
                Severity::Error => miette::Severity::Error,
                Severity::Warning => miette::Severity::Warning,
            },
            help: diagnostic.help.clone(),
            source,
            labels,
            related,
        }
    }
}

fn labeled(label: &Label, primary: bool) -> LabeledSpan {
    let span = SourceSpan::from(label.span.start..label.span.end);
    let text = (!label.message.is_empty()).then(|| label.message.clone());
    if primary {
        LabeledSpan::new_primary_with_span(text, span)
    } else {
        LabeledSpan::new_with_span(text, span)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report {}

impl miette::Diagnostic for Report {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        (!self.code.is_empty()).then(|| Box::new(&self.code) as Box<dyn fmt::Display>)
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|help| Box::new(help) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source
            .as_ref()
            .map(|source| source as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        (!self.labels.is_empty())
            .then(|| Box::new(self.labels.iter().cloned()) as Box<dyn Iterator<Item = LabeledSpan>>)
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        (!self.related.is_empty()).then(|| {
            Box::new(
                self.related
                    .iter()
                    .map(|report| report as &dyn miette::Diagnostic),
            ) as Box<dyn Iterator<Item = &dyn miette::Diagnostic>>
        })
    }
}
