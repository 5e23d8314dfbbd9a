//! Errors from [`parse`](crate::query::parse) and
//! [`statement`](crate::query::statement): what is wrong with a condition or a
//! whole query, and where.
//!
//! Every error points at a byte span of the text (offset and length, as miette
//! counts), so the caller can place it inside the policy file that holds the
//! condition, or echo it to the client that sent the query. At the end of the
//! text the span is empty and sits at the end.
//! Messages follow STYLE.md: lowercase, one line, no final period, the user's
//! text in backticks; fixes and did-you-mean go in `help`.

use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

/// Why a condition or a query could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error, Diagnostic)]
pub enum QueryError {
    /// The text is not a well-formed condition.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Syntax(#[from] SyntaxError),
    /// A function other than `IS_DEFINED` is called.
    #[error(transparent)]
    #[diagnostic(transparent)]
    UnknownFunction(#[from] UnknownFunctionError),
    /// The condition is longer than the hub accepts.
    #[error(transparent)]
    #[diagnostic(transparent)]
    TooLong(#[from] TooLongError),
    /// Parentheses and `NOT`s nest deeper than twinops evaluates.
    #[error(transparent)]
    #[diagnostic(transparent)]
    TooDeep(#[from] TooDeepError),
    /// A part of IoT Hub's query language that twinops does not evaluate, such
    /// as `GROUP BY` or `devices.jobs`.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Unsupported(#[from] UnsupportedError),
}

impl QueryError {
    /// Byte offset of the offending text inside the condition or query.
    #[must_use]
    pub fn offset(&self) -> usize {
        self.span().offset()
    }

    /// Byte length of the offending text; 0 only at the end of the text.
    #[must_use]
    #[expect(
        clippy::len_without_is_empty,
        reason = "the length of a span, not of a collection"
    )]
    pub fn len(&self) -> usize {
        self.span().len()
    }

    /// The offending text as a miette span.
    #[must_use]
    pub fn span(&self) -> SourceSpan {
        match self {
            Self::Syntax(e) => e.span,
            Self::UnknownFunction(e) => e.span,
            Self::TooLong(e) => e.span,
            Self::TooDeep(e) => e.span,
            Self::Unsupported(e) => e.span,
        }
    }

    /// The fix suggested to the user, if any.
    #[must_use]
    pub fn help(&self) -> Option<String> {
        Diagnostic::help(self).map(|help| help.to_string())
    }
}

/// The text is not a well-formed condition: a bad token, a missing operand, a
/// stray parenthesis, an unknown twin field.
#[derive(Debug, Clone, PartialEq, Eq, Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(code(twinops::query::syntax))]
pub struct SyntaxError {
    message: String,
    #[label]
    span: SourceSpan,
    #[help]
    help: Option<String>,
}

impl SyntaxError {
    pub(crate) fn new(message: impl Into<String>, offset: usize, len: usize) -> Self {
        Self {
            message: message.into(),
            span: SourceSpan::new(offset.into(), len),
            help: None,
        }
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// A function other than `IS_DEFINED`, the only one the hub allows in twin
/// query conditions.
#[derive(Debug, Clone, PartialEq, Eq, Error, Diagnostic)]
#[error("unknown function `{name}`")]
#[diagnostic(code(twinops::query::unknown_function))]
pub struct UnknownFunctionError {
    name: String,
    #[label]
    span: SourceSpan,
    #[help]
    help: Option<String>,
}

impl UnknownFunctionError {
    pub(crate) fn new(name: &str, offset: usize, help: String) -> Self {
        Self {
            name: name.to_owned(),
            span: SourceSpan::new(offset.into(), name.len()),
            help: Some(help),
        }
    }
}

/// The condition or query is longer than
/// [`MAX_CHARS`](crate::query::MAX_CHARS), the hub's limit for a query. The
/// span covers the excess.
#[derive(Debug, Clone, PartialEq, Eq, Error, Diagnostic)]
#[error("{subject} is {chars} characters long, over IoT Hub's limit of {limit}")]
#[diagnostic(code(twinops::query::too_long))]
pub struct TooLongError {
    /// `condition` or `query`.
    subject: &'static str,
    chars: usize,
    limit: usize,
    #[label("over the limit")]
    span: SourceSpan,
    #[help]
    help: &'static str,
}

impl TooLongError {
    /// A condition too long; a policy target, so the help speaks of targets.
    pub(crate) fn new(chars: usize, limit: usize, offset: usize, len: usize) -> Self {
        Self {
            subject: "condition",
            chars,
            limit,
            span: SourceSpan::new(offset.into(), len),
            help: "IoT Hub rejects longer queries; split the target or shorten its values",
        }
    }

    /// The same excess, in a whole query rather than a condition.
    pub(crate) fn in_query(self) -> Self {
        Self {
            subject: "query",
            help: "IoT Hub rejects longer queries; shorten the condition or split the query",
            ..self
        }
    }
}

/// Parentheses and `NOT`s nest deeper than
/// [`MAX_DEPTH`](crate::query::MAX_DEPTH). The span is the token that opens
/// one level too many.
#[derive(Debug, Clone, PartialEq, Eq, Error, Diagnostic)]
#[error("condition nests deeper than {limit} levels")]
#[diagnostic(
    code(twinops::query::too_deep),
    help("remove redundant parentheses or double `NOT`s")
)]
pub struct TooDeepError {
    limit: usize,
    #[label("one level too many")]
    span: SourceSpan,
}

impl TooDeepError {
    pub(crate) fn new(limit: usize, offset: usize, len: usize) -> Self {
        Self {
            limit,
            span: SourceSpan::new(offset.into(), len),
        }
    }
}

/// A part of IoT Hub's query language that twinops does not evaluate: `GROUP BY`,
/// `ORDER BY`, aggregates other than `COUNT()`, joins, and collections other than
/// `devices` and `devices.modules`. The span is the unsupported text.
#[derive(Debug, Clone, PartialEq, Eq, Error, Diagnostic)]
#[error("{feature} is not supported")]
#[diagnostic(code(twinops::query::unsupported))]
pub struct UnsupportedError {
    /// What the user wrote, in backticks: `` `GROUP BY` ``.
    feature: String,
    #[label("not supported")]
    span: SourceSpan,
    #[help]
    help: Option<String>,
}

impl UnsupportedError {
    pub(crate) fn new(feature: impl Into<String>, offset: usize, len: usize) -> Self {
        Self {
            feature: feature.into(),
            span: SourceSpan::new(offset.into(), len),
            help: None,
        }
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}
