//! YAML text → JSON values with spans, through saphyr.
//!
//! Bounds what a hostile file can cost: alias expansion is capped (no
//! billion laughs), nesting is capped (no stack overflow), duplicate keys and
//! tabs are errors (from the parser). Character positions are converted to
//! byte spans here, once.

use saphyr::{MarkedYaml, Scalar, YamlData, YamlLoader};
use saphyr_parser::{Parser, ScanError};
use serde_json::{Map, Number, Value};

use crate::diag::{Diagnostics, FileId, SourceFile, Span};
use crate::load::document::{Document, NodeSpans, SpanIndex, join_pointer};
use crate::load::err::LoadError;

/// Most YAML nodes that alias expansion may produce in one file.
const ALIAS_NODE_BUDGET: usize = 10_000;
/// Deepest nesting accepted; twins allow 10 levels below `desired`.
const MAX_DEPTH: usize = 32;

/// Parses every document of `source`; problems go to `diags`.
pub(crate) fn parse(file: FileId, source: &SourceFile, diags: &mut Diagnostics) -> Vec<Document> {
    if let Some(offset) = source.utf8_error {
        let span = Span::new(file, offset, offset + 1);
        diags.error(&LoadError::NotUtf8, span, "first byte that is not UTF-8");
        return Vec::new();
    }
    let text: &str = &source.text;
    let mut loader: YamlLoader<'_, MarkedYaml<'_>> = YamlLoader::default();
    loader.alias_limit(ALIAS_NODE_BUDGET);
    let mut parser = Parser::new_from_str(text);
    let outcome = parser.load(&mut loader, true);
    let error = outcome.err().or_else(|| loader.error().cloned());
    if let Some(error) = error {
        report_scan_error(file, source, &error, diags);
        return Vec::new();
    }
    let nodes = loader.into_documents();
    if nodes.is_empty() {
        diags.error(
            &LoadError::EmptyFile,
            Span::new(file, 0, 0),
            "nothing but comments or whitespace",
        );
        return Vec::new();
    }
    let mut documents = Vec::with_capacity(nodes.len());
    for (index, node) in nodes.iter().enumerate() {
        let mut converter = Converter {
            file,
            source,
            diags,
            spans: SpanIndex::new(Span::default()),
            failed: false,
        };
        let whole = converter.value_span(node);
        converter.spans = SpanIndex::new(whole);
        if node.data.is_badvalue() || matches!(node.data, YamlData::Value(Scalar::Null)) {
            converter
                .diags
                .error(&LoadError::EmptyDocument, whole, "this document is empty");
            continue;
        }
        let value = converter.convert(node, String::new(), None, 0);
        if !converter.failed {
            documents.push(Document {
                file,
                index,
                value,
                spans: converter.spans,
            });
        }
    }
    documents
}

fn report_scan_error(
    file: FileId,
    source: &SourceFile,
    error: &ScanError,
    diags: &mut Diagnostics,
) {
    let marker = error.marker();
    let mut start = source.offset(marker.line(), marker.col());
    let info = error.info();
    let rest_of_line = |at: usize| {
        let end = source.line_end(at);
        source.text.get(at..end).unwrap_or_default()
    };
    let (load_error, width) = if info.contains("duplicated key") {
        let key = rest_of_line(start)
            .split(':')
            .next()
            .unwrap_or_default()
            .trim_end()
            .to_owned();
        let width = key.len().max(1);
        (LoadError::DuplicateKey { key }, width)
    } else {
        if info.contains("tab") {
            // The scanner stops after the tab; point at the tab itself.
            let line_start = source.offset(marker.line(), 0);
            if let Some(tab) = source
                .text
                .get(line_start..=start.min(source.text.len().saturating_sub(1)))
                .and_then(|prefix| prefix.rfind('\t'))
            {
                start = line_start + tab;
            }
        }
        let help = if info.contains("tab") {
            Some("YAML indents with spaces only; replace the tab with spaces".to_owned())
        } else if info.contains("alias expansion") {
            Some(format!(
                "aliases may expand to at most {ALIAS_NODE_BUDGET} nodes per file"
            ))
        } else if info.contains("recursion limit") {
            Some(format!(
                "policy documents nest at most {MAX_DEPTH} levels; flatten the document"
            ))
        } else if info.contains("mapping values are not allowed")
            && rest_of_line(source.offset(marker.line(), 0)).len() > 1024
        {
            Some("a plain YAML key is at most 1024 characters; use an explicit `? key` or a shorter key".to_owned())
        } else {
            None
        };
        let reason = info.strip_suffix('.').unwrap_or(info).to_owned();
        let width = rest_of_line(start).chars().next().map_or(0, char::len_utf8);
        (LoadError::YamlSyntax { reason, help }, width)
    };
    diags.error(&load_error, Span::new(file, start, start + width), "here");
}

struct Converter<'a, 'd> {
    file: FileId,
    source: &'a SourceFile,
    diags: &'d mut Diagnostics,
    spans: SpanIndex,
    failed: bool,
}

impl Converter<'_, '_> {
    fn error(&mut self, error: &LoadError, span: Span, label: &str) {
        self.diags.error(error, span, label);
        self.failed = true;
    }

    /// A node's span in bytes; collections are cut to their first line so
    /// that an underline stays readable.
    fn value_span(&self, node: &MarkedYaml<'_>) -> Span {
        let start = self
            .source
            .offset(node.span.start.line(), node.span.start.col());
        let end = self
            .source
            .offset(node.span.end.line(), node.span.end.col());
        let end = if node.data.is_sequence() || node.data.is_mapping() || end <= start {
            self.source.line_end(start)
        } else {
            end
        };
        let trimmed = self
            .source
            .text
            .get(start..end)
            .map_or(end, |slice| start + slice.trim_end().len());
        Span::new(self.file, start, trimmed.max(start))
    }

    fn convert(
        &mut self,
        node: &MarkedYaml<'_>,
        pointer: String,
        key: Option<Span>,
        depth: usize,
    ) -> Value {
        let span = self.value_span(node);
        if depth > MAX_DEPTH {
            let first = Span::new(self.file, span.start, span.start + 1);
            self.error(
                &LoadError::TooDeep { limit: MAX_DEPTH },
                first,
                "nested too deeply",
            );
            return Value::Null;
        }
        let value = match &node.data {
            YamlData::Value(scalar) => self.scalar(scalar, span),
            YamlData::Sequence(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(at, item)| {
                        self.convert(item, format!("{pointer}/{at}"), None, depth + 1)
                    })
                    .collect(),
            ),
            YamlData::Mapping(entries) => {
                let mut object = Map::new();
                for (key_node, value_node) in entries {
                    let key_span = self.value_span(key_node);
                    let Some(name) = self.key(key_node, key_span) else {
                        continue;
                    };
                    let child = join_pointer(&pointer, &name);
                    let value = self.convert(value_node, child, Some(key_span), depth + 1);
                    object.insert(name, value);
                }
                Value::Object(object)
            }
            YamlData::Tagged(tag, _) => {
                self.error(
                    &LoadError::UnsupportedTag {
                        tag: tag.to_string(),
                    },
                    span,
                    "tagged value",
                );
                Value::Null
            }
            YamlData::BadValue | YamlData::Alias(_) | YamlData::Representation(..) => {
                self.error(&LoadError::BadValue, span, "this value");
                Value::Null
            }
        };
        self.spans.insert(pointer, NodeSpans { key, value: span });
        value
    }

    fn scalar(&mut self, scalar: &Scalar<'_>, span: Span) -> Value {
        match scalar {
            Scalar::Null => Value::Null,
            Scalar::Boolean(flag) => Value::Bool(*flag),
            Scalar::Integer(number) => Value::Number((*number).into()),
            Scalar::FloatingPoint(number) => {
                if let Some(number) = Number::from_f64(number.into_inner()) {
                    Value::Number(number)
                } else {
                    let written = self.source.text.get(span.start..span.end).unwrap_or("");
                    self.error(
                        &LoadError::NonFiniteNumber {
                            value: written.to_owned(),
                        },
                        span,
                        "not a finite number",
                    );
                    Value::Null
                }
            }
            Scalar::String(text) => Value::String(text.to_string()),
        }
    }

    fn key(&mut self, node: &MarkedYaml<'_>, span: Span) -> Option<String> {
        match &node.data {
            YamlData::Value(Scalar::String(text)) => Some(text.to_string()),
            YamlData::Value(_) | YamlData::Sequence(_) | YamlData::Mapping(_) => {
                let written = self.source.text.get(span.start..span.end).unwrap_or("");
                self.error(
                    &LoadError::NonStringKey {
                        key: written.to_owned(),
                    },
                    span,
                    "not a string",
                );
                None
            }
            _ => {
                self.error(&LoadError::BadValue, span, "this key");
                None
            }
        }
    }
}
