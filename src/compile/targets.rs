//! Targets: which policies match a device, evaluated once per distinct input.
//!
//! A condition reads a few twin paths ([`Condition::paths`]); two twins with
//! the same values there get the same answer. Conditions that read the same
//! paths form a group, evaluated once per distinct combination of values and
//! remembered. Top-level `path = 'text'` terms (`deviceId = 'dev-42' OR …`)
//! are looked up in an index instead, so that per-device exceptions do not
//! make every device's inputs distinct. The cost per device is then a few
//! lookups, whatever the number of policies.

use std::borrow::Cow;
use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use serde_json::{Map, Value};

use crate::fleet::TwinFields;
use crate::parallel::Memo;
use crate::query::Condition;
use crate::validate::{PolicyId, PolicySet};

/// The targets of a policy set, ready to match twins.
#[derive(Debug)]
pub struct Targets {
    /// Policies that target every device (`*`).
    everywhere: Vec<PolicyId>,
    /// Per path: string value → policies whose condition it makes true.
    index: Vec<(Vec<String>, Index)>,
    /// Conditions (or what is left of them) grouped by the paths they read.
    groups: Vec<Group>,
}

/// String value → the policies it selects.
type Index = FxHashMap<String, Vec<PolicyId>>;

#[derive(Debug)]
struct Group {
    paths: Vec<Vec<String>>,
    conditions: Vec<(PolicyId, Condition)>,
}

/// Answers already worked out, per group, by the text of its inputs. One
/// per thread.
#[derive(Debug, Default)]
pub struct TargetMemo {
    answers: Vec<Memo<Vec<PolicyId>>>,
    key: String,
}

impl Targets {
    /// Prepares the targets of `policies`.
    #[must_use]
    pub fn new(policies: &PolicySet) -> Self {
        let mut everywhere = Vec::new();
        let mut index: BTreeMap<Vec<String>, Index> = BTreeMap::new();
        let mut groups: BTreeMap<Vec<String>, Vec<(PolicyId, Condition)>> = BTreeMap::new();
        for (id, policy) in policies.policies.iter().enumerate() {
            let condition = &policy.target.condition;
            if condition.is_all() {
                everywhere.push(id);
                continue;
            }
            let split = condition.split();
            for (path, text) in split.equalities {
                index
                    .entry(path)
                    .or_default()
                    .entry(text)
                    .or_default()
                    .push(id);
            }
            if let Some(rest) = split.rest {
                groups.entry(rest.paths()).or_default().push((id, rest));
            }
        }
        Self {
            everywhere,
            index: index
                .into_iter()
                .map(|(path, values)| {
                    let values = values
                        .into_iter()
                        .map(|(text, mut ids)| {
                            ids.dedup();
                            (text, ids)
                        })
                        .collect();
                    (path, values)
                })
                .collect(),
            groups: groups
                .into_iter()
                .map(|(paths, conditions)| Group {
                    paths: paths
                        .iter()
                        .map(|dotted| dotted.split('.').map(str::to_owned).collect())
                        .collect(),
                    conditions,
                })
                .collect(),
        }
    }

    /// The policies whose target matches `twin`, ascending.
    pub fn matching(&self, twin: &impl TwinFields, memo: &mut TargetMemo) -> Vec<PolicyId> {
        let mut matched = self.everywhere.clone();
        for (path, values) in &self.index {
            if let Some(text) = string_at(twin, path)
                && let Some(ids) = values.get(text.as_ref())
            {
                matched.extend_from_slice(ids);
            }
        }
        memo.answers.resize_with(self.groups.len(), Memo::default);
        for (group, answers) in self.groups.iter().zip(&mut memo.answers) {
            memo.key.clear();
            let texts: Vec<Option<Cow<'_, str>>> =
                group.paths.iter().map(|path| twin.text(path)).collect();
            for text in &texts {
                // Absent and present are told apart by the marker.
                match text {
                    Some(text) => {
                        memo.key.push('=');
                        memo.key.push_str(text);
                    }
                    None => memo.key.push('-'),
                }
                memo.key.push('\u{0}');
            }
            if let Some(ids) = answers.get(&memo.key) {
                matched.extend_from_slice(ids);
                continue;
            }
            let inputs = inputs(&group.paths, &texts);
            let ids: Vec<PolicyId> = group
                .conditions
                .iter()
                .filter(|(_, condition)| condition.matches(&inputs))
                .map(|(id, _)| *id)
                .collect();
            matched.extend_from_slice(&ids);
            answers.remember(&memo.key, ids);
        }
        matched.sort_unstable();
        matched.dedup();
        matched
    }
}

/// A twin holding only the values at `paths`: all a group's conditions read.
fn inputs(paths: &[Vec<String>], texts: &[Option<Cow<'_, str>>]) -> Value {
    let mut root = Map::new();
    for (path, text) in paths.iter().zip(texts) {
        let Some(value) = text
            .as_deref()
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
        else {
            continue;
        };
        let Some((last, parents)) = path.split_last() else {
            continue;
        };
        // A value below a non-object cannot be read, so every parent of a
        // present value is an object (or still to be made one).
        let mut at = Some(&mut root);
        for key in parents {
            at = at.and_then(|map| {
                map.entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
            });
        }
        if let Some(map) = at {
            map.insert(last.clone(), value);
        }
    }
    Value::Object(root)
}

/// The string at `path`, if the value there is one. A string without
/// escapes is read from the JSON text in place.
fn string_at<'t>(twin: &'t impl TwinFields, path: &[String]) -> Option<Cow<'t, str>> {
    let text = twin.text(path)?;
    if let Cow::Borrowed(raw) = text
        && let Some(inner) = raw.strip_prefix('"').and_then(|raw| raw.strip_suffix('"'))
        && !inner.contains(['\\', '"'])
    {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(&text).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::string_at;
    use crate::fleet::RawTwin;

    #[test]
    fn strings_are_read_in_place_unless_escaped_and_nothing_else_is_a_string() {
        let line = r#"{"deviceId":"d","tags":{"plain":"site-1","escaped":"s\u0069te-\"1\"","number":1,"text":"1"}}"#;
        let twin = RawTwin::parse(line).unwrap();
        let at = |key: &str| string_at(&twin, &["tags".to_owned(), key.to_owned()]);
        assert!(matches!(at("plain"), Some(Cow::Borrowed("site-1"))));
        assert_eq!(at("escaped").as_deref(), Some("site-\"1\""));
        assert_eq!(at("number"), None);
        assert_eq!(at("text").as_deref(), Some("1"));
        assert_eq!(at("missing"), None);
        assert_eq!(
            string_at(&twin, &["deviceId".to_owned()]).as_deref(),
            Some("d")
        );
    }
}
