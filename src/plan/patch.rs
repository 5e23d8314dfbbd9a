//! JSON merge patches (RFC 7386) between a live value and a wanted one, and
//! the leaf-by-leaf differences a plan shows; [`Patch`] holds one as a plan
//! keeps it.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::load::join_pointer;

/// A merge patch as a plan holds it: its compact JSON text, keys sorted,
/// exactly what serialising its value gives. A plan keeps one per distinct
/// patch, and as text it takes a tenth of the memory of its value; apply
/// parses it when it sends it.
#[derive(Clone, Debug)]
pub struct Patch(Box<RawValue>);

impl Patch {
    /// The patch `value` as text.
    #[must_use]
    pub fn new(value: &Value) -> Self {
        // A value always serialises, and then always reads as raw JSON.
        let text = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
        Self(RawValue::from_string(text).unwrap_or_default())
    }

    /// The patch as a JSON value.
    #[must_use]
    pub fn value(&self) -> Value {
        // The text was written from a value: it reads back as one.
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }

    /// The patch's compact JSON text.
    #[must_use]
    pub fn text(&self) -> &RawValue {
        &self.0
    }
}

/// Two patches are equal when their values are: their texts are canonical.
impl PartialEq for Patch {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// Serialised as its value, so that indented output indents it too.
impl Serialize for Patch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(serializer)
    }
}

/// Read as a value and written again compact, whatever spacing and key
/// order the text had.
impl<'de> Deserialize<'de> for Patch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(|value| Self::new(&value))
    }
}

/// Applies merge `patch` to `target` (RFC 7386): objects merge key by key,
/// `null` removes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Whether applying merge `patch` to `target` would change nothing: every
/// value it sets is there, every key it removes is absent.
#[must_use]
pub fn is_in_effect(patch: &Value, target: Option<&Value>) -> bool {
    match (patch, target) {
        (Value::Object(patch), Some(Value::Object(target))) => {
            patch.iter().all(|(key, value)| match value {
                Value::Null => !target.contains_key(key),
                _ => is_in_effect(value, target.get(key)),
            })
        }
        // Removals below an absent object remove nothing.
        (Value::Object(patch), None) => patch
            .values()
            .all(|value| value.is_null() || (value.is_object() && is_in_effect(value, None))),
        (patch, target) => target == Some(patch),
    }
}

/// The merge patch that turns `live` into `wanted`, or `None` when they are
/// equal. Objects are patched key by key; anything else is replaced.
#[must_use]
pub fn merge_diff(live: Option<&Value>, wanted: &Value) -> Option<Value> {
    match (live, wanted) {
        (Some(live), wanted) if live == wanted => None,
        (Some(Value::Object(live)), Value::Object(wanted)) => {
            let mut patch = Map::new();
            for (key, value) in wanted {
                if let Some(change) = merge_diff(live.get(key), value) {
                    patch.insert(key.clone(), change);
                }
            }
            for key in live.keys().filter(|key| !wanted.contains_key(*key)) {
                patch.insert(key.clone(), Value::Null);
            }
            Some(Value::Object(patch))
        }
        _ => Some(wanted.clone()),
    }
}

/// The merge patch that turns `live` into `wanted` while carrying every key
/// of `wanted` (write mode `whole`: the security agents rebuild their whole
/// configuration from each update, `reference/security-module-twin.md` §7).
#[must_use]
pub fn whole(live: Option<&Value>, wanted: &Value) -> Value {
    match (live, wanted) {
        (Some(Value::Object(live)), Value::Object(wanted_map)) => {
            let mut patch: Map<String, Value> = wanted_map
                .iter()
                .map(|(key, value)| (key.clone(), whole(live.get(key), value)))
                .collect();
            for key in live.keys().filter(|key| !wanted_map.contains_key(*key)) {
                patch.insert(key.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => wanted.clone(),
    }
}

/// One leaf that differs: its pointer, its value before and after.
pub type LeafDiff<'v> = (String, Option<&'v Value>, Option<&'v Value>);

/// The leaves (scalars, arrays and empty objects) under `pointer` that
/// differ between `before` and `after`, sorted by pointer: what comparing
/// their [`leaves`] gives, found by walking both values once.
#[must_use]
pub fn changed_leaves<'v>(
    before: Option<&'v Value>,
    after: Option<&'v Value>,
    pointer: &str,
) -> Vec<LeafDiff<'v>> {
    let mut out = Vec::new();
    walk_changes(before, after, pointer, &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn is_branch(value: &Value) -> bool {
    value.as_object().is_some_and(|map| !map.is_empty())
}

fn walk_changes<'v>(
    before: Option<&'v Value>,
    after: Option<&'v Value>,
    pointer: &str,
    out: &mut Vec<LeafDiff<'v>>,
) {
    match (before, after) {
        (Some(Value::Object(old)), Some(Value::Object(new)))
            if !old.is_empty() && !new.is_empty() =>
        {
            for (key, value) in old {
                walk_changes(Some(value), new.get(key), &join_pointer(pointer, key), out);
            }
            for (key, value) in new.iter().filter(|(key, _)| !old.contains_key(*key)) {
                walk_changes(None, Some(value), &join_pointer(pointer, key), out);
            }
        }
        (Some(old), Some(new)) if !is_branch(old) && !is_branch(new) => {
            if old != new {
                out.push((pointer.to_owned(), Some(old), Some(new)));
            }
        }
        _ => {
            // A leaf on one side and a branch (or nothing) on the other: no
            // pointer is on both sides.
            for side in [before, after].into_iter().enumerate() {
                let (at, value) = side;
                let mut found = Vec::new();
                if let Some(value) = value {
                    collect_borrowed(value, pointer.to_owned(), &mut found);
                }
                out.extend(found.into_iter().map(|(path, value)| {
                    if at == 0 {
                        (path, Some(value), None)
                    } else {
                        (path, None, Some(value))
                    }
                }));
            }
        }
    }
}

fn collect_borrowed<'v>(value: &'v Value, pointer: String, out: &mut Vec<(String, &'v Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                collect_borrowed(child, join_pointer(&pointer, key), out);
            }
        }
        other => out.push((pointer, other)),
    }
}

/// The leaves of `value` under `pointer`: scalars, arrays and empty objects.
#[must_use]
pub fn leaves(value: Option<&Value>, pointer: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    if let Some(value) = value {
        collect(value, pointer.to_owned(), &mut out);
    }
    out
}

fn collect(value: &Value, pointer: String, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                collect(child, join_pointer(&pointer, key), out);
            }
        }
        other => {
            out.insert(pointer, other.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Patch, changed_leaves, is_in_effect, leaves, merge, merge_diff, whole};

    #[test]
    fn a_patch_is_held_as_the_compact_text_of_its_value_however_it_was_written() {
        let value =
            json!({"tags": {"twinops": null}, "properties": {"desired": {"b": 1, "a": [true]}}});
        let patch = Patch::new(&value);
        assert_eq!(
            patch.text().get(),
            r#"{"properties":{"desired":{"a":[true],"b":1}},"tags":{"twinops":null}}"#
        );
        assert_eq!(patch.value(), value);
        assert_eq!(serde_json::to_value(&patch).unwrap(), value);
        let spaced = "{ \"tags\": {\"twinops\": null},\n \"properties\": {\"desired\": {\"b\": 1, \"a\": [ true ]}} }";
        let read: Patch = serde_json::from_str(spaced).unwrap();
        assert_eq!(read, patch);
        assert_eq!(read.text().get(), patch.text().get());
        assert!(serde_json::from_str::<Patch>("{\"a\": ").is_err());
    }

    #[test]
    fn merge_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge(
            &mut target,
            &json!({"a": "z", "c": {"f": null}, "n": {"m": 1}}),
        );
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}, "n": {"m": 1}}));
        let mut scalar = json!(1);
        merge(&mut scalar, &json!({"a": null, "b": [1]}));
        assert_eq!(scalar, json!({"b": [1]}));
    }

    #[test]
    fn a_patch_is_in_effect_when_applying_it_changes_nothing() {
        let twin =
            json!({"tags": {"a": 1}, "properties": {"desired": {"x": {"y": 2}, "$version": 4}}});
        let holds = |patch| is_in_effect(&patch, Some(&twin));
        assert!(holds(json!({"tags": {"a": 1}})));
        assert!(holds(
            json!({"properties": {"desired": {"x": {"y": 2}, "gone": null}}})
        ));
        assert!(holds(json!({})));
        assert!(!holds(json!({"tags": {"a": 2}})), "a changed value");
        assert!(!holds(json!({"tags": {"b": 1}})), "a new key");
        assert!(
            !holds(json!({"properties": {"desired": {"x": null}}})),
            "a key to remove"
        );
        assert!(
            !holds(json!({"properties": {"desired": {"x": 3}}})),
            "an object replaced"
        );
        assert!(
            is_in_effect(&json!({"tags": {"gone": null}}), None),
            "only removals on nothing"
        );
        assert!(!is_in_effect(&json!({"tags": {"a": 1}}), None));
    }

    #[test]
    fn merge_diff_sets_changed_keys_and_nulls_removed_ones() {
        let live = json!({"a": 1, "b": {"x": 1, "y": 2}, "c": 3});
        let wanted = json!({"a": 1, "b": {"x": 5, "y": 2}, "d": [1]});
        assert_eq!(
            merge_diff(Some(&live), &wanted),
            Some(json!({"b": {"x": 5}, "c": null, "d": [1]}))
        );
        assert_eq!(merge_diff(Some(&live), &live), None);
        assert_eq!(merge_diff(None, &json!(1)), Some(json!(1)));
    }

    #[test]
    fn whole_carries_every_wanted_key() {
        let live = json!({"a": {"value": 1}, "old": {"value": 2}, "b": {"value": 3, "extra": 1}});
        let wanted = json!({"a": {"value": 1}, "b": {"value": 4}});
        assert_eq!(
            whole(Some(&live), &wanted),
            json!({"a": {"value": 1}, "b": {"value": 4, "extra": null}, "old": null})
        );
    }

    #[test]
    fn leaves_are_keyed_by_pointer() {
        let found = leaves(Some(&json!({"a": {"b": 1}, "e": {}})), "/p");
        assert_eq!(found.keys().collect::<Vec<_>>(), ["/p/a/b", "/p/e"]);
        assert!(leaves(None, "/p").is_empty());
    }

    /// The walk finds what comparing every leaf finds, in pointer order.
    #[test]
    fn changed_leaves_agree_with_comparing_all_leaves() {
        let values = [
            json!({"a": {"b": 1, "c": [1]}, "a-x": 2, "e": {}}),
            json!({"a": {"b": 2}, "a-x": 2, "e": {"f": 1}, "g/h": null}),
            json!({"a": 5, "e": {}}),
            json!({"a": {}}),
            json!(3),
            json!({}),
        ];
        let mut options: Vec<Option<&serde_json::Value>> = values.iter().map(Some).collect();
        options.push(None);
        for before in &options {
            for after in &options {
                let (old, new) = (leaves(*before, "/p"), leaves(*after, "/p"));
                let mut expected: Vec<_> = old
                    .iter()
                    .filter(|(path, value)| new.get(*path) != Some(*value))
                    .map(|(path, value)| (path.clone(), Some(value), new.get(path)))
                    .chain(
                        new.iter()
                            .filter(|(path, _)| !old.contains_key(*path))
                            .map(|(path, value)| (path.clone(), None, Some(value))),
                    )
                    .collect();
                expected.sort_by(|a, b| a.0.cmp(&b.0));
                assert_eq!(
                    changed_leaves(*before, *after, "/p"),
                    expected,
                    "{before:?} → {after:?}"
                );
            }
        }
    }
}
