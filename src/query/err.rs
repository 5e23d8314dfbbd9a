//! Errors from [`parse`](crate::query::parse): what is wrong with a condition and where.
//!
//! Every error points at a byte span of the condition text (offset and length, as
//! miette counts), so the caller can place it inside the policy file that holds
//! the condition. At the end of the text the span is empty and sits at the end.
//! Messages follow STYLE.md: lowercase, one line, no final period, the user's
//! text in backticks; fixes and did-you-mean go in `help`.

use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

/// Why a condition could not be parsed.
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
}

impl QueryError {
    /// Byte offset of the offending text inside the condition.
    #[must_use]
    pub fn offset(&self) -> usize {
        self.span().offset()
    }

    /// Byte length of the offending text; 0 only at the end of the condition.
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

/// The condition is longer than [`MAX_CHARS`](crate::query::MAX_CHARS), the
/// hub's limit for a query. The span covers the excess.
#[derive(Debug, Clone, PartialEq, Eq, Error, Diagnostic)]
#[error("condition is {chars} characters long, over IoT Hub's limit of {limit}")]
#[diagnostic(
    code(twinops::query::too_long),
    help("IoT Hub rejects longer queries; split the target or shorten its values")
)]
pub struct TooLongError {
    chars: usize,
    limit: usize,
    #[label("over the limit")]
    span: SourceSpan,
}

impl TooLongError {
    pub(crate) fn new(chars: usize, limit: usize, offset: usize, len: usize) -> Self {
        Self {
            chars,
            limit,
            span: SourceSpan::new(offset.into(), len),
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
