//! Errors of the load stage: reading files and turning YAML into documents.

use miette::Diagnostic;
use thiserror::Error;

/// A problem found while reading policy files.
#[derive(Debug, Error, Diagnostic)]
pub enum LoadError {
    /// The file could not be read (operational).
    #[error("cannot read `{path}`: {reason}")]
    #[diagnostic(code(twinops::load::io))]
    Io {
        /// The file or directory.
        path: String,
        /// What the OS said.
        reason: String,
    },
    /// The bytes are not UTF-8.
    #[error("file is not valid UTF-8")]
    #[diagnostic(
        code(twinops::load::not_utf8),
        help("save the file as UTF-8; YAML policy files must be UTF-8 text")
    )]
    NotUtf8,
    /// The YAML is malformed.
    #[error("invalid YAML: {reason}")]
    #[diagnostic(code(twinops::load::yaml_syntax))]
    YamlSyntax {
        /// The parser's words.
        reason: String,
        /// A hint for well-known mistakes (tabs).
        #[help]
        help: Option<String>,
    },
    /// A key given twice in one mapping.
    #[error("key `{key}` appears twice in one mapping")]
    #[diagnostic(
        code(twinops::load::duplicate_key),
        help("each key may appear once per mapping; remove or merge the duplicate")
    )]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// A file with no document at all.
    #[error("file contains no policy document")]
    #[diagnostic(
        code(twinops::load::empty_file),
        help("remove the file, or add a policy document to it")
    )]
    EmptyFile,
    /// A document separator with nothing after it.
    #[error("empty YAML document")]
    #[diagnostic(
        code(twinops::load::empty_document),
        help("remove the stray `---`, or add a policy after it")
    )]
    EmptyDocument,
    /// A mapping key that is not a string.
    #[error("mapping key `{key}` is not a string")]
    #[diagnostic(
        code(twinops::load::non_string_key),
        help("quote the key, e.g. `'{key}':`; twin property names are strings")
    )]
    NonStringKey {
        /// The key as written.
        key: String,
    },
    /// A custom YAML tag.
    #[error("YAML tag `{tag}` is not supported")]
    #[diagnostic(
        code(twinops::load::unsupported_tag),
        help("remove the tag; policy values are plain strings, numbers, booleans, lists and maps")
    )]
    UnsupportedTag {
        /// The tag as written.
        tag: String,
    },
    /// A value a tag could not make sense of (`!!int abc`).
    #[error("value does not fit its YAML tag")]
    #[diagnostic(code(twinops::load::bad_value))]
    BadValue,
    /// A float that JSON cannot hold (`.nan`, `.inf`).
    #[error("number `{value}` cannot be written to a twin")]
    #[diagnostic(
        code(twinops::load::non_finite_number),
        help("twin values are JSON numbers; NaN and infinity have no JSON form")
    )]
    NonFiniteNumber {
        /// The number as written.
        value: String,
    },
    /// Nesting past what any twin can hold.
    #[error("YAML nesting deeper than {limit} levels")]
    #[diagnostic(
        code(twinops::load::too_deep),
        help(
            "policy documents nest at most 32 levels, and twins allow 10 below `desired`; flatten the document"
        )
    )]
    TooDeep {
        /// The limit.
        limit: usize,
    },
}
