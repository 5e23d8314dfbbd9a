//! Schemas: the policy file format and the twin configuration schemas.
//!
//! Twin configuration schemas are data (`schemas/*.schema.json`, draft
//! 2020-12): each declares in `x-twinops` the module and desired property it
//! governs, its write mode and its cross-field rules. The bundled ones are
//! embedded; a project's schema directory may add more or replace one of the
//! same name. Pure: files come in as text, problems go out as diagnostics.

pub mod duration;
mod err;
mod rules;
mod violation;

pub use err::{SchemaError, ViolationError};
pub use rules::{Check, Rule, ValueKind};
pub use violation::{AGENT_DURATION_FORMAT, Completeness, Violation};

use jsonschema::{Draft, Validator};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::diag::{Diagnostic, Diagnostics, FileId, Severity, SourceFile, Span};

/// The policy format schema, as shipped.
pub const POLICY_SCHEMA: &str = include_str!("../../schemas/policy.schema.json");

/// Every bundled schema: (name, file name, text).
pub const BUNDLED: [(&str, &str, &str); 3] = [
    ("policy", "policy.schema.json", POLICY_SCHEMA),
    (
        "azureiotsecurity",
        "azureiotsecurity.schema.json",
        include_str!("../../schemas/azureiotsecurity.schema.json"),
    ),
    (
        "DefenderIotMicroAgent",
        "defender-iot-micro-agent.schema.json",
        include_str!("../../schemas/defender-iot-micro-agent.schema.json"),
    ),
];

/// How a governed property is written to the twin.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// The complete object, defaults filled, every time it changes.
    Whole,
    /// Only the changed leaves.
    Merge,
}

/// The `x-twinops` keyword of a twin configuration schema.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Binding {
    name: String,
    #[serde(default)]
    module: Option<String>,
    #[serde(default)]
    property: Option<String>,
    write: WriteMode,
    #[serde(default)]
    rules: Vec<Rule>,
}

/// A compiled twin configuration schema and what it governs.
#[derive(Debug)]
pub struct TwinSchema {
    /// Its name, e.g. `azureiotsecurity`.
    pub name: String,
    /// Where it came from (`bundled:…` or a project path).
    pub origin: String,
    /// The module twin it governs; `None` for the device twin.
    pub module: Option<String>,
    /// The desired property it governs; `None` when it governs every
    /// top-level desired key (flat module twins).
    pub property: Option<String>,
    /// How its properties are written.
    pub write: WriteMode,
    /// Cross-field rules.
    pub rules: Vec<Rule>,
    /// The schema document.
    pub json: Value,
    validator: Validator,
}

impl TwinSchema {
    /// Builds a twin schema from its JSON text.
    ///
    /// # Errors
    /// When the text is not JSON, not a schema, or lacks a valid `x-twinops`.
    pub fn parse(origin: &str, text: &str) -> Result<Self, (SchemaError, Option<(usize, usize)>)> {
        let json: Value = serde_json::from_str(text).map_err(|error| {
            (
                SchemaError::NotJson {
                    path: origin.to_owned(),
                    reason: error.to_string(),
                },
                Some((error.line(), error.column().saturating_sub(1))),
            )
        })?;
        let binding_error = |reason: String| {
            (
                SchemaError::Binding {
                    path: origin.to_owned(),
                    reason,
                },
                None,
            )
        };
        let binding = json
            .get("x-twinops")
            .ok_or_else(|| binding_error("missing `x-twinops`".to_owned()))?;
        let binding: Binding = serde_json::from_value(binding.clone())
            .map_err(|error| binding_error(format!("invalid `x-twinops`: {error}")))?;
        for rule in &binding.rules {
            rule.check_shape().map_err(&binding_error)?;
        }
        let validator = compile(&json).map_err(|reason| {
            (
                SchemaError::InvalidSchema {
                    path: origin.to_owned(),
                    reason,
                },
                None,
            )
        })?;
        Ok(Self {
            name: binding.name,
            origin: origin.to_owned(),
            module: binding.module,
            property: binding.property,
            write: binding.write,
            rules: binding.rules,
            json,
            validator,
        })
    }

    /// Every violation of this schema by `instance`.
    #[must_use]
    pub fn violations(&self, instance: &Value, completeness: Completeness) -> Vec<Violation> {
        violation::violations(&self.validator, &self.json, instance, completeness)
    }

    /// The top-level property names the schema defines.
    pub fn property_names(&self) -> impl Iterator<Item = &str> {
        self.json
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|properties| properties.keys().map(String::as_str))
    }

    /// The top-level defaults (`properties.*.default`).
    #[must_use]
    pub fn defaults(&self) -> Map<String, Value> {
        self.json
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(name, property)| {
                property
                    .get("default")
                    .map(|default| (name.clone(), default.clone()))
            })
            .collect()
    }

    /// What the schema governs, in words: ``module `m` property `p` ``.
    #[must_use]
    pub fn governs(&self) -> String {
        let twin = self
            .module
            .as_ref()
            .map_or_else(|| "the device twin".to_owned(), |m| format!("module `{m}`"));
        match &self.property {
            Some(property) => format!("{twin} desired property `{property}`"),
            None => format!("{twin} desired properties"),
        }
    }
}

/// The twin configuration schemas of a project.
#[derive(Debug, Default)]
pub struct SchemaSet {
    schemas: Vec<TwinSchema>,
}

impl SchemaSet {
    /// The bundled schemas, then each project file, which replaces a bundled
    /// schema of the same name. Files that cannot be used become diagnostics.
    #[must_use]
    pub fn build(project_files: &[(FileId, &SourceFile)], diags: &mut Diagnostics) -> Self {
        let mut schemas: Vec<TwinSchema> = Vec::new();
        for (name, file, text) in BUNDLED.iter().skip(1) {
            match TwinSchema::parse(&format!("bundled:{file}"), text) {
                Ok(schema) => schemas.push(schema),
                Err((error, _)) => diags.push(
                    Diagnostic::from_error(&error, Severity::Error).with_help(Some(format!(
                        "bundled schema `{name}` is broken; please report it"
                    ))),
                ),
            }
        }
        for (id, file) in project_files {
            if file.path.ends_with("policy.schema.json") {
                continue;
            }
            match TwinSchema::parse(&file.path, &file.text) {
                Ok(schema) => {
                    schemas.retain(|other| other.name != schema.name);
                    schemas.push(schema);
                }
                Err((error, at)) => {
                    let start = at.map_or(0, |(line, column)| file.offset(line, column));
                    diags.error(&error, Span::new(*id, start, start + 1), "here");
                }
            }
        }
        schemas.sort_by(|a, b| a.name.cmp(&b.name));
        for pair in schemas.windows(2) {
            if let [first, second] = pair
                && first.module == second.module
                && first.property == second.property
            {
                diags.push(Diagnostic::from_error(
                    &SchemaError::DuplicateBinding {
                        first: first.origin.clone(),
                        second: second.origin.clone(),
                        what: first.governs(),
                    },
                    Severity::Error,
                ));
            }
        }
        Self { schemas }
    }

    /// The schema that governs desired property `property` of `module`
    /// (`None`: the device twin).
    #[must_use]
    pub fn governing(&self, module: Option<&str>, property: &str) -> Option<&TwinSchema> {
        let same_twin = |schema: &&TwinSchema| schema.module.as_deref() == module;
        self.schemas
            .iter()
            .filter(same_twin)
            .find(|schema| schema.property.as_deref() == Some(property))
            .or_else(|| {
                self.schemas
                    .iter()
                    .filter(same_twin)
                    .find(|schema| schema.property.is_none())
            })
    }

    /// Whether any schema governs `module`.
    #[must_use]
    pub fn knows_module(&self, module: Option<&str>) -> bool {
        self.schemas
            .iter()
            .any(|schema| schema.module.as_deref() == module)
    }

    /// Every schema, by name.
    pub fn iter(&self) -> impl Iterator<Item = &TwinSchema> {
        self.schemas.iter()
    }
}

/// The policy format schema, compiled.
#[derive(Debug)]
pub struct PolicySchema {
    json: Value,
    validator: Validator,
}

impl PolicySchema {
    /// The bundled policy schema.
    ///
    /// # Errors
    /// Only if the shipped schema is broken.
    pub fn bundled() -> Result<Self, SchemaError> {
        let invalid = |reason: String| SchemaError::InvalidSchema {
            path: "bundled:policy.schema.json".to_owned(),
            reason,
        };
        let json: Value =
            serde_json::from_str(POLICY_SCHEMA).map_err(|error| invalid(error.to_string()))?;
        let validator = compile(&json).map_err(invalid)?;
        Ok(Self { json, validator })
    }

    /// Every violation of the policy format by one document.
    #[must_use]
    pub fn violations(&self, document: &Value) -> Vec<Violation> {
        violation::violations(&self.validator, &self.json, document, Completeness::Whole)
    }
}

fn compile(json: &Value) -> Result<Validator, String> {
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .with_format(AGENT_DURATION_FORMAT, |text: &str| {
            duration::check_agent_duration(text).is_ok()
        })
        .build(json)
        .map_err(|error| error.to_string())
}
