//! Query: twin query conditions of `IoT Hub`, parsed and evaluated against one twin.
//!
//! [`parse`] turns the text of a WHERE condition (or `*`, every twin) into a
//! [`Condition`]; [`Condition::matches`] evaluates it against a twin's JSON as
//! the hub returns it, with the hub's three-valued logic: a twin matches only
//! when the condition is true, so `tags.env != 'prod'` does not match a twin
//! without `tags.env`. The compiler uses it for policy targets, the emulator
//! for `POST /devices/query`; it knows nothing of either. Pure: no I/O, no
//! panics on any input, recursion bounded by [`MAX_DEPTH`].
//!
//! The language is the WHERE part of the hub's query language
//! (MicrosoftDocs/azure-docs `articles/iot-hub/iot-hub-devguide-query-language.md`
//! and `query-twins.md`): `=`, `!=`, `<>`, `<`, `<=`, `>`, `>=`, `AND`, `OR`,
//! `NOT`, parentheses, `IN` and `NIN` with bracketed lists, `IS_DEFINED(path)`,
//! string, number, boolean and `null` constants, and paths such as
//! `properties.reported.fw` or `tags['my-key']`. Arithmetic, which the hub's
//! grammar also has, and the functions of message routing are rejected with an
//! error that says so. The semantics are described in `eval.rs`, the syntax in
//! `parser.rs`.
//!
//! Files:
//! - `err.rs`: [`QueryError`] and its variants, each with a byte span
//! - `lexer.rs`: text → tokens
//! - `parser.rs`: tokens → syntax tree, with the user-facing syntax errors
//! - `ast.rs`: the syntax tree and its canonical text (`Display`)
//! - `eval.rs`: syntax tree × twin → true, false or undefined
//! - `statement.rs`: a whole `SELECT ... FROM ... WHERE` query, for the emulator

mod ast;
mod err;
mod eval;
mod lexer;
mod parser;
mod statement;

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use crate::query::ast::Expr;
pub use crate::query::err::{
    QueryError, SyntaxError, TooDeepError, TooLongError, UnknownFunctionError, UnsupportedError,
};
pub use crate::query::statement::{Collection, Field, Selection, Statement, statement};

/// The longest condition accepted, in UTF-16 code units: the hub's limit for a
/// query ("Query expressions can have a maximum length of 8192 characters",
/// `query-twins.md`). The hub runs on .NET, whose strings count UTF-16 units
/// (INFERRED), so a character outside the Basic Multilingual Plane counts twice.
pub const MAX_CHARS: usize = 8192;

/// The deepest nesting of parentheses and `NOT`s accepted.
pub const MAX_DEPTH: usize = 64;

/// A parsed target condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    scope: Scope,
}

/// Which twins a condition can match.
#[derive(Debug, Clone, PartialEq)]
enum Scope {
    /// `*`: every twin.
    All,
    /// Twins for which the expression is true.
    Where(Expr),
}

/// Parses a WHERE condition, or `*` (every twin; surrounding whitespace allowed).
///
/// # Errors
///
/// [`QueryError`] with the byte span of the first problem when the text is not
/// a condition twinops can evaluate, is longer than [`MAX_CHARS`], or nests
/// deeper than [`MAX_DEPTH`].
pub fn parse(text: &str) -> Result<Condition, QueryError> {
    check_length(text)?;
    let trimmed = text.trim();
    if trimmed == "*" {
        return Ok(Condition { scope: Scope::All });
    }
    if trimmed.is_empty() {
        return Err(SyntaxError::new("empty condition", text.len(), 0)
            .with_help("write `*` to target every twin")
            .into());
    }
    parser::reject_full_query(text)?;
    let tokens = lexer::tokens(text)?;
    let expr = parser::expression(text, tokens)?;
    Ok(Condition {
        scope: Scope::Where(expr),
    })
}

/// Fails when `text` is longer than [`MAX_CHARS`]; the span is the excess.
fn check_length(text: &str) -> Result<(), QueryError> {
    let units: usize = text.chars().map(char::len_utf16).sum();
    if units <= MAX_CHARS {
        return Ok(());
    }
    let mut seen = 0;
    let offset = text
        .char_indices()
        .find(|(_, c)| {
            seen += c.len_utf16();
            seen > MAX_CHARS
        })
        .map_or(text.len(), |(i, _)| i);
    Err(TooLongError::new(units, MAX_CHARS, offset, text.len() - offset).into())
}

impl Condition {
    /// True for `*`.
    #[must_use]
    pub fn is_all(&self) -> bool {
        matches!(self.scope, Scope::All)
    }

    /// Whether the condition is true for this twin (three-valued logic; only
    /// `true` matches).
    #[must_use]
    pub fn matches(&self, twin: &Value) -> bool {
        match &self.scope {
            Scope::All => true,
            Scope::Where(expr) => expr.truth(twin) == Some(true),
        }
    }

    /// The twin paths the condition reads, as dotted strings (`tags.site`,
    /// `properties.reported.fw`), sorted and deduplicated; empty for `*`.
    ///
    /// Keys are joined with `.` even when written in brackets (`tags['my-key']`
    /// gives `tags.my-key`); twin keys cannot contain `.`, so the form is
    /// unambiguous. Keys match the twin exactly. Two twins with the same values
    /// (or absences) at these paths get the same result from [`matches`](Self::matches).
    #[must_use]
    pub fn paths(&self) -> Vec<String> {
        let mut paths = BTreeSet::new();
        if let Scope::Where(expr) = &self.scope {
            expr.collect_paths(&mut paths);
        }
        paths.into_iter().collect()
    }
}

/// A condition taken apart for indexing ([`Condition::split`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// `(path keys, text)`: the condition is true whenever the twin's string
    /// at the path is exactly the text (`path = 'text'` or `path IN [...]`
    /// terms of a top-level `OR`).
    pub equalities: Vec<(Vec<String>, String)>,
    /// `AND`s of such equalities, each as its `(path keys, text)` pairs
    /// sorted by path, one path once: the condition is true whenever every
    /// pair of one of them holds.
    pub conjunctions: Vec<Vec<(Vec<String>, String)>>,
    /// The other terms, `OR`ed; `None` when no term is left.
    pub rest: Option<Condition>,
}

impl Condition {
    /// Splits off the top-level `OR` terms that test a path for equality
    /// with string literals, so that they can be looked up in an index
    /// instead of evaluated per twin. The condition matches a twin exactly
    /// when one equality holds or the rest matches (an `OR` is true when
    /// any of its terms is).
    #[must_use]
    pub fn split(&self) -> Split {
        let Scope::Where(expr) = &self.scope else {
            return Split {
                equalities: Vec::new(),
                conjunctions: Vec::new(),
                rest: Some(self.clone()),
            };
        };
        let terms = match expr {
            Expr::Or(items) => items.as_slice(),
            single => std::slice::from_ref(single),
        };
        let mut equalities = Vec::new();
        let mut conjunctions = Vec::new();
        let mut rest = Vec::new();
        for term in terms {
            if let Some(found) = string_equalities(term) {
                equalities.extend(found);
            } else if let Some(found) = conjunction(term) {
                conjunctions.push(found);
            } else {
                rest.push(term.clone());
            }
        }
        let rest = match rest.len() {
            0 => None,
            1 => rest.pop().map(|expr| Condition {
                scope: Scope::Where(expr),
            }),
            _ => Some(Condition {
                scope: Scope::Where(Expr::Or(rest)),
            }),
        };
        Split {
            equalities,
            conjunctions,
            rest,
        }
    }
}

/// The (path, text) pairs of an `AND` whose every term is one
/// `path = 'text'` (or `path IN ['text']`), sorted by path; `None` for any
/// other term, and for one that tests a path twice.
fn conjunction(term: &Expr) -> Option<Vec<(Vec<String>, String)>> {
    let Expr::And(items) = term else {
        return None;
    };
    let mut pairs = Vec::with_capacity(items.len());
    for item in items {
        let found = string_equalities(item)?;
        let [pair] = found.as_slice() else {
            return None;
        };
        pairs.push(pair.clone());
    }
    pairs.sort();
    pairs.dedup();
    if pairs
        .windows(2)
        .any(|two| two.first().map(|p| &p.0) == two.get(1).map(|p| &p.0))
    {
        return None;
    }
    Some(pairs)
}

/// The (path, text) pairs of `path = 'text'`, `'text' = path` or
/// `path IN ['a', 'b']`; `None` for any other term.
fn string_equalities(term: &Expr) -> Option<Vec<(Vec<String>, String)>> {
    use ast::{Literal, Membership, Operand};
    match term {
        Expr::Compare {
            left,
            op: lexer::CmpOp::Eq,
            right,
        } => match (left, right) {
            (Operand::Path(path), Operand::Literal(Literal::String(text)))
            | (Operand::Literal(Literal::String(text)), Operand::Path(path)) => {
                Some(vec![(path.keys().to_vec(), text.clone())])
            }
            _ => None,
        },
        Expr::Member {
            left: Operand::Path(path),
            op: Membership::In,
            list,
        } => list
            .iter()
            .map(|item| match item {
                Literal::String(text) => Some((path.keys().to_vec(), text.clone())),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// The canonical text: upper-case keywords, single-quoted strings, only the
/// parentheses precedence needs. It parses back to an equal [`Condition`].
impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Scope::All => f.write_str("*"),
            Scope::Where(expr) => write!(f, "{expr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::query::{MAX_CHARS, QueryError, parse};

    #[test]
    fn star_is_every_twin() {
        for text in ["*", "  *\n", "\t* "] {
            let condition = parse(text).unwrap();
            assert!(condition.is_all());
            assert!(condition.matches(&json!({})));
            assert!(condition.paths().is_empty());
            assert_eq!(condition.to_string(), "*");
        }
        assert!(!parse("tags.a = 1").unwrap().is_all());
    }

    #[test]
    fn display_is_canonical_and_round_trips() {
        for (text, canonical) in [
            ("tags.env='prod'", "tags.env = 'prod'"),
            ("tags.a <> 1", "tags.a != 1"),
            ("TAGS.x = \"it's\"", r"tags.x = 'it\'s'"),
            ("tags['my-key'] = 'a\\\\b'", r"tags['my-key'] = 'a\\b'"),
            ("tags['plain'] = 1", "tags.plain = 1"),
            ("tags['group'] = 1", "tags['group'] = 1"),
            ("tags['x y']['1'] = 1", "tags['x y']['1'] = 1"),
            ("tags.x = '\\u0009'", r"tags.x = '\u0009'"),
            (
                "deviceid = 'd' and Properties.Reported.fw >= 2.0",
                "deviceId = 'd' AND properties.reported.fw >= 2.0",
            ),
            (
                "(tags.a = 1 or tags.b = 2) and tags.c = 3",
                "(tags.a = 1 OR tags.b = 2) AND tags.c = 3",
            ),
            (
                "(tags.a = 1 and tags.b = 2) or tags.c = 3",
                "tags.a = 1 AND tags.b = 2 OR tags.c = 3",
            ),
            (
                "tags.a = 1 and (tags.b = 2 and tags.c = 3)",
                "tags.a = 1 AND tags.b = 2 AND tags.c = 3",
            ),
            (
                "not (tags.a = 1 or tags.b = 2)",
                "NOT (tags.a = 1 OR tags.b = 2)",
            ),
            ("not not tags.a = 1", "NOT NOT tags.a = 1"),
            ("(not tags.a = 1) and tags.b", "NOT tags.a = 1 AND tags.b"),
            (
                "tags.site in ['a',\"b\", 3, true, null]",
                "tags.site IN ['a', 'b', 3, true, null]",
            ),
            ("tags.site nin ['a']", "tags.site NIN ['a']"),
            ("is_defined( tags.x )", "IS_DEFINED(tags.x)"),
            ("capabilities.iotEdge", "capabilities.iotEdge"),
            (
                "tags.n = 1e21 or tags.n = 0x1F or tags.n = -0.0 or tags.n = 5",
                "tags.n = 1e+21 OR tags.n = 31 OR tags.n = -0.0 OR tags.n = 5",
            ),
            ("tags.n = 1.5e-7", "tags.n = 1.5e-7"),
            ("'a' = tags.x", "'a' = tags.x"),
            (
                "properties.desired.x = properties.reported.x",
                "properties.desired.x = properties.reported.x",
            ),
        ] {
            let condition = parse(text).unwrap();
            assert_eq!(condition.to_string(), canonical, "{text}");
            assert_eq!(parse(&condition.to_string()).unwrap(), condition, "{text}");
        }
    }

    #[test]
    fn float_and_integer_literals_stay_distinct_through_display() {
        let float = parse("tags.n = 2.0").unwrap();
        assert_eq!(float.to_string(), "tags.n = 2.0");
        assert_ne!(float, parse("tags.n = 2").unwrap());
        assert_eq!(parse(&float.to_string()).unwrap(), float);
    }

    #[test]
    fn paths_are_dotted_sorted_and_unique() {
        let condition = parse(
            "tags.site IN ['a'] AND (properties.reported.fw > 2 OR NOT IS_DEFINED(tags.site)) \
             AND tags['my-key'] = deviceId AND capabilities.iotEdge AND 1 = 1",
        )
        .unwrap();
        assert_eq!(
            condition.paths(),
            vec![
                "capabilities.iotEdge",
                "deviceId",
                "properties.reported.fw",
                "tags.my-key",
                "tags.site"
            ]
        );
    }

    #[test]
    fn length_limit_counts_utf16_units() {
        let at_limit = format!("tags.x = '{}'", "a".repeat(MAX_CHARS - 11));
        assert_eq!(at_limit.len(), MAX_CHARS);
        assert!(parse(&at_limit).is_ok());

        let over = format!("tags.x = '{}'", "a".repeat(MAX_CHARS - 10));
        let error = parse(&over).unwrap_err();
        assert!(matches!(error, QueryError::TooLong(_)));
        assert_eq!((error.offset(), error.len()), (MAX_CHARS, 1));
        assert_eq!(
            error.to_string(),
            "condition is 8193 characters long, over IoT Hub's limit of 8192"
        );

        // 😀 is one `char` but two UTF-16 units (and four bytes).
        let emoji = format!("tags.x = '{}😀'", "a".repeat(MAX_CHARS - 11));
        let error = parse(&emoji).unwrap_err();
        assert_eq!((error.offset(), error.len()), (MAX_CHARS - 1, 5));
    }

    #[test]
    fn nesting_limit_is_an_error_not_a_stack_overflow() {
        let ok = format!("{}tags.a = 1{}", "(".repeat(64), ")".repeat(64));
        assert!(parse(&ok).is_ok());

        let deep = format!("{}tags.a = 1{}", "(".repeat(65), ")".repeat(65));
        let error = parse(&deep).unwrap_err();
        assert!(matches!(error, QueryError::TooDeep(_)));
        assert_eq!((error.offset(), error.len()), (64, 1));
        assert_eq!(error.to_string(), "condition nests deeper than 64 levels");

        let nots = format!("{}tags.a = 1", "NOT ".repeat(1000));
        let error = parse(&nots).unwrap_err();
        assert_eq!((error.offset(), error.len()), (256, 3));

        // Long flat chains are loops, not recursion.
        let chain = vec!["tags.a = 1"; 500].join(" AND ");
        assert!(parse(&chain).unwrap().matches(&json!({"tags": {"a": 1}})));
    }

    /// A condition round-trips through `Display`; an error span lies inside the
    /// text on character boundaries, and is empty only at the end.
    fn assert_sane(text: &str) {
        match parse(text) {
            Ok(condition) => {
                let _ = condition.matches(&json!({"tags": {"a": 1}}));
                let _ = condition.paths();
                let again = parse(&condition.to_string());
                assert_eq!(
                    again.as_ref().ok(),
                    Some(&condition),
                    "{text:?} → {condition}"
                );
            }
            Err(error) => {
                let end = error.offset() + error.len();
                assert!(end <= text.len(), "{text:?}: {error:?}");
                assert!(text.is_char_boundary(error.offset()), "{text:?}: {error:?}");
                assert!(text.is_char_boundary(end), "{text:?}: {error:?}");
                assert!(!error.to_string().contains('\n'), "{text:?}: {error}");
                assert!(
                    error.len() > 0 || error.offset() == text.len(),
                    "{text:?}: {error:?}"
                );
            }
        }
    }

    #[test]
    fn no_panic_on_truncations_of_valid_conditions() {
        let valid = [
            "tags.env = 'prod' AND tags.site IN ['ams1', \"dub2\"]",
            "NOT (properties.reported.fw >= -1.5e3 OR IS_DEFINED(tags['my-key']))",
            "deviceId <> 'x\\'y\\u00e9\\uD83D\\uDE00' OR status != \"enabled\" AND capabilities.iotEdge = true",
            "tags.n NIN [0x1F, null, false, 'é'] OR (tags.a < 2 AND tags.b > 3) OR tags.c <= 4",
        ];
        for text in valid {
            assert_sane(text);
            for (i, _) in text.char_indices() {
                assert_sane(text.get(..i).unwrap());
                assert_sane(text.get(i..).unwrap());
            }
        }
    }

    #[test]
    fn no_panic_on_random_input() {
        // xorshift64: deterministic, no dependency.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces = [
            "tags",
            ".",
            "env",
            "=",
            "!=",
            "<>",
            "<",
            ">=",
            "'a'",
            "\"b\"",
            "'",
            "\"",
            "\\",
            "(",
            ")",
            "[",
            "]",
            ",",
            "AND",
            "or",
            "NOT",
            "IN",
            "nin",
            "IS_DEFINED",
            "is_defind",
            "1",
            "-2.5",
            "1e",
            "0x",
            "true",
            "null",
            "undefined",
            "*",
            "==",
            "&&",
            "|",
            "properties",
            "reported",
            "deviceId",
            "é",
            "😀",
            " ",
            "\u{0}",
            "\\u00",
            "group",
            "select",
        ];
        for _ in 0..20_000 {
            let n = usize::try_from(next() % 12).unwrap();
            let mut text = String::new();
            for _ in 0..n {
                let i = usize::try_from(next() % pieces.len() as u64).unwrap();
                text.push_str(pieces[i]);
                if next() % 2 == 0 {
                    text.push(' ');
                }
            }
            assert_sane(&text);
        }
        for _ in 0..5_000 {
            let bytes: Vec<u8> = (0..next() % 24).map(|_| (next() & 0xFF) as u8).collect();
            assert_sane(&String::from_utf8_lossy(&bytes));
        }
    }
}
