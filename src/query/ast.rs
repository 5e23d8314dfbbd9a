//! Syntax tree of a condition, and its canonical text.
//!
//! The parser builds these values; [`eval`](crate::query::eval) reads them.
//! `Display` writes the canonical form: keywords upper case, strings in single
//! quotes, `!=` for `<>`, keys that are not plain names in brackets, and only
//! the parentheses precedence needs. Parsing that text gives back an equal tree.
//!
//! INVARIANT: `And` and `Or` hold at least two items and never an item of their
//! own kind (the parser flattens `a AND (b AND c)`), so the tree is only as
//! deep as the condition's parentheses and `NOT`s.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Number;

use crate::query::lexer::{CmpOp, is_word_char, is_word_start};

/// Words the hub's query grammar reserves: a key spelt like one must be written
/// in brackets. The hub rejects `tags.group` (MicrosoftDocs/azure-docs
/// issue 17106); the rest are the grammar's own keywords (INFERRED).
pub(crate) const RESERVED: &[&str] = &[
    "AND",
    "AS",
    "BY",
    "FALSE",
    "FROM",
    "GROUP",
    "IN",
    "NIN",
    "NOT",
    "NULL",
    "OR",
    "SELECT",
    "TOP",
    "TRUE",
    "UNDEFINED",
    "WHERE",
];

/// Whether `word` is reserved, in any case.
pub(crate) fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// A boolean expression over one twin.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Compare {
        left: Operand,
        op: CmpOp,
        right: Operand,
    },
    /// `left IN [..]` or `left NIN [..]`.
    Member {
        left: Operand,
        op: Membership,
        list: Vec<Literal>,
    },
    IsDefined(Path),
    /// A value standing alone as a condition: true only when it is `true`.
    Value(Operand),
}

/// `IN` or `NIN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Membership {
    In,
    Nin,
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Path(Path),
    Literal(Literal),
}

/// A constant written in the condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
}

/// A place in the twin, such as `properties.reported.fw` or `tags['my-key']`.
///
/// INVARIANT: at least one key; the first is a twin field in its canonical
/// spelling, and no key contains `.`, so the dotted form is unambiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    keys: Vec<String>,
}

impl Path {
    pub(crate) fn new(keys: Vec<String>) -> Self {
        Self { keys }
    }

    pub(crate) fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The keys joined with `.`, as [`Condition::paths`](crate::query::Condition::paths) lists them.
    pub(crate) fn dotted(&self) -> String {
        self.keys.join(".")
    }
}

impl Expr {
    /// Adds the dotted form of every path the expression reads.
    pub(crate) fn collect_paths(&self, out: &mut BTreeSet<String>) {
        let mut operand = |operand: &Operand| {
            if let Operand::Path(path) = operand {
                out.insert(path.dotted());
            }
        };
        match self {
            Self::And(items) | Self::Or(items) => {
                for item in items {
                    item.collect_paths(out);
                }
            }
            Self::Not(inner) => inner.collect_paths(out),
            Self::Compare { left, right, .. } => {
                operand(left);
                operand(right);
            }
            Self::Member { left, .. } | Self::Value(left) => operand(left),
            Self::IsDefined(path) => {
                out.insert(path.dotted());
            }
        }
    }

    fn is_junction(&self) -> bool {
        matches!(self, Self::And(_) | Self::Or(_))
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::And(items) => join(f, items, " AND ", |item| {
                matches!(item, Self::Or(_) | Self::And(_))
            }),
            // AND binds tighter than OR, so only a nested OR would need parentheses.
            Self::Or(items) => join(f, items, " OR ", |item| matches!(item, Self::Or(_))),
            Self::Not(inner) if inner.is_junction() => write!(f, "NOT ({inner})"),
            Self::Not(inner) => write!(f, "NOT {inner}"),
            Self::Compare { left, op, right } => write!(f, "{left} {} {right}", op.as_str()),
            Self::Member { left, op, list } => {
                let op = match op {
                    Membership::In => "IN",
                    Membership::Nin => "NIN",
                };
                write!(f, "{left} {op} [")?;
                for (i, item) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Self::IsDefined(path) => write!(f, "IS_DEFINED({path})"),
            Self::Value(operand) => write!(f, "{operand}"),
        }
    }
}

fn join(
    f: &mut fmt::Formatter<'_>,
    items: &[Expr],
    sep: &str,
    wrap: fn(&Expr) -> bool,
) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        if wrap(item) {
            write!(f, "({item})")?;
        } else {
            write!(f, "{item}")?;
        }
    }
    Ok(())
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(path) => write!(f, "{path}"),
            Self::Literal(literal) => write!(f, "{literal}"),
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            // serde_json writes floats with a `.0` or an exponent, so they read back as floats.
            Self::Number(n) => write!(f, "{n}"),
            Self::String(s) => quoted(f, s),
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, key) in self.keys.iter().enumerate() {
            if i == 0 {
                f.write_str(key)?;
            } else if is_plain_key(key) {
                write!(f, ".{key}")?;
            } else {
                f.write_str("[")?;
                quoted(f, key)?;
                f.write_str("]")?;
            }
        }
        Ok(())
    }
}

/// Whether `key` can be written after a `.` rather than in brackets.
fn is_plain_key(key: &str) -> bool {
    key.starts_with(is_word_start) && key.chars().all(is_word_char) && !is_reserved(key)
}

/// Writes `s` as a single-quoted literal, escaping what the lexer would not read
/// back as itself, and control characters so the text stays on one line.
fn quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("'")?;
    for c in s.chars() {
        match c {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            c if c.is_control() => {
                let mut units = [0_u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(f, "\\u{unit:04X}")?;
                }
            }
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("'")
}
