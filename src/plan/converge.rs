//! Convergence: whether a device reports the configuration it was given.
//!
//! Compared by meaning (`reference/security-module-twin.md` §8): strings
//! case-insensitively (agents report `high` for `High`), durations by length
//! (`PT60M` is `PT1H`), numbers numerically (`"8192"` is `8192`). Keys a
//! device does not report are keys its agent does not know, not
//! disagreements.

use serde_json::Value;

use crate::fleet::TwinFields;
use crate::schema::duration;

/// How a managed twin's reported properties compare with its desired ones.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Convergence {
    /// Reported agrees with desired.
    Converged,
    /// Desired changed after the device last reported, or it has not reported.
    Pending,
    /// The device reported after the change and disagrees.
    Differing,
}

/// Compares the managed `properties` of `twin`'s desired and reported sections.
#[must_use]
pub fn classify(twin: &impl TwinFields, properties: &[&String]) -> Convergence {
    compare(twin, properties).judge(twin, properties)
}

/// What a twin's desired and reported values tell of its convergence,
/// before any timestamp is read: twins with the same values compare alike,
/// whatever their timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// The values decide.
    Decided(Convergence),
    /// The properties at these indexes disagree. The twin is pending when
    /// desired was written after the device last reported each of them, and
    /// differing otherwise.
    Disagreeing(Box<[usize]>),
}

impl Comparison {
    /// The twin's convergence, reading the timestamps of the properties
    /// that disagree.
    #[must_use]
    pub fn judge(&self, twin: &impl TwinFields, properties: &[&String]) -> Convergence {
        match self {
            Self::Decided(class) => *class,
            Self::Disagreeing(indexes) => {
                let all_later = indexes.iter().all(|&at| {
                    properties
                        .get(at)
                        .is_some_and(|property| updated_after(twin, property))
                });
                if all_later {
                    Convergence::Pending
                } else {
                    Convergence::Differing
                }
            }
        }
    }
}

/// Compares the values of `properties` (see [`Comparison`]).
#[must_use]
pub fn compare(twin: &impl TwinFields, properties: &[&String]) -> Comparison {
    if !twin.is_object(&["properties", "desired"]) {
        return Comparison::Decided(Convergence::Converged);
    }
    let mut pending = false;
    let mut disagreeing = Vec::new();
    for (at, property) in properties.iter().enumerate() {
        let Some(want) = twin.value(&["properties", "desired", property]) else {
            continue;
        };
        let Some(have) = twin.value(&["properties", "reported", property]) else {
            pending = true;
            continue;
        };
        if !agrees(&want, &have) {
            disagreeing.push(at);
        }
    }
    match (disagreeing.is_empty(), pending) {
        (true, false) => Comparison::Decided(Convergence::Converged),
        (true, true) => Comparison::Decided(Convergence::Pending),
        // A property not reported changes nothing then: the timestamps of
        // the disagreements decide.
        (false, _) => Comparison::Disagreeing(disagreeing.into()),
    }
}

/// Whether desired `property` was written after the device last reported it.
fn updated_after(twin: &impl TwinFields, property: &str) -> bool {
    let stamp = |section: &str| {
        twin.value(&["properties", section, "$metadata", property, "$lastUpdated"])
            .and_then(|stamp| stamp.as_str().map(str::to_owned))
    };
    match (stamp("desired"), stamp("reported")) {
        (Some(desired), Some(reported)) => desired > reported,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Whether a reported value means the desired one.
#[must_use]
pub fn agrees(desired: &Value, reported: &Value) -> bool {
    match (desired, reported) {
        (Value::Object(want), Value::Object(have)) => want
            .iter()
            .all(|(key, value)| have.get(key).is_none_or(|reported| agrees(value, reported))),
        (Value::String(want), Value::String(have)) => {
            want.eq_ignore_ascii_case(have)
                || matches!((duration::millis(want), duration::millis(have)), (Ok(a), Ok(b)) if a == b)
        }
        (Value::Number(want), Value::String(have)) | (Value::String(have), Value::Number(want)) => {
            have.parse::<f64>().ok() == want.as_f64()
        }
        (Value::Number(want), Value::Number(have)) => want.as_f64() == have.as_f64(),
        _ => desired == reported,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Convergence, agrees};
    use crate::fleet::{RawTwin, Twin};

    /// The class of `json`, the same whether held whole or read lightly.
    fn classify(json: &serde_json::Value, properties: &[&String]) -> Convergence {
        let mut json = json.clone();
        json["deviceId"] = json!("d");
        let text = json.to_string();
        let whole = super::classify(
            &Twin {
                device_id: "d".to_owned(),
                module_id: None,
                json,
            },
            properties,
        );
        let light = super::classify(&RawTwin::parse(&text).unwrap(), properties);
        assert_eq!(whole, light, "{text}");
        whole
    }

    #[test]
    fn agents_spell_values_their_own_way() {
        assert!(agrees(&json!({"value": "High"}), &json!({"value": "high"})));
        assert!(agrees(
            &json!({"value": "PT60M"}),
            &json!({"value": "PT1H"})
        ));
        assert!(agrees(&json!({"value": "P9D"}), &json!({"value": "P1W2D"})));
        assert!(agrees(&json!({"value": 8192}), &json!({"value": "8192"})));
        assert!(!agrees(
            &json!({"value": "PT7M"}),
            &json!({"value": "PT30M"})
        ));
        assert!(agrees(
            &json!({"a": {"value": 1}, "unknown": {"value": 2}}),
            &json!({"a": {"value": 1}})
        ));
    }

    #[test]
    fn classifies_by_timestamps() {
        let p = "p".to_owned();
        let twin = |reported: serde_json::Value, desired_at: &str, reported_at: &str| {
            json!({"properties": {
                "desired": {"p": {"v": "PT2M"}, "$metadata": {"p": {"$lastUpdated": desired_at}}},
                "reported": {"p": reported, "$metadata": {"p": {"$lastUpdated": reported_at}}}
            }})
        };
        assert_eq!(
            classify(
                &twin(json!({"v": "PT2M"}), "2026-01-02", "2026-01-01"),
                &[&p]
            ),
            Convergence::Converged
        );
        assert_eq!(
            classify(
                &twin(json!({"v": "PT7M"}), "2026-01-02", "2026-01-01"),
                &[&p]
            ),
            Convergence::Pending
        );
        assert_eq!(
            classify(
                &twin(json!({"v": "PT7M"}), "2026-01-01", "2026-01-02"),
                &[&p]
            ),
            Convergence::Differing
        );
        let unreported = json!({"properties": {"desired": {"p": {"v": 1}}, "reported": {}}});
        assert_eq!(classify(&unreported, &[&p]), Convergence::Pending);
    }

    /// Values are compared without timestamps, so one comparison serves
    /// every twin with the same values; each twin's own timestamps then
    /// judge it.
    #[test]
    fn one_comparison_judges_twins_by_their_own_timestamps() {
        let (p, q) = ("p".to_owned(), "q".to_owned());
        let twin = |desired_at: &str| {
            let json = json!({"deviceId": "d", "properties": {
                "desired": {"p": {"v": 1}, "q": {"v": 2},
                    "$metadata": {"p": {"$lastUpdated": desired_at}}},
                "reported": {"p": {"v": 9}, "q": {"v": 2},
                    "$metadata": {"p": {"$lastUpdated": "2026-01-02"}}}
            }});
            Twin {
                device_id: "d".to_owned(),
                module_id: None,
                json,
            }
        };
        let (later, earlier) = (twin("2026-01-03"), twin("2026-01-01"));
        let comparison = super::compare(&later, &[&p, &q]);
        assert_eq!(comparison, super::compare(&earlier, &[&p, &q]));
        assert_eq!(comparison, super::Comparison::Disagreeing(Box::new([0])));
        assert_eq!(comparison.judge(&later, &[&p, &q]), Convergence::Pending);
        assert_eq!(
            comparison.judge(&earlier, &[&p, &q]),
            Convergence::Differing
        );
    }
}
