//! Cross-field rules that JSON Schema cannot say, kept as data in the schema
//! file's `x-twinops.rules` and evaluated here on a merged value.

use serde::Deserialize;
use serde_json::Value;

use crate::diag::Severity;
use crate::schema::duration;

/// One rule from `x-twinops.rules`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable id, e.g. `cache-not-below-message-size`.
    pub id: String,
    /// `error` stops the run, `warning` is reported.
    #[serde(deserialize_with = "severity")]
    pub severity: Severity,
    /// What is compared.
    pub check: Check,
    /// How the compared values are read.
    #[serde(rename = "type")]
    pub kind: ValueKind,
    /// Pointer (relative to the governed object) of the value checked.
    pub left: String,
    /// Pointer of the value compared with, for `lte` and `gte`.
    #[serde(default)]
    pub right: Option<String>,
    /// The divisor, for `multipleOf`.
    #[serde(default)]
    pub value: Option<u64>,
    /// The message when the rule is broken (lowercase, one line).
    pub message: String,
    /// What to do about it.
    #[serde(default)]
    pub help: Option<String>,
}

/// The comparisons rules can make.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Check {
    /// `left` ≤ `right`.
    Lte,
    /// `left` ≥ `right`.
    Gte,
    /// `left` is a multiple of `value`.
    MultipleOf,
    /// Each comma-separated integer of `left` is a multiple of the one before.
    AscendingMultiples,
}

/// How a rule reads the values it compares.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ValueKind {
    /// ISO 8601 durations, compared by length.
    Duration,
    /// JSON integers.
    Integer,
    /// A string of comma-separated integers.
    CsvIntegers,
}

fn severity<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Severity, D::Error> {
    match String::deserialize(deserializer)?.as_str() {
        "error" => Ok(Severity::Error),
        "warning" => Ok(Severity::Warning),
        other => Err(serde::de::Error::custom(format!(
            "unknown severity `{other}`, expected `error` or `warning`"
        ))),
    }
}

impl Rule {
    /// Checks the rule's own consistency (a `right` for comparisons...).
    ///
    /// # Errors
    /// A phrase saying what is missing.
    pub fn check_shape(&self) -> Result<(), String> {
        match self.check {
            Check::Lte | Check::Gte if self.right.is_none() => Err(format!(
                "rule `{}` compares with nothing: add `right`",
                self.id
            )),
            Check::MultipleOf if self.value.unwrap_or(0) == 0 => {
                Err(format!("rule `{}` needs a non-zero `value`", self.id))
            }
            _ => Ok(()),
        }
    }

    /// The pointers the rule reads, relative to the governed object.
    pub fn pointers(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.left.as_str()).chain(self.right.as_deref())
    }

    /// Whether `object` breaks the rule. Values that are missing or of the
    /// wrong kind are left to the schema and never break a rule.
    #[must_use]
    pub fn is_broken(&self, object: &Value) -> bool {
        let read = |pointer: &str| object.pointer(pointer).and_then(|v| self.number(v));
        match self.check {
            Check::Lte | Check::Gte => {
                let (Some(left), Some(right)) =
                    (read(&self.left), self.right.as_deref().and_then(read))
                else {
                    return false;
                };
                if self.check == Check::Lte {
                    left > right
                } else {
                    left < right
                }
            }
            Check::MultipleOf => match (read(&self.left), self.value) {
                (Some(left), Some(divisor)) if divisor > 0 => left % u128::from(divisor) != 0,
                _ => false,
            },
            Check::AscendingMultiples => {
                let Some(parts) = object
                    .pointer(&self.left)
                    .and_then(Value::as_str)
                    .map(|text| {
                        text.split(',')
                            .map(|part| part.trim().parse::<u64>().ok())
                            .collect::<Option<Vec<_>>>()
                    })
                else {
                    return false;
                };
                parts.is_some_and(|parts| {
                    parts.windows(2).any(|pair| match pair {
                        [previous, next] => *previous == 0 || next % previous != 0,
                        _ => false,
                    })
                })
            }
        }
    }

    fn number(&self, value: &Value) -> Option<u128> {
        match self.kind {
            ValueKind::Duration => value
                .as_str()
                .and_then(|text| duration::millis(text).ok())
                .map(u128::from),
            ValueKind::Integer | ValueKind::CsvIntegers => value.as_u64().map(u128::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Check, Rule, ValueKind};
    use crate::diag::Severity;

    fn rule(check: Check, kind: ValueKind, right: Option<&str>, value: Option<u64>) -> Rule {
        Rule {
            id: "r".into(),
            severity: Severity::Error,
            check,
            kind,
            left: "/a/value".into(),
            right: right.map(str::to_owned),
            value,
            message: "m".into(),
            help: None,
        }
    }

    #[test]
    fn durations_compare_by_length_not_spelling() {
        let lte = rule(Check::Lte, ValueKind::Duration, Some("/b/value"), None);
        assert!(!lte.is_broken(&json!({"a": {"value": "PT60M"}, "b": {"value": "PT1H"}})));
        assert!(lte.is_broken(&json!({"a": {"value": "PT2H"}, "b": {"value": "PT1H"}})));
        assert!(
            !lte.is_broken(&json!({"a": {"value": "PT2H"}})),
            "missing is not broken"
        );
    }

    #[test]
    fn integers_and_multiples() {
        let gte = rule(Check::Gte, ValueKind::Integer, Some("/b/value"), None);
        assert!(gte.is_broken(&json!({"a": {"value": 8192}, "b": {"value": 16384}})));
        assert!(!gte.is_broken(&json!({"a": {"value": 16384}, "b": {"value": 16384}})));
        let multiple = rule(Check::MultipleOf, ValueKind::Integer, None, Some(4096));
        assert!(multiple.is_broken(&json!({"a": {"value": 200_000}})));
        assert!(!multiple.is_broken(&json!({"a": {"value": 204_800}})));
        assert!(!multiple.is_broken(&json!({"a": {"value": 200_704}})));
    }

    #[test]
    fn ascending_multiples_of_priority_intervals() {
        let mut rule = rule(
            Check::AscendingMultiples,
            ValueKind::CsvIntegers,
            None,
            None,
        );
        rule.left = "/i".into();
        assert!(!rule.is_broken(&json!({"i": "30,120,1440"})));
        assert!(rule.is_broken(&json!({"i": "30,100,1440"})));
        assert!(rule.is_broken(&json!({"i": "0,0,0"})));
    }
}
