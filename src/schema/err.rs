//! Errors about schemas and about values that break them.

use miette::Diagnostic;
use thiserror::Error;

/// A value that breaks a schema, in the user's words.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq, Eq)]
pub enum ViolationError {
    /// A key the schema does not define.
    #[error("unknown property `{name}`")]
    #[diagnostic(code(twinops::schema::unknown_property))]
    UnknownProperty {
        /// The key.
        name: String,
    },
    /// A required key is absent.
    #[error("missing required property `{name}`")]
    #[diagnostic(code(twinops::schema::missing_property))]
    MissingProperty {
        /// The key.
        name: String,
    },
    /// A value of the wrong JSON type.
    #[error("expected {expected}, found {found}")]
    #[diagnostic(code(twinops::schema::wrong_type))]
    WrongType {
        /// What the schema allows, e.g. `string` or `object`.
        expected: String,
        /// What is there, with the value if it is short.
        found: String,
    },
    /// A value outside an enumeration or constant.
    #[error("`{value}` is not {allowed}")]
    #[diagnostic(code(twinops::schema::value_not_allowed))]
    NotAllowed {
        /// The value.
        value: String,
        /// "one of" a list, or the constant.
        allowed: String,
    },
    /// A number outside its range.
    #[error("`{value}` is {relation} {bound}")]
    #[diagnostic(code(twinops::schema::out_of_range))]
    OutOfRange {
        /// The value.
        value: String,
        /// `below the minimum`, `above the maximum`, `not a multiple of`...
        relation: &'static str,
        /// The bound.
        bound: String,
    },
    /// A duration the agents cannot use.
    #[error("duration `{value}` {problem}")]
    #[diagnostic(code(twinops::schema::bad_duration))]
    BadDuration {
        /// The value.
        value: String,
        /// Why, in a phrase.
        problem: &'static str,
    },
    /// A string that does not match its pattern.
    #[error("`{value}` does not have the expected form")]
    #[diagnostic(code(twinops::schema::pattern))]
    Pattern {
        /// The value.
        value: String,
    },
    /// Anything else the schema rejects.
    #[error("{reason}")]
    #[diagnostic(code(twinops::schema::invalid))]
    Other {
        /// The validator's words.
        reason: String,
    },
}

/// A schema file that twinops cannot use.
#[derive(Debug, Error, Diagnostic)]
pub enum SchemaError {
    /// The file is not JSON.
    #[error("schema `{path}` is not valid JSON: {reason}")]
    #[diagnostic(code(twinops::schema::not_json))]
    NotJson {
        /// The file.
        path: String,
        /// The parser's words.
        reason: String,
    },
    /// The file is not a usable JSON Schema.
    #[error("schema `{path}` is not a valid JSON Schema: {reason}")]
    #[diagnostic(code(twinops::schema::invalid_schema))]
    InvalidSchema {
        /// The file.
        path: String,
        /// The compiler's words.
        reason: String,
    },
    /// `x-twinops` is missing or malformed.
    #[error("schema `{path}`: {reason}")]
    #[diagnostic(
        code(twinops::schema::binding),
        help(
            "a twin configuration schema declares what it governs, e.g. \
             `\"x-twinops\": {{\"name\": \"azureiotsecurity\", \"module\": \"azureiotsecurity\", \
             \"property\": \"ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration\", \"write\": \"whole\"}}`"
        )
    )]
    Binding {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Two schemas govern the same property.
    #[error("schemas `{first}` and `{second}` both govern {what}")]
    #[diagnostic(code(twinops::schema::duplicate_binding))]
    DuplicateBinding {
        /// One schema.
        first: String,
        /// The other.
        second: String,
        /// The module and property.
        what: String,
    },
}
