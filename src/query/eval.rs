//! Evaluator: a parsed condition × one twin's JSON → true, false or undefined.
//!
//! The semantics are those of `IoT Hub` queries, which come from Cosmos DB SQL:
//!
//! - A path that leads nowhere is *undefined*, never an error
//!   (MicrosoftDocs/azure-docs `articles/iot-hub/iot-hub-devguide-query-language.md`:
//!   a document is included only if the condition evaluates to `true`).
//! - Comparisons work only between primitives of the same type; anything else,
//!   and any undefined side, is undefined (Cosmos DB "Equality and comparison
//!   operators"; `query-twins.md`, "comparisons are supported only between
//!   primitive types"). Numbers compare by value, so `5 = 5.0`; strings compare
//!   ordinally by Unicode scalar value; booleans and `null` support only `=` and
//!   `!=`, as the brief for this module fixes.
//! - `AND`, `OR` and `NOT` use three-valued logic (Cosmos DB "Logical operators"):
//!   `false AND undefined` is false, `true OR undefined` is true, `NOT undefined`
//!   is undefined.
//! - `x IN [..]` is undefined when `x` is undefined or not a primitive; otherwise
//!   true when some item equals `x` by the rules above, else false. `NIN` is its
//!   negation, undefined likewise.
//! - `IS_DEFINED(path)` is true when the path holds any value, `null` included.
//! - A value standing alone is true only when it is the boolean `true`.
//!
//! Pure: reads the twin, allocates nothing.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use crate::query::ast::{Expr, Literal, Membership, Operand, Path};
use crate::query::lexer::CmpOp;

/// A value that comparisons understand; objects and arrays have none.
#[derive(Debug, Clone, Copy)]
enum Scalar<'a> {
    Null,
    Bool(bool),
    Number(&'a Number),
    String(&'a str),
}

impl Expr {
    /// The truth of the expression for `twin`; `None` is undefined.
    pub(crate) fn truth(&self, twin: &Value) -> Option<bool> {
        match self {
            Self::And(items) => {
                let mut all_true = true;
                for item in items {
                    match item.truth(twin) {
                        Some(false) => return Some(false),
                        Some(true) => {}
                        None => all_true = false,
                    }
                }
                all_true.then_some(true)
            }
            Self::Or(items) => {
                let mut all_false = true;
                for item in items {
                    match item.truth(twin) {
                        Some(true) => return Some(true),
                        Some(false) => {}
                        None => all_false = false,
                    }
                }
                all_false.then_some(false)
            }
            Self::Not(inner) => inner.truth(twin).map(|b| !b),
            Self::Compare { left, op, right } => {
                compare(scalar(left, twin)?, *op, scalar(right, twin)?)
            }
            Self::Member { left, op, list } => {
                let left = scalar(left, twin)?;
                let found = list
                    .iter()
                    .any(|item| compare(left, CmpOp::Eq, literal_scalar(item)) == Some(true));
                Some(match op {
                    Membership::In => found,
                    Membership::Nin => !found,
                })
            }
            Self::IsDefined(path) => Some(path.lookup(twin).is_some()),
            Self::Value(operand) => match operand {
                Operand::Path(path) => path.lookup(twin)?.as_bool(),
                Operand::Literal(Literal::Bool(b)) => Some(*b),
                Operand::Literal(_) => None,
            },
        }
    }
}

impl Path {
    /// The value at this path in `twin`; keys match exactly.
    pub(crate) fn lookup<'a>(&self, twin: &'a Value) -> Option<&'a Value> {
        self.keys()
            .iter()
            .try_fold(twin, |value, key| value.get(key.as_str()))
    }
}

/// The operand's value, or `None` when it is undefined or not a primitive.
fn scalar<'a>(operand: &'a Operand, twin: &'a Value) -> Option<Scalar<'a>> {
    match operand {
        Operand::Literal(literal) => Some(literal_scalar(literal)),
        Operand::Path(path) => match path.lookup(twin)? {
            Value::Null => Some(Scalar::Null),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::Number(n) => Some(Scalar::Number(n)),
            Value::String(s) => Some(Scalar::String(s)),
            Value::Array(_) | Value::Object(_) => None,
        },
    }
}

fn literal_scalar(literal: &Literal) -> Scalar<'_> {
    match literal {
        Literal::Null => Scalar::Null,
        Literal::Bool(b) => Scalar::Bool(*b),
        Literal::Number(n) => Scalar::Number(n),
        Literal::String(s) => Scalar::String(s),
    }
}

/// `left op right`, or `None` when the comparison is undefined.
fn compare(left: Scalar<'_>, op: CmpOp, right: Scalar<'_>) -> Option<bool> {
    let ordering = match (left, right) {
        (Scalar::Number(a), Scalar::Number(b)) => compare_numbers(a, b)?,
        (Scalar::String(a), Scalar::String(b)) => a.cmp(b),
        (Scalar::Bool(a), Scalar::Bool(b)) => return equality(a == b, op),
        (Scalar::Null, Scalar::Null) => return equality(true, op),
        _ => return None,
    };
    Some(match op {
        CmpOp::Eq => ordering.is_eq(),
        CmpOp::Ne => ordering.is_ne(),
        CmpOp::Lt => ordering.is_lt(),
        CmpOp::Le => ordering.is_le(),
        CmpOp::Gt => ordering.is_gt(),
        CmpOp::Ge => ordering.is_ge(),
    })
}

/// `=` and `!=` for values with no order.
fn equality(equal: bool, op: CmpOp) -> Option<bool> {
    match op {
        CmpOp::Eq => Some(equal),
        CmpOp::Ne => Some(!equal),
        CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge => None,
    }
}

/// Integers compare exactly; when either side is a float both compare as `f64`.
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    match (integer(a), integer(b)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::query::{Scope, parse};

    fn twin() -> Value {
        json!({
            "deviceId": "dev-1",
            "moduleId": "azureiotsecurity",
            "etag": "AAAAAAAAAAE=",
            "status": "enabled",
            "tags": {
                "env": "prod",
                "site": "ams1",
                "floor": 3,
                "ratio": 0.5,
                "active": true,
                "owner": null,
                "my-key": "x",
                "group": "g",
                "quote": "it's \"q\" \\ é",
                "big": 9_007_199_254_740_993_u64,
                "nested": {"a": 1},
                "list": [1, 2]
            },
            "properties": {
                "desired": {"fw": "1.2"},
                "reported": {"fw": "1.2", "uptime": 3600, "temp": 21.5}
            },
            "capabilities": {"iotEdge": false}
        })
    }

    /// The three-valued result of `text` on [`twin`]: `None` is undefined.
    fn truth(text: &str) -> Option<bool> {
        let condition = parse(text).unwrap();
        let Scope::Where(expr) = &condition.scope else {
            return Some(true);
        };
        let truth = expr.truth(&twin());
        assert_eq!(condition.matches(&twin()), truth == Some(true), "{text}");
        truth
    }

    /// Asserts each `(condition, expected truth)`, reporting every mismatch.
    fn check(cases: &[(&str, Option<bool>)]) {
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(text, want)| truth(text) != *want)
            .map(|(text, want)| format!("{text}: got {:?}, want {want:?}", truth(text)))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    const T: Option<bool> = Some(true);
    const F: Option<bool> = Some(false);
    const U: Option<bool> = None;

    #[test]
    fn every_comparison_operator() {
        check(&[
            ("tags.env = 'prod'", T),
            ("tags.env = 'dev'", F),
            ("tags.env != 'dev'", T),
            ("tags.env <> 'prod'", F),
            ("tags.floor < 4", T),
            ("tags.floor < 3", F),
            ("tags.floor <= 3", T),
            ("tags.floor > 3", F),
            ("tags.floor >= 3", T),
            ("tags.floor > -1e3", T),
            ("tags.floor = 0x3", T),
            ("tags.site > 'ams0'", T),
            ("tags.site < 'b'", T),
            ("tags.site < 'Ams1'", F),
            ("'prod' = tags.env", T),
            ("2 < tags.floor", T),
            ("1 = 1", T),
            ("properties.desired.fw = properties.reported.fw", T),
            (
                "deviceId = 'dev-1' AND moduleId = 'azureiotsecurity' AND status = 'enabled'",
                T,
            ),
        ]);
    }

    #[test]
    fn numbers_compare_by_value_across_int_and_float() {
        check(&[
            ("tags.floor = 3.0", T),
            ("tags.floor = 3.5", F),
            ("properties.reported.uptime = 3.6e3", T),
            ("tags.ratio = 0.5", T),
            ("tags.ratio < 1", T),
            ("properties.reported.temp > 21", T),
            ("properties.reported.temp != 21.5", F),
            // 2^53 + 1: integers compare exactly, not through f64.
            ("tags.big = 9007199254740993", T),
            ("tags.big = 9007199254740992", F),
            ("tags.big > 9007199254740992", T),
        ]);
    }

    #[test]
    fn mismatched_types_and_non_primitives_are_undefined() {
        check(&[
            ("tags.floor = '3'", U),
            ("tags.floor != '3'", U),
            ("NOT tags.floor = '3'", U),
            ("tags.env > 1", U),
            ("tags.active = 'true'", U),
            ("tags.env = true", U),
            ("tags.nested = tags.nested", U),
            ("tags.nested != 1", U),
            ("tags.list = tags.list", U),
            ("tags.nested.a = 1", T),
        ]);
    }

    #[test]
    fn booleans_and_null_support_only_equality() {
        check(&[
            ("tags.active = true", T),
            ("tags.active != false", T),
            ("tags.active = false", F),
            ("tags.active > false", U),
            ("tags.owner = null", T),
            ("tags.owner != null", F),
            ("tags.owner <= null", U),
            ("tags.env = null", U),
            ("NOT tags.env = null", U),
            ("capabilities.iotEdge = false", T),
        ]);
    }

    #[test]
    fn missing_paths_are_undefined_never_errors() {
        check(&[
            ("tags.missing = 'x'", U),
            // The classic trap: a twin without `tags.env2` is not "not prod".
            ("tags.env2 != 'prod'", U),
            ("NOT tags.missing = 'x'", U),
            ("tags.env.deeper = 'x'", U),
            ("properties.reported.none.at.all > 1", U),
            ("moduleId != 'x' AND tags.missing = 1", U),
        ]);
    }

    #[test]
    fn three_valued_logic() {
        check(&[
            ("tags.missing = 1 AND tags.env = 'dev'", F),
            ("tags.missing = 1 AND tags.env = 'prod'", U),
            ("tags.missing = 1 OR tags.env = 'prod'", T),
            ("tags.missing = 1 OR tags.env = 'dev'", U),
            ("NOT (tags.missing = 1 AND tags.env = 'dev')", T),
            ("NOT (tags.missing = 1 OR tags.env = 'prod')", F),
            ("NOT (tags.missing = 1 OR tags.env = 'dev')", U),
            ("NOT NOT tags.missing = 1", U),
            ("NOT NOT tags.env = 'prod'", T),
        ]);
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        check(&[
            // (false AND false) OR true; OR binding tighter would give false.
            ("tags.env = 'dev' AND tags.site = 'x' OR tags.floor = 3", T),
            // true OR (false AND false); left to right would give false.
            (
                "tags.env = 'prod' OR tags.site = 'x' AND tags.floor = 99",
                T,
            ),
            // (NOT true) AND false; NOT over the whole would give true.
            ("NOT tags.env = 'prod' AND tags.floor = 99", F),
            // Parentheses override.
            (
                "tags.env = 'dev' AND (tags.site = 'x' OR tags.floor = 3)",
                F,
            ),
            (
                "(tags.env = 'prod' OR tags.site = 'x') AND tags.floor = 99",
                F,
            ),
            ("NOT (tags.env = 'prod' AND tags.floor = 99)", T),
        ]);
    }

    #[test]
    fn in_and_nin() {
        check(&[
            ("tags.site IN ['ams1', 'dub2']", T),
            ("tags.site IN ['dub2']", F),
            ("tags.site NIN ['dub2']", T),
            ("tags.site NIN ['ams1', 'dub2']", F),
            ("tags.floor IN [1, 3.0]", T),
            ("tags.floor IN ['3']", F),
            ("tags.floor NIN ['3']", T),
            ("tags.owner IN [null]", T),
            ("tags.active IN [false, true]", T),
            ("tags.missing IN ['a']", U),
            ("tags.missing NIN ['a']", U),
            ("NOT tags.missing NIN ['a']", U),
            ("tags.nested IN [1]", U),
            ("tags.nested NIN [1]", U),
        ]);
    }

    #[test]
    fn is_defined() {
        check(&[
            ("IS_DEFINED(tags.env)", T),
            ("is_defined(tags.owner)", T),
            ("IS_DEFINED(tags.nested)", T),
            ("IS_DEFINED(tags.missing)", F),
            ("NOT IS_DEFINED(tags.missing)", T),
            ("IS_DEFINED(tags.env.deeper)", F),
            (
                "IS_DEFINED(properties.reported.fw) AND properties.reported.fw != properties.desired.fw",
                F,
            ),
        ]);
    }

    #[test]
    fn values_alone_are_true_only_when_true() {
        check(&[
            ("tags.active", T),
            ("capabilities.iotEdge", F),
            ("NOT capabilities.iotEdge", T),
            ("tags.env", U),
            ("NOT tags.env", U),
            ("tags.missing", U),
            ("true", T),
            ("false OR tags.active", T),
            ("'text'", U),
        ]);
    }

    #[test]
    fn paths_brackets_escapes_and_case() {
        check(&[
            ("tags['my-key'] = 'x'", T),
            ("tags['group'] = 'g'", T),
            ("tags[\"env\"] = 'prod'", T),
            ("tags['nested']['a'] = 1", T),
            (r#"tags.quote = 'it\'s "q" \\ \u00e9'"#, T),
            (r#"tags.quote = "it's \"q\" \\ é""#, T),
            // Twin fields in any case; the user's keys exactly.
            ("DeviceId = 'dev-1'", T),
            ("PROPERTIES.REPORTED.fw = '1.2'", T),
            ("tags.ENV = 'prod'", U),
            // Values compare exactly.
            ("tags.env = 'PROD'", F),
        ]);
    }
}
