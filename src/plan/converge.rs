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
    compare(twin, properties, &mut |property| {
        updated_after(twin, property)
    })
    .unwrap_or(Convergence::Differing)
}

/// [`classify`] when it needs no timestamps (every property agrees or is
/// not reported); `None` when a disagreement needs them to be judged.
#[must_use]
pub fn without_timestamps(twin: &impl TwinFields, properties: &[&String]) -> Option<Convergence> {
    let mut needed = false;
    let class = compare(twin, properties, &mut |_| {
        needed = true;
        true
    });
    if needed { None } else { class }
}

/// The comparison behind [`classify`], asking `updated_after` about each
/// disagreement; `None` for differing.
fn compare(
    twin: &impl TwinFields,
    properties: &[&String],
    updated_after: &mut dyn FnMut(&str) -> bool,
) -> Option<Convergence> {
    if !twin.is_object(&["properties", "desired"]) {
        return Some(Convergence::Converged);
    }
    let mut pending = false;
    for property in properties {
        let Some(want) = twin.value(&["properties", "desired", property]) else {
            continue;
        };
        let Some(have) = twin.value(&["properties", "reported", property]) else {
            pending = true;
            continue;
        };
        if !agrees(&want, &have) {
            if updated_after(property) {
                pending = true;
            } else {
                return None;
            }
        }
    }
    Some(if pending {
        Convergence::Pending
    } else {
        Convergence::Converged
    })
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
}
