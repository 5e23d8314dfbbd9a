//! Errors of the validate stage: policies that are well-formed YAML and
//! follow the policy format, but do not make sense together or with the
//! schemas.

use miette::Diagnostic;
use thiserror::Error;

/// A problem with a policy's meaning.
#[derive(Debug, Error, Diagnostic)]
pub enum ValidateError {
    /// Two policies share a name.
    #[error("policy name `{name}` is used twice")]
    #[diagnostic(
        code(twinops::validate::duplicate_name),
        help("policy names are unique across the repository; rename one of them")
    )]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// The target does not parse.
    #[error("policy `{policy}`: invalid target: {reason}")]
    #[diagnostic(code(twinops::validate::target_syntax))]
    TargetSyntax {
        /// The policy.
        policy: String,
        /// The parser's words.
        reason: String,
        /// The parser's help.
        #[help]
        help: Option<String>,
    },
    /// The module has no schema at all.
    #[error("policy `{policy}`: no schema governs module `{module}`")]
    #[diagnostic(code(twinops::validate::unknown_module))]
    UnknownModule {
        /// The policy.
        policy: String,
        /// The module id.
        module: String,
        /// Did-you-mean, or how to add a schema.
        #[help]
        help: String,
    },
    /// A desired property no schema governs.
    #[error("policy `{policy}`: no schema governs desired property `{property}` of {twin}")]
    #[diagnostic(code(twinops::validate::unschematized_property))]
    UnschematizedProperty {
        /// The policy.
        policy: String,
        /// The property.
        property: String,
        /// ``module `m` `` or `the device twin`.
        twin: String,
        /// Did-you-mean, or how to allow it.
        #[help]
        help: String,
    },
    /// A null leaf.
    #[error("policy `{policy}`: `{path}` is null")]
    #[diagnostic(
        code(twinops::validate::null_value),
        help(
            "a policy cannot set null; to stop managing a property, remove it from the policy \
             and twinops removes it from the twins it wrote it to"
        )
    )]
    NullValue {
        /// The policy.
        policy: String,
        /// The desired path.
        path: String,
    },
    /// `createModules` on a device-twin policy.
    #[error("policy `{policy}`: `createModules` needs a `module`")]
    #[diagnostic(
        code(twinops::validate::create_modules_without_module),
        help(
            "`createModules: true` creates the module identity a policy configures; add `module:` or remove it"
        )
    )]
    CreateModulesWithoutModule {
        /// The policy.
        policy: String,
    },
}
