//! SARIF 2.1.0, so that code scanning annotates the YAML line of a problem
//! in a pull request.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Value, json};

use crate::diag::{Diagnostic, Label, Severity, SourceMap};

/// Writes the diagnostics as one SARIF log with a single run.
///
/// # Errors
/// When writing fails.
pub fn sarif(
    out: &mut dyn Write,
    diagnostics: &[Diagnostic],
    sources: &SourceMap,
) -> std::io::Result<()> {
    let mut rules: BTreeMap<&str, Value> = BTreeMap::new();
    for diagnostic in diagnostics {
        rules.entry(&diagnostic.code).or_insert_with(
            || json!({ "id": diagnostic.code, "shortDescription": { "text": diagnostic.code } }),
        );
    }
    let results: Vec<Value> = diagnostics
        .iter()
        .map(|diagnostic| {
            let text = match &diagnostic.help {
                Some(help) => format!("{}\nhelp: {help}", diagnostic.message),
                None => diagnostic.message.clone(),
            };
            let mut result = json!({
                "ruleId": diagnostic.code,
                "level": match diagnostic.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                },
                "message": { "text": text },
                "locations": diagnostic.primary.iter().filter_map(|l| location(l, sources)).collect::<Vec<_>>(),
            });
            let related: Vec<Value> = diagnostic
                .related
                .iter()
                .filter_map(|label| location(label, sources))
                .collect();
            if !related.is_empty() {
                super::set(&mut result, "relatedLocations", Value::Array(related));
            }
            result
        })
        .collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "twinops",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules.into_values().collect::<Vec<_>>(),
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    });
    super::json(out, &log)
}

fn location(label: &Label, sources: &SourceMap) -> Option<Value> {
    let file = sources.get(label.span.file)?;
    let start = file.location(label.span.start);
    let end = file.location(
        label
            .span
            .end
            .max(label.span.start + 1)
            .min(file.text.len().max(label.span.start)),
    );
    let mut location = json!({
        "physicalLocation": {
            "artifactLocation": { "uri": file.path, "uriBaseId": "%SRCROOT%" },
            "region": {
                "startLine": start.line,
                "startColumn": start.column,
                "endLine": end.line,
                "endColumn": end.column,
            },
        },
    });
    if !label.message.is_empty() {
        super::set(&mut location, "message", json!({ "text": label.message }));
    }
    Some(location)
}
