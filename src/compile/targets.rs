//! Targets: which policies match a device, evaluated once per distinct input.
//!
//! A condition reads a few twin paths ([`Condition::paths`]); two twins with
//! the same values there get the same answer. Conditions that read the same
//! paths form a group, evaluated once per distinct combination of values and
//! remembered. Top-level `path = 'text'` terms (`deviceId = 'dev-42' OR …`)
//! and `AND`s of them (`tags.site = 'a' AND tags.ring = 'b'`) are looked up
//! in indexes instead, so that per-device exceptions neither make every
//! device's inputs distinct nor are evaluated one by one. The cost per
//! device is then a few lookups, whatever the number of policies.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use rustc_hash::{FxHashMap, FxHashSet};

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
    /// Every path the targets read, each once: a twin's value at a path is
    /// read once, however many of the parts below read it.
    paths: Vec<Vec<String>>,
    /// Per path (its place in `paths`): string value → policies whose
    /// condition it makes true.
    index: Vec<(usize, Index)>,
    /// Per set of paths: the strings at them (as [`tuple_key`] writes them)
    /// → policies whose condition holds an `AND` of `path = 'text'` over
    /// exactly those paths that they make true.
    tuples: Vec<Tuples>,
    /// Conditions (or what is left of them) grouped by the paths they read.
    groups: Vec<Group>,
}

/// String value → the policies it selects.
type Index = FxHashMap<String, Vec<PolicyId>>;

/// The `AND`s of `path = 'text'` over one set of paths. Reported
/// properties come last: a twin's strings are read in order, and the
/// rest not at all once those read so far begin no key.
#[derive(Debug)]
struct Tuples {
    /// The place of each path in [`Targets::paths`], in key order.
    paths: Vec<usize>,
    /// Keys → policies.
    index: Index,
    beginnings: Beginnings,
}

/// Per path of a set but the last: the beginnings of its keys up to that
/// path.
type Beginnings = Vec<FxHashSet<String>>;

#[derive(Debug)]
struct Group {
    paths: Vec<Vec<String>>,
    /// The place of each of `paths` in [`Targets::paths`].
    at: Vec<usize>,
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
        let mut tuples: BTreeMap<Vec<Vec<String>>, (Index, Beginnings)> = BTreeMap::new();
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
            for mut pairs in split.conjunctions {
                // Stable: the other paths keep their order.
                pairs.sort_by_key(|(path, _)| {
                    path.first().is_some_and(|first| first == "properties")
                });
                let (paths, texts): (Vec<Vec<String>>, Vec<String>) = pairs.into_iter().unzip();
                let (index, beginnings) = tuples.entry(paths).or_insert_with(|| {
                    let beginnings = texts.len().saturating_sub(1);
                    (Index::default(), vec![FxHashSet::default(); beginnings])
                });
                let mut key = String::new();
                for (at, text) in texts.iter().enumerate() {
                    tuple_key(&mut key, std::iter::once(text.as_str()));
                    if let Some(beginnings) = beginnings.get_mut(at) {
                        beginnings.insert(key.clone());
                    }
                }
                index.entry(key).or_default().push(id);
            }
            if let Some(rest) = split.rest {
                groups.entry(rest.paths()).or_default().push((id, rest));
            }
        }
        let mut paths: Vec<Vec<String>> = Vec::new();
        let mut place = |path: Vec<String>| {
            paths
                .iter()
                .position(|known| *known == path)
                .unwrap_or_else(|| {
                    paths.push(path);
                    paths.len() - 1
                })
        };
        let index = index
            .into_iter()
            .map(|(path, values)| {
                let values = values
                    .into_iter()
                    .map(|(text, mut ids)| {
                        ids.dedup();
                        (text, ids)
                    })
                    .collect();
                (place(path), values)
            })
            .collect();
        let tuples = tuples
            .into_iter()
            .map(|(set, (index, beginnings))| Tuples {
                paths: set.into_iter().map(&mut place).collect(),
                index,
                beginnings,
            })
            .collect();
        let groups = groups
            .into_iter()
            .map(|(dotted, conditions)| {
                let paths: Vec<Vec<String>> = dotted
                    .iter()
                    .map(|dotted| dotted.split('.').map(str::to_owned).collect())
                    .collect();
                let at = paths.iter().cloned().map(&mut place).collect();
                Group {
                    paths,
                    at,
                    conditions,
                }
            })
            .collect();
        Self {
            everywhere,
            paths,
            index,
            tuples,
            groups,
        }
    }

    /// The policies whose target matches `twin`, ascending.
    pub fn matching(&self, twin: &impl TwinFields, memo: &mut TargetMemo) -> Vec<PolicyId> {
        let mut matched = self.everywhere.clone();
        let mut texts = Read::new(twin, &self.paths);
        for (path, values) in &self.index {
            if let Some(text) = texts.string(*path)
                && let Some(ids) = values.get(text.as_ref())
            {
                matched.extend_from_slice(ids);
            }
        }
        for tuples in &self.tuples {
            memo.key.clear();
            let mut read = 0;
            for &path in &tuples.paths {
                let Some(text) = texts.string(path) else {
                    break;
                };
                tuple_key(&mut memo.key, std::iter::once(text.as_ref()));
                read += 1;
                if tuples
                    .beginnings
                    .get(read - 1)
                    .is_some_and(|known| !known.contains(memo.key.as_str()))
                {
                    break;
                }
            }
            if read == tuples.paths.len()
                && let Some(ids) = tuples.index.get(memo.key.as_str())
            {
                matched.extend_from_slice(ids);
            }
        }
        memo.answers.resize_with(self.groups.len(), Memo::default);
        for (group, answers) in self.groups.iter().zip(&mut memo.answers) {
            memo.key.clear();
            let inputs: Vec<Option<Cow<'_, str>>> =
                group.at.iter().map(|&path| texts.text(path)).collect();
            for text in &inputs {
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
            let inputs = inputs_of(&group.paths, &inputs);
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

/// A twin's texts at the targets' paths, each read when first asked for.
struct Read<'t, T> {
    twin: &'t T,
    paths: &'t [Vec<String>],
    texts: Vec<Slot<'t>>,
}

/// A path's text, once read.
#[derive(Clone)]
enum Slot<'t> {
    Unread,
    Read(Option<Cow<'t, str>>),
}

impl<'t, T: TwinFields> Read<'t, T> {
    fn new(twin: &'t T, paths: &'t [Vec<String>]) -> Self {
        Self {
            twin,
            paths,
            texts: vec![Slot::Unread; paths.len()],
        }
    }

    /// The JSON text at the `path`th path.
    fn text(&mut self, path: usize) -> Option<Cow<'t, str>> {
        let (twin, paths) = (self.twin, self.paths);
        let slot = self.texts.get_mut(path)?;
        if let Slot::Unread = slot {
            *slot = Slot::Read(paths.get(path).and_then(|path| twin.text(path)));
        }
        match slot {
            Slot::Read(text) => text.clone(),
            Slot::Unread => None,
        }
    }

    /// The string at the `path`th path, if the value there is one.
    fn string(&mut self, path: usize) -> Option<Cow<'t, str>> {
        unquoted(&self.text(path)?)
    }
}

/// A twin holding only the values at `paths`: all a group's conditions read.
fn inputs_of(paths: &[Vec<String>], texts: &[Option<Cow<'_, str>>]) -> Value {
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

/// Writes `texts` into `key`, each after its length, so that no two
/// sequences of texts write the same key.
fn tuple_key<'t>(key: &mut String, texts: impl Iterator<Item = &'t str>) {
    for text in texts {
        // Writing into a String cannot fail.
        let _ = write!(key, "{}:", text.len());
        key.push_str(text);
    }
}

/// The string a JSON text holds, if it holds one. A string without escapes
/// is read from the text in place.
fn unquoted<'t>(text: &Cow<'t, str>) -> Option<Cow<'t, str>> {
    if let Cow::Borrowed(raw) = *text
        && let Some(inner) = raw.strip_prefix('"').and_then(|raw| raw.strip_suffix('"'))
        && !inner.contains(['\\', '"'])
    {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::fmt::Write as _;

    use serde_json::json;

    use super::{TargetMemo, Targets, unquoted};
    use crate::compile::tests::project;
    use crate::fleet::{RawTwin, TwinFields};

    /// The string at `path`, if the value there is one.
    fn string_at<'t>(twin: &'t impl TwinFields, path: &[String]) -> Option<Cow<'t, str>> {
        unquoted(&twin.text(path)?)
    }

    /// Whatever part of a condition goes to an index or a group, the
    /// policies matched are those whose condition holds for the twin.
    #[test]
    fn indexes_and_groups_match_exactly_what_the_conditions_match() {
        let targets = [
            "*",
            "deviceId = 'd1'",
            "tags.site IN ['s1', 's2']",
            "deviceId = 'd2' OR (tags.site = 's1' AND tags.ring = 'canary')",
            "(tags.ring = 'canary' AND tags.site = 's2' AND properties.reported.k = 'k1') OR deviceId = 'd3'",
            "tags.site = 's1' AND tags.site = 's2'",
            "tags.site = 's1' AND tags.site = 's1'",
            "tags.ring = 'broad' AND tags.n = 3",
            "tags.ring IN ['canary'] AND tags.site = 's3'",
            "tags.ring IN ['canary', 'broad'] AND tags.site = 's3'",
            "(tags.site = 's1' AND tags.ring = 'canary') OR (tags.site = 's2' AND tags.ring = 'broad') OR properties.reported.k > 'k1'",
            "NOT (tags.site = 's1' AND tags.ring = 'canary')",
            "'s2' = tags.site AND tags.ring = 'broad'",
        ];
        let mut yaml = String::new();
        for (at, target) in targets.iter().enumerate() {
            let _ = write!(
                yaml,
                "---\napiVersion: twinops/v1\nkind: Policy\nname: p{at}\npriority: {at}\ntarget: \"{target}\"\ndesired: {{x{at}: 1}}\n"
            );
        }
        let (_, _, policies) = project(&yaml);
        let index = Targets::new(&policies);
        let mut memo = TargetMemo::default();
        let sites = [json!("s1"), json!("s2"), json!("s3"), json!(7), json!(null)];
        let rings = [json!("canary"), json!("broad"), json!(null)];
        let kernels = [json!("k0"), json!("k1"), json!("k2"), json!(null)];
        let mut checked = 0;
        for device in ["d1", "d2", "d3", "d4"] {
            for site in &sites {
                for ring in &rings {
                    for kernel in &kernels {
                        let mut tags = json!({"n": 3});
                        if !site.is_null() {
                            tags["site"] = site.clone();
                        }
                        if !ring.is_null() {
                            tags["ring"] = ring.clone();
                        }
                        let mut reported = json!({});
                        if !kernel.is_null() {
                            reported["k"] = kernel.clone();
                        }
                        let twin = json!({"deviceId": device, "tags": tags,
                            "properties": {"desired": {}, "reported": reported}});
                        let line = twin.to_string();
                        let raw = RawTwin::parse(&line).unwrap();
                        let expected: Vec<usize> = policies
                            .policies
                            .iter()
                            .enumerate()
                            .filter(|(_, policy)| policy.target.condition.matches(&twin))
                            .map(|(id, _)| id)
                            .collect();
                        assert_eq!(index.matching(&raw, &mut memo), expected, "{line}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 240);
        let split = policies.policies[3].target.condition.split();
        assert_eq!(
            split.conjunctions.len(),
            1,
            "an AND of equalities is indexed"
        );
        assert!(split.rest.is_none());
    }

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
