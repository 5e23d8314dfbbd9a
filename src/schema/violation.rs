//! Schema violations → located errors in the user's words.
//!
//! jsonschema reports machine paths; this module turns each error into the
//! JSON pointer to underline (the stray key, the parent of a missing key, or
//! the bad value), a [`ViolationError`], and help drawn from the schema
//! itself: the names in scope for a did-you-mean, the `description` of the
//! violated subschema.

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use crate::diag::did_you_mean;
use crate::load::join_pointer;
use crate::schema::duration::check_agent_duration;
use crate::schema::err::ViolationError;

/// Name of the format that checks agent durations.
pub const AGENT_DURATION_FORMAT: &str = "agent-duration";

/// One value that breaks a schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer into the validated instance.
    pub pointer: String,
    /// Whether to underline the key naming `pointer` rather than its value.
    pub at_key: bool,
    /// What is wrong.
    pub error: ViolationError,
    /// What to do about it.
    pub help: Option<String>,
    /// For a property required by an `if`/`then` rule: the pointer of the
    /// value that made it required.
    pub cause: Option<String>,
}

/// Whether missing required properties count (a policy fragment is partial).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completeness {
    /// The instance is the whole value a twin receives.
    Whole,
    /// The instance is one policy's contribution; `required` is not checked.
    Fragment,
}

/// Every violation of `schema` by `instance`, sorted by pointer.
#[must_use]
pub(crate) fn violations(
    validator: &Validator,
    schema: &Value,
    instance: &Value,
    completeness: Completeness,
) -> Vec<Violation> {
    let mut found: Vec<Violation> = validator
        .iter_errors(instance)
        .flat_map(|error| explain(&error, schema))
        .filter(|violation| {
            completeness == Completeness::Whole
                || !matches!(violation.error, ViolationError::MissingProperty { .. })
        })
        .collect();
    // A misspelt required key is one mistake, not two: keep the unknown key
    // with its did-you-mean, drop the missing one it was meant to be.
    let misspelt: Vec<(String, String)> = found
        .iter()
        .filter_map(|violation| match &violation.error {
            ViolationError::UnknownProperty { name } => violation
                .pointer
                .rsplit_once('/')
                .map(|(parent, _)| (parent.to_owned(), name.clone())),
            _ => None,
        })
        .collect();
    found.retain(|violation| match &violation.error {
        ViolationError::MissingProperty { name } => !misspelt.iter().any(|(parent, typo)| {
            *parent == violation.pointer && did_you_mean(typo, [name.as_str()]).is_some()
        }),
        _ => true,
    });
    found.sort_by(|a, b| a.pointer.cmp(&b.pointer));
    found.dedup();
    found
}

#[expect(
    clippy::too_many_lines,
    reason = "one arm per kind of schema error, read as a table"
)]
fn explain(error: &ValidationError<'_>, schema: &Value) -> Vec<Violation> {
    let pointer = error.instance_path().as_str().to_owned();
    let keyword_path = error.schema_path().as_str();
    let subschema = keyword_path
        .rsplit_once('/')
        .and_then(|(parent, _)| resolve(schema, parent));
    let description = subschema
        .and_then(|node| node.get("description"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let instance: &Value = error.instance();
    let at_value = |error: ViolationError, help: Option<String>| {
        vec![Violation {
            pointer: pointer.clone(),
            at_key: false,
            error,
            help,
            cause: None,
        }]
    };
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            let known: Vec<&str> = subschema
                .and_then(|node| node.get("properties"))
                .and_then(Value::as_object)
                .map(|properties| properties.keys().map(String::as_str).collect())
                .unwrap_or_default();
            unexpected
                .iter()
                .map(|name| Violation {
                    pointer: join_pointer(&pointer, name),
                    at_key: true,
                    error: ViolationError::UnknownProperty { name: name.clone() },
                    cause: None,
                    help: Some(did_you_mean(name, known.iter().copied()).map_or_else(
                        || format!("allowed here: {}", list(known.iter().copied())),
                        |near| format!("did you mean `{near}`?"),
                    )),
                })
                .collect()
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default().to_owned();
            let cause =
                required_because(schema, keyword_path).map(|key| join_pointer(&pointer, &key));
            let mut help = required_help(schema, keyword_path, &name);
            if let Some(cause) = &cause {
                let key = cause.rsplit('/').next().unwrap_or_default();
                help = Some(format!(
                    "`{name}` is required because of the value of `{key}`{}",
                    help.map_or_else(String::new, |help| format!("; {help}"))
                ));
            }
            vec![Violation {
                pointer: pointer.clone(),
                at_key: true,
                help,
                error: ViolationError::MissingProperty { name },
                cause,
            }]
        }
        ValidationErrorKind::Type { .. } => {
            let expected = subschema
                .and_then(|node| node.get("type"))
                .map_or_else(|| "another type".to_owned(), type_names);
            let wraps_value = subschema
                .and_then(|node| node.pointer("/properties/value"))
                .is_some();
            let help = if wraps_value && !instance.is_object() {
                Some(format!(
                    "settings are wrapped: write `{{ value: {} }}`",
                    short(instance)
                ))
            } else {
                description
            };
            at_value(
                ViolationError::WrongType {
                    expected,
                    found: found(instance),
                },
                help,
            )
        }
        ValidationErrorKind::Enum { options } => {
            let options: Vec<&str> = options
                .as_array()
                .map(|items| items.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let value = short(instance);
            let help = instance
                .as_str()
                .and_then(|text| did_you_mean(text, options.iter().copied()))
                .map(|near| format!("did you mean `{near}`?"))
                .or(description);
            at_value(
                ViolationError::NotAllowed {
                    value,
                    allowed: format!("one of {}", list(options.iter().copied())),
                },
                help,
            )
        }
        ValidationErrorKind::Constant { expected_value } => at_value(
            ViolationError::NotAllowed {
                value: short(instance),
                allowed: format!("`{}`", short(expected_value)),
            },
            description,
        ),
        ValidationErrorKind::Minimum { limit }
        | ValidationErrorKind::ExclusiveMinimum { limit } => {
            at_value(range(instance, "below the minimum", limit), description)
        }
        ValidationErrorKind::Maximum { limit }
        | ValidationErrorKind::ExclusiveMaximum { limit } => {
            at_value(range(instance, "above the maximum", limit), description)
        }
        ValidationErrorKind::MultipleOf { multiple_of } => at_value(
            ViolationError::OutOfRange {
                value: short(instance),
                relation: "not a multiple of",
                bound: multiple_of.to_string(),
            },
            description,
        ),
        ValidationErrorKind::Format { format } if format == AGENT_DURATION_FORMAT => {
            at_value(bad_duration(instance), Some(DURATION_HELP.to_owned()))
        }
        ValidationErrorKind::Pattern { .. } => {
            let is_duration = subschema
                .and_then(|node| node.get("format"))
                .and_then(Value::as_str)
                == Some(AGENT_DURATION_FORMAT);
            if is_duration {
                // The same words as the format check, so the two collapse into one.
                at_value(bad_duration(instance), Some(DURATION_HELP.to_owned()))
            } else {
                let value = instance.as_str().unwrap_or_default().to_owned();
                at_value(ViolationError::Pattern { value }, description)
            }
        }
        ValidationErrorKind::MinProperties { .. }
            if instance.as_object().is_some_and(serde_json::Map::is_empty) =>
        {
            let name = pointer
                .rsplit('/')
                .next()
                .filter(|name| !name.is_empty())
                .unwrap_or("document");
            at_value(
                ViolationError::Other {
                    reason: format!("`{name}` is empty"),
                },
                Some(format!("set at least one key in `{name}`")),
            )
        }
        ValidationErrorKind::FalseSchema => vec![Violation {
            pointer: pointer.clone(),
            at_key: true,
            cause: None,
            error: ViolationError::Other {
                reason: "property not allowed here".to_owned(),
            },
            help: description,
        }],
        _ => at_value(
            ViolationError::Other {
                reason: lowercase_first(&error.to_string()),
            },
            description,
        ),
    }
}

/// A duration that breaks the pattern or the format, with the reason.
fn bad_duration(instance: &Value) -> ViolationError {
    let text = instance.as_str().unwrap_or_default();
    ViolationError::BadDuration {
        value: text.to_owned(),
        problem: check_agent_duration(text)
            .err()
            .map_or("is not a duration both security agents accept", |problem| {
                problem.describe()
            }),
    }
}

const DURATION_HELP: &str = "write an ISO 8601 duration in whole days, hours, minutes and \
     seconds, upper case, such as `PT7M`, `PT1H30M` or `P1DT12H`; years, months, weeks, \
     fractions and signs are not read alike by both security agents";

/// For `required` inside an `if`/`then`: the first property the `if` tests.
fn required_because(schema: &Value, keyword_path: &str) -> Option<String> {
    let then = keyword_path.strip_suffix("/required")?;
    let object = then.strip_suffix("/then")?;
    let condition = resolve(schema, &format!("{object}/if"))?;
    condition
        .get("properties")
        .and_then(Value::as_object)
        .and_then(|properties| properties.keys().next().cloned())
}

/// Help for a missing property: its description in the schema (for a
/// `then` clause, in the object around it).
fn required_help(schema: &Value, keyword_path: &str, name: &str) -> Option<String> {
    let parent = keyword_path
        .rsplit_once('/')
        .map_or("", |(parent, _)| parent);
    let parent = parent.strip_suffix("/then").unwrap_or(parent);
    let object = resolve(schema, parent)?;
    let described = object
        .get("properties")
        .and_then(|properties| properties.get(name))
        .and_then(|property| property.get("description"))
        .and_then(Value::as_str);
    Some(described.map_or_else(
        || format!("add `{name}`"),
        |text| format!("add `{name}`: {}", lowercase_first(text)),
    ))
}

/// The subschema at a schema path, following local `$ref`s along the way.
fn resolve<'s>(root: &'s Value, path: &str) -> Option<&'s Value> {
    let mut node = root;
    for raw in path.split('/').skip(1) {
        let key = raw.replace("~1", "/").replace("~0", "~");
        node = match node {
            Value::Object(map) => match map.get(&key) {
                Some(Value::String(reference)) if key == "$ref" => {
                    root.pointer(reference.strip_prefix('#')?)?
                }
                Some(child) => child,
                None => return None,
            },
            Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

fn range(instance: &Value, relation: &'static str, limit: &Value) -> ViolationError {
    ViolationError::OutOfRange {
        value: short(instance),
        relation,
        bound: limit.to_string(),
    }
}

fn type_names(types: &Value) -> String {
    match types {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        Value::String(name) => name.clone(),
        _ => "another type".to_owned(),
    }
}

fn found(instance: &Value) -> String {
    let kind = match instance {
        Value::Null => return "null".to_owned(),
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_i64() || number.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => return "a list".to_owned(),
        Value::Object(_) => return "a mapping".to_owned(),
    };
    format!("{kind} `{}`", short(instance))
}

/// A value as the user wrote it, cut short.
fn short(value: &Value) -> String {
    let text = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    let acronym = chars.clone().nth(1).is_some_and(char::is_uppercase);
    let text = match chars.next() {
        Some(first) if !acronym => first.to_lowercase().chain(chars).collect(),
        _ => text.to_owned(),
    };
    text.strip_suffix('.').map_or(text.clone(), str::to_owned)
}
