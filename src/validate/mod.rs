//! Validate: documents → [`PolicySet`].
//!
//! [`policies`] checks what the policy format schema cannot: unique names,
//! target conditions that parse, modules and desired properties that a twin
//! configuration schema governs, each policy's contribution against that
//! schema (as a fragment: completeness and cross-field rules are checked on
//! the merged per-device value, in compile). Pure; every problem found is
//! collected, and only sound policies reach the set.

mod err;

pub use err::ValidateError;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::diag::{Diagnostic, Diagnostics, Severity, SourceMap, Span, did_you_mean};
use crate::load::{Document, document_name, join_pointer, located};
use crate::query::{self, Condition};
use crate::schema::{Completeness, SchemaSet, TwinSchema};

/// Index of a policy in its [`PolicySet`].
pub type PolicyId = usize;

/// A policy's target: the condition as written and parsed.
#[derive(Clone, Debug)]
pub struct Target {
    /// As written.
    pub text: String,
    /// Parsed.
    pub condition: Condition,
}

/// One leaf a policy sets: a JSON pointer below `desired`, and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Leaf {
    /// Pointer relative to the twin's desired properties.
    pub pointer: String,
    /// A scalar, an array or an empty object.
    pub value: Value,
}

/// A validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Unique name.
    pub name: String,
    /// Higher wins, per leaf.
    pub priority: i64,
    /// Which devices it applies to.
    pub target: Target,
    /// The module twin it configures; `None` for the device twin.
    pub module: Option<String>,
    /// Whether apply may create the module identity where it is missing.
    pub create_modules: bool,
    /// Desired properties, in the twin's shape.
    pub desired: Map<String, Value>,
    /// The leaves of `desired`, sorted by pointer.
    pub leaves: Vec<Leaf>,
    /// The document it came from, for spans.
    pub document: Document,
}

impl Policy {
    /// The span of `pointer` (relative to desired) in this policy's file.
    #[must_use]
    pub fn leaf_span(&self, pointer: &str) -> Span {
        self.document.spans.locate(&format!("/desired{pointer}"))
    }

    /// The span of the key naming `pointer` (relative to desired).
    #[must_use]
    pub fn leaf_key_span(&self, pointer: &str) -> Span {
        self.document
            .spans
            .locate_key(&format!("/desired{pointer}"))
    }

    /// The span of the policy's name.
    #[must_use]
    pub fn name_span(&self) -> Span {
        self.document.spans.locate("/name")
    }
}

/// Every sound policy of the project, sorted by priority then name.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    /// The policies; a [`PolicyId`] indexes this.
    pub policies: Vec<Policy>,
}

impl PolicySet {
    /// The policy with `id`.
    #[must_use]
    pub fn get(&self, id: PolicyId) -> Option<&Policy> {
        self.policies.get(id)
    }
}

/// Whether desired properties that no schema governs are allowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unschematized {
    /// They are errors (the default).
    #[default]
    Deny,
    /// They are written as they are (`allow_unschematized = true`).
    Allow,
}

/// Turns documents into the policy set; problems go to `diags`.
#[must_use]
pub fn policies(
    documents: Vec<Document>,
    schemas: &SchemaSet,
    unschematized: Unschematized,
    sources: &SourceMap,
    diags: &mut Diagnostics,
) -> PolicySet {
    let mut by_name: BTreeMap<String, Span> = BTreeMap::new();
    let mut policies = Vec::new();
    for document in documents {
        let context = document_name(&document);
        let Some(policy) = policy(document, &context, schemas, unschematized, sources, diags)
        else {
            continue;
        };
        if let Some(first) = by_name.get(&policy.name) {
            diags.push(
                Diagnostic::from_error(
                    &ValidateError::DuplicateName {
                        name: policy.name.clone(),
                    },
                    Severity::Error,
                )
                .at(policy.name_span(), "used again here")
                .with_related(*first, "first used here"),
            );
            continue;
        }
        by_name.insert(policy.name.clone(), policy.name_span());
        policies.push(policy);
    }
    policies.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then_with(|| a.name.cmp(&b.name))
    });
    PolicySet { policies }
}

/// Checks one document; `None` if it is unsound.
fn policy(
    document: Document,
    context: &str,
    schemas: &SchemaSet,
    unschematized: Unschematized,
    sources: &SourceMap,
    diags: &mut Diagnostics,
) -> Option<Policy> {
    let errors_before = diags.count(Severity::Error);
    let text = |key: &str| {
        document
            .value
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let name = text("name")?;
    let target_text = text("target")?;
    let module = text("module");
    let priority = document.value.get("priority").and_then(Value::as_i64)?;
    let create_modules = document
        .value
        .get("createModules")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let desired = document
        .value
        .get("desired")
        .and_then(Value::as_object)?
        .clone();

    let condition = match query::parse(&target_text) {
        Ok(condition) => Some(condition),
        Err(error) => {
            let span = condition_span(
                &document,
                sources,
                &target_text,
                error.offset(),
                error.len(),
            );
            diags.push(
                Diagnostic::from_error(
                    &ValidateError::TargetSyntax {
                        policy: name.clone(),
                        reason: error.to_string(),
                        help: miette::Diagnostic::help(&error).map(|help| help.to_string()),
                    },
                    Severity::Error,
                )
                .at(span, ""),
            );
            None
        }
    };
    if create_modules && module.is_none() {
        diags.error(
            &ValidateError::CreateModulesWithoutModule {
                policy: name.clone(),
            },
            document.spans.locate_key("/createModules"),
            "",
        );
    }
    check_desired(
        &document,
        context,
        &name,
        module.as_deref(),
        &desired,
        schemas,
        unschematized,
        diags,
    );
    let mut leaves = Vec::new();
    flatten(&Value::Object(desired.clone()), String::new(), &mut leaves);
    for leaf in leaves.iter().filter(|leaf| leaf.value.is_null()) {
        diags.error(
            &ValidateError::NullValue {
                policy: name.clone(),
                path: crate::load::pointer_keys(&leaf.pointer)
                    .collect::<Vec<_>>()
                    .join("."),
            },
            document
                .spans
                .locate_key(&format!("/desired{}", leaf.pointer)),
            "no value",
        );
    }
    if diags.count(Severity::Error) > errors_before {
        return None;
    }
    Some(Policy {
        name,
        priority,
        target: Target {
            text: target_text,
            condition: condition?,
        },
        module,
        create_modules,
        desired,
        leaves,
        document,
    })
}

/// Checks each desired property against the schema that governs it.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the arguments are the policy's parts"
)]
fn check_desired(
    document: &Document,
    context: &str,
    name: &str,
    module: Option<&str>,
    desired: &Map<String, Value>,
    schemas: &SchemaSet,
    unschematized: Unschematized,
    diags: &mut Diagnostics,
) {
    let twin = module.map_or_else(|| "the device twin".to_owned(), |m| format!("module `{m}`"));
    if !schemas.knows_module(module)
        && unschematized == Unschematized::Deny
        && let Some(module) = module
    {
        let modules: Vec<&str> = schemas.iter().filter_map(|s| s.module.as_deref()).collect();
        let help = did_you_mean(module, modules.iter().copied()).map_or_else(
            || {
                "add a twin configuration schema for it to the schema directory, or set \
                     `allow_unschematized = true` in twinops.toml"
                    .to_owned()
            },
            |near| format!("did you mean `{near}`? module ids are case-sensitive"),
        );
        diags.error(
            &ValidateError::UnknownModule {
                policy: name.to_owned(),
                module: module.to_owned(),
                help,
            },
            document.spans.locate("/module"),
            "no schema for this module",
        );
        return;
    }
    // Flat schemas (no `property`) validate the whole desired section at once.
    let mut flat: Option<&TwinSchema> = None;
    for (property, value) in desired {
        let pointer = join_pointer("/desired", property);
        match schemas.governing(module, property) {
            Some(schema) if schema.property.is_none() => flat = Some(schema),
            Some(schema) => {
                for mut violation in schema.violations(value, Completeness::Fragment) {
                    if is_null_leaf(&violation) {
                        continue;
                    }
                    violation.pointer = format!("{pointer}{}", violation.pointer);
                    diags.push(located(document, context, &violation));
                }
            }
            None if unschematized == Unschematized::Allow => {}
            None => {
                let governed: Vec<String> = schemas
                    .iter()
                    .filter(|schema| schema.module.as_deref() == module)
                    .filter_map(|schema| schema.property.clone())
                    .collect();
                let help = did_you_mean(property, governed.iter().map(String::as_str)).map_or_else(
                    || {
                        "add a schema that governs it, or set `allow_unschematized = true` \
                             in twinops.toml"
                            .to_owned()
                    },
                    |near| format!("did you mean `{near}`?"),
                );
                diags.error(
                    &ValidateError::UnschematizedProperty {
                        policy: name.to_owned(),
                        property: property.clone(),
                        twin: twin.clone(),
                        help,
                    },
                    document.spans.locate_key(&pointer),
                    "",
                );
            }
        }
    }
    if let Some(schema) = flat {
        for mut violation in
            schema.violations(&Value::Object(desired.clone()), Completeness::Fragment)
        {
            violation.pointer = format!("/desired{}", violation.pointer);
            diags.push(located(document, context, &violation));
        }
    }
}

/// Null leaves get their own error ([`ValidateError::NullValue`]), not a
/// type error as well.
fn is_null_leaf(violation: &crate::schema::Violation) -> bool {
    matches!(&violation.error, crate::schema::ViolationError::WrongType { found, .. } if found == "null")
}

/// The leaves of `value`: scalars, arrays and empty objects, by pointer.
pub fn flatten(value: &Value, pointer: String, out: &mut Vec<Leaf>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                flatten(child, join_pointer(&pointer, key), out);
            }
        }
        _ => out.push(Leaf {
            pointer,
            value: value.clone(),
        }),
    }
}

/// The span of bytes `offset..offset + len` of the target condition, inside
/// the YAML scalar that holds it when the scalar is written plainly or
/// quoted without escapes; else the whole scalar.
fn condition_span(
    document: &Document,
    sources: &SourceMap,
    condition: &str,
    offset: usize,
    len: usize,
) -> Span {
    let scalar = document.spans.locate("/target");
    let written = sources
        .get(scalar.file)
        .and_then(|file| file.text.get(scalar.start..scalar.end))
        .unwrap_or_default();
    let inner = if written == condition {
        Some(0)
    } else if written.len() == condition.len() + 2
        && (written.starts_with('\'') || written.starts_with('"'))
        && written.get(1..=condition.len()) == Some(condition)
    {
        Some(1)
    } else {
        None
    };
    inner.map_or(scalar, |shift| scalar.sub(shift + offset, len.max(1)))
}
