//! Load: policy files → documents with spans.
//!
//! [`read_dir`] reads a directory's YAML files (the only I/O here);
//! [`documents`] parses each file's documents with saphyr, keeps a span for
//! every JSON pointer, and checks each document against the policy format
//! schema (`schemas/policy.schema.json`). Problems become diagnostics, all of
//! them, never just the first; a document that breaks the format is dropped.

mod document;
mod err;
mod yaml;

pub use document::{Document, NodeSpans, SpanIndex, join_pointer, pointer_keys};
pub use err::LoadError;

use std::path::Path;

use serde_json::Value;

use crate::diag::{Diagnostic, Diagnostics, FileId, Severity, SourceFile};
use crate::schema::{PolicySchema, Violation};

/// Reads every file under `dir` (recursively) whose name ends with one of
/// `extensions`, sorted by path; paths are shown relative to `root`. A `dir`
/// that is a file is read alone.
///
/// # Errors
/// When a directory or file cannot be read.
pub fn read_dir(
    root: &Path,
    dir: &Path,
    extensions: &[&str],
) -> Result<Vec<SourceFile>, LoadError> {
    let mut paths = Vec::new();
    if dir.is_file() {
        paths.push(dir.to_path_buf());
    } else {
        collect(dir, extensions, &mut paths)?;
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).map_err(|error| io_error(&path, &error))?;
            Ok(SourceFile::from_bytes(display_path(root, &path), &bytes))
        })
        .collect()
}

/// Reads one file, shown relative to `root`.
///
/// # Errors
/// When the file cannot be read.
pub fn read_file(root: &Path, path: &Path) -> Result<SourceFile, LoadError> {
    let bytes = std::fs::read(path).map_err(|error| io_error(path, &error))?;
    Ok(SourceFile::from_bytes(display_path(root, path), &bytes))
}

fn collect(
    dir: &Path,
    extensions: &[&str],
    out: &mut Vec<std::path::PathBuf>,
) -> Result<(), LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|error| io_error(dir, &error))?;
    for entry in entries {
        let entry = entry.map_err(|error| io_error(dir, &error))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|error| io_error(&path, &error))?;
        if kind.is_dir() {
            collect(&path, extensions, out)?;
        } else if path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| extensions.iter().any(|ext| name.ends_with(ext)))
        {
            out.push(path);
        }
    }
    Ok(())
}

fn io_error(path: &Path, error: &std::io::Error) -> LoadError {
    LoadError::Io {
        path: path.display().to_string(),
        reason: error.to_string(),
    }
}

/// `path` relative to `root`, with `/` separators.
#[must_use]
pub fn display_path(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(relative) => relative
            .components()
            .map(|part| part.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
        Err(_) => path.display().to_string(),
    }
}

/// Every policy document of `files` that is well-formed YAML and follows the
/// policy format. Problems go to `diags`.
#[must_use]
pub fn documents(
    files: &[(FileId, &SourceFile)],
    policy_schema: &PolicySchema,
    diags: &mut Diagnostics,
) -> Vec<Document> {
    let mut out = Vec::new();
    for (id, file) in files {
        for document in yaml::parse(*id, file, diags) {
            let violations = policy_schema.violations(&document.value);
            if violations.is_empty() {
                out.push(document);
                continue;
            }
            let context = document_name(&document);
            for violation in &violations {
                diags.push(located(&document, &context, violation));
            }
        }
    }
    out
}

/// How a document is named in messages: ``policy `name` `` when it has a
/// usable name, else its position in the file.
#[must_use]
pub fn document_name(document: &Document) -> String {
    match document.value.get("name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() && name.len() <= 63 => format!("policy `{name}`"),
        _ => format!("document {}", document.index + 1),
    }
}

/// A schema violation in `document` as a diagnostic prefixed with `context`.
#[must_use]
pub fn located(document: &Document, context: &str, violation: &Violation) -> Diagnostic {
    let span = if violation.at_key {
        document.spans.locate_key(&violation.pointer)
    } else {
        document.spans.locate(&violation.pointer)
    };
    let mut diagnostic = Diagnostic::from_error(&violation.error, Severity::Error)
        .at(span, "")
        .with_help(violation.help.clone());
    diagnostic.message = format!("{context}: {}", diagnostic.message);
    diagnostic
}
