//! Layering: the leaves of the policies that target one twin, merged in
//! ascending priority. Objects merge recursively, scalars and arrays replace;
//! every leaf remembers who set it and whom it overrode; two policies of one
//! priority that disagree on a leaf (or on whether it is a leaf) conflict.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::load::pointer_keys;
use crate::validate::{Leaf, PolicyId, PolicySet, flatten};

/// Who set a leaf.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Setter {
    /// A policy.
    Policy(PolicyId),
    /// The default of the named schema (write mode `whole`).
    Default(String),
}

/// Where a compiled leaf came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Who set the value.
    pub setter: Setter,
    /// Lower-priority policies whose value here it replaced, nearest first.
    pub overrode: Vec<PolicyId>,
}

/// One compiled leaf.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The value.
    pub value: Value,
    /// Its provenance.
    pub origin: Origin,
}

/// Two policies of one priority disagreeing about a leaf.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Conflict {
    /// The policy seen first (lower id).
    pub first: PolicyId,
    /// The other.
    pub second: PolicyId,
    /// The leaf, relative to desired (the shorter pointer for a shape clash).
    pub pointer: String,
    /// The first policy's leaf.
    pub first_pointer: String,
    /// The second policy's leaf.
    pub second_pointer: String,
}

/// Merges the policies `ids` (sorted by priority) into leaves by pointer.
#[must_use]
pub fn layer(policies: &PolicySet, ids: &[PolicyId]) -> (BTreeMap<String, Entry>, Vec<Conflict>) {
    let mut result: BTreeMap<String, Entry> = BTreeMap::new();
    let mut conflicts = Vec::new();
    let mut rest = ids;
    while let Some(&first) = rest.first() {
        let priority = policies.get(first).map_or(0, |p| p.priority);
        let level_len = rest
            .iter()
            .take_while(|&&id| policies.get(id).map_or(0, |p| p.priority) == priority)
            .count();
        let (level, tail) = rest.split_at(level_len);
        rest = tail;
        let leaves = level_leaves(policies, level, &mut conflicts);
        for (pointer, (value, setter)) in leaves {
            let mut overrode = Vec::new();
            for replaced in take_overlapping(&mut result, &pointer) {
                if let Setter::Policy(id) = replaced.origin.setter {
                    overrode.push(id);
                }
                overrode.extend(replaced.origin.overrode);
            }
            dedup_keep_order(&mut overrode);
            result.insert(
                pointer,
                Entry {
                    value,
                    origin: Origin {
                        setter: Setter::Policy(setter),
                        overrode,
                    },
                },
            );
        }
    }
    conflicts.sort();
    conflicts.dedup();
    (result, conflicts)
}

/// The leaves one priority level sets, with same-level conflicts recorded.
fn level_leaves(
    policies: &PolicySet,
    level: &[PolicyId],
    conflicts: &mut Vec<Conflict>,
) -> BTreeMap<String, (Value, PolicyId)> {
    let mut leaves: BTreeMap<String, (Value, PolicyId)> = BTreeMap::new();
    for &id in level {
        let Some(policy) = policies.get(id) else {
            continue;
        };
        for Leaf { pointer, value } in &policy.leaves {
            if let Some((existing, owner)) = leaves.get(pointer) {
                if existing != value && *owner != id {
                    conflicts.push(Conflict {
                        first: *owner,
                        second: id,
                        pointer: pointer.clone(),
                        first_pointer: pointer.clone(),
                        second_pointer: pointer.clone(),
                    });
                }
                continue;
            }
            let clash = ancestors(pointer)
                .find_map(|ancestor| {
                    leaves
                        .get(ancestor)
                        .map(|(_, owner)| (ancestor.to_owned(), *owner))
                })
                .or_else(|| {
                    descendants(&leaves, pointer)
                        .next()
                        .map(|(other, (_, owner))| (other.clone(), *owner))
                });
            if let Some((other_pointer, owner)) = clash
                && owner != id
            {
                let shorter = if other_pointer.len() < pointer.len() {
                    &other_pointer
                } else {
                    pointer
                };
                conflicts.push(Conflict {
                    first: owner,
                    second: id,
                    pointer: shorter.clone(),
                    first_pointer: other_pointer.clone(),
                    second_pointer: pointer.clone(),
                });
                continue;
            }
            leaves.insert(pointer.clone(), (value.clone(), id));
        }
    }
    leaves
}

/// Removes and returns the entries above `pointer` (outermost first), at
/// it, and below it (in pointer order).
fn take_overlapping(result: &mut BTreeMap<String, Entry>, pointer: &str) -> Vec<Entry> {
    let mut taken: Vec<Entry> = ancestors(pointer)
        .chain(std::iter::once(pointer))
        .filter_map(|key| result.remove(key))
        .collect();
    let below: Vec<String> = descendants(result, pointer)
        .map(|(key, _)| key.clone())
        .collect();
    taken.extend(below.iter().filter_map(|key| result.remove(key)));
    taken
}

/// The proper ancestors of a pointer, nearest last: `/a/b/c` → `/a`, `/a/b`.
fn ancestors(pointer: &str) -> impl Iterator<Item = &str> {
    pointer
        .match_indices('/')
        .skip(1)
        .map(move |(at, _)| pointer.get(..at).unwrap_or_default())
}

/// The entries strictly below `pointer`, in pointer order. Keys that only
/// start with its text (`/a-b` for `/a`) sort among them and are passed
/// over.
fn descendants<'m, 'p, V>(
    map: &'m BTreeMap<String, V>,
    pointer: &'p str,
) -> impl Iterator<Item = (&'m String, &'m V)> + use<'m, 'p, V> {
    map.range::<str, _>((Bound::Excluded(pointer), Bound::Unbounded))
        .take_while(move |(key, _)| key.starts_with(pointer))
        .filter(move |(key, _)| key.as_bytes().get(pointer.len()) == Some(&b'/'))
}

fn dedup_keep_order(ids: &mut Vec<PolicyId>) {
    if ids.len() < 2 {
        return;
    }
    let mut seen = std::collections::BTreeSet::new();
    ids.retain(|id| seen.insert(*id));
}

/// A `whole` schema's defaults, flattened once: per top-level key of the
/// object they complete, its pointer and its leaves, each with who set it
/// made once, so that the configurations it completes share it.
#[derive(Clone, Debug)]
pub struct Defaults {
    /// (pointer of the key, the same followed by `/`, the leaves below).
    keys: Vec<(String, String, Vec<DefaultLeaf>)>,
}

/// One leaf of a schema's defaults, and its pointer with the schema as its
/// setter.
#[derive(Clone, Debug)]
pub struct DefaultLeaf {
    /// The leaf.
    pub leaf: Leaf,
    /// Its pointer and setter, as provenances hold them.
    pub setter: Arc<(String, Setter)>,
}

impl Defaults {
    /// The defaults (top-level keys of the object at `base`) of `schema`.
    #[must_use]
    pub fn new(base: &str, defaults: &Map<String, Value>, schema: &str) -> Self {
        let mut keys = defaults
            .iter()
            .map(|(key, default)| {
                let pointer = crate::load::join_pointer(base, key);
                let mut leaves = Vec::new();
                flatten(default, pointer.clone(), &mut leaves);
                let leaves = leaves
                    .into_iter()
                    .map(|leaf| DefaultLeaf {
                        setter: Arc::new((
                            leaf.pointer.clone(),
                            Setter::Default(schema.to_owned()),
                        )),
                        leaf,
                    })
                    .collect();
                let below = format!("{pointer}/");
                (pointer, below, leaves)
            })
            .collect::<Vec<_>>();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        Self { keys }
    }

    /// Every leaf of the defaults.
    pub fn leaves(&self) -> impl Iterator<Item = &DefaultLeaf> {
        self.keys.iter().flat_map(|(_, _, leaves)| leaves)
    }

    /// Adds to `unset` the leaves of the keys that no policy set in
    /// `result` (at or below the key).
    pub fn unset<'d>(&'d self, result: &BTreeMap<String, Entry>, unset: &mut Vec<&'d DefaultLeaf>) {
        // The keys and the result are both in pointer order: one walk.
        let mut set = result.keys().peekable();
        for (pointer, below, leaves) in &self.keys {
            while set.next_if(|key| key < &pointer).is_some() {}
            // From the key on, the pointers that start with its text: the
            // key, those below it, and others (`/a-b` for `/a`).
            let taken = set
                .clone()
                .take_while(|key| key.starts_with(pointer.as_str()))
                .any(|key| key == pointer || key.starts_with(below.as_str()));
            if !taken {
                unset.extend(leaves);
            }
        }
    }
}

/// Rebuilds the desired object from its leaves (pointer and value).
#[must_use]
pub fn tree<'l>(leaves: impl Iterator<Item = (&'l str, &'l Value)>) -> Map<String, Value> {
    let mut root = Value::Object(Map::new());
    for (pointer, value) in leaves {
        let keys: Vec<Cow<'_, str>> = pointer_keys(pointer).collect();
        let mut node = &mut root;
        for key in keys.iter().take(keys.len().saturating_sub(1)) {
            let Value::Object(map) = node else { break };
            node = map
                .entry(key.clone().into_owned())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        if let (Value::Object(map), Some(last)) = (node, keys.last()) {
            map.insert(last.clone().into_owned(), value.clone());
        }
    }
    match root {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::{Entry, Origin, Setter, descendants, take_overlapping};

    fn leaves(pointers: &[&str]) -> BTreeMap<String, Entry> {
        pointers
            .iter()
            .enumerate()
            .map(|(at, pointer)| {
                let entry = Entry {
                    value: json!(at),
                    origin: Origin {
                        setter: Setter::Policy(at),
                        overrode: Vec::new(),
                    },
                };
                ((*pointer).to_owned(), entry)
            })
            .collect()
    }

    #[test]
    fn keys_that_only_start_alike_are_neither_above_nor_below() {
        let map = leaves(&["/a", "/a!", "/a-b", "/a/x", "/a/y/z", "/a0", "/ab"]);
        let below: Vec<&str> = descendants(&map, "/a")
            .map(|(key, _)| key.as_str())
            .collect();
        assert_eq!(below, ["/a/x", "/a/y/z"]);
        assert_eq!(descendants(&map, "/a/x").count(), 0);
        assert_eq!(descendants(&map, "/b").count(), 0);
    }

    #[test]
    fn defaults_complete_only_the_keys_no_policy_set_at_or_below() {
        let defaults = super::Defaults::new(
            "/p",
            json!({"a": 1, "a-b": {"x": 2, "y": 3}, "b": {"c": 4}, "c": 5, "d": 6})
                .as_object()
                .unwrap(),
            "s",
        );
        let result = leaves(&["/p/a-b/x", "/p/a-c", "/p/b/c/deep", "/p/c"]);
        let mut unset = Vec::new();
        defaults.unset(&result, &mut unset);
        let pointers: Vec<&str> = unset.iter().map(|d| d.leaf.pointer.as_str()).collect();
        assert_eq!(pointers, ["/p/a", "/p/d"]);
        assert!(
            unset
                .iter()
                .all(|d| d.setter.1 == Setter::Default("s".to_owned()))
        );
        let mut none_set = Vec::new();
        defaults.unset(&leaves(&[]), &mut none_set);
        assert_eq!(none_set.len(), 6, "every leaf of every key");
    }

    #[test]
    fn overlapping_leaves_are_taken_outermost_first_and_the_rest_kept() {
        let mut map = leaves(&["/a", "/a-b", "/a/b", "/a/b/c", "/a/b/d", "/a/bc"]);
        let taken: Vec<Setter> = take_overlapping(&mut map, "/a/b")
            .into_iter()
            .map(|entry| entry.origin.setter)
            .collect();
        assert_eq!(
            taken,
            [
                Setter::Policy(0),
                Setter::Policy(2),
                Setter::Policy(3),
                Setter::Policy(4)
            ]
        );
        let kept: Vec<&str> = map.keys().map(String::as_str).collect();
        assert_eq!(kept, ["/a-b", "/a/bc"]);
    }
}
