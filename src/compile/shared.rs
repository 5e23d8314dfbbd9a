//! What configurations share. Devices that match different policies often
//! compile to the same desired value, their configurations differing only in
//! who set some leaves. So each distinct value is built and checked once
//! ([`Desired`]), and each distinct leaf origin is held once ([`Provenance`]):
//! tens of thousands of configurations then cost what a few thousand values
//! and a few pointers each cost.

use std::ops::Range;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::{Map, Value};

use super::limits::LimitProblem;
use super::merge::{DefaultLeaf, Defaults, Origin, Setter};
use crate::schema::{Rule, Violation};
use crate::validate::PolicyId;

/// A compiled desired value, shared by every configuration compiled to it.
#[derive(Debug)]
pub struct Desired {
    /// Tells distinct values apart among those one compiler made.
    pub id: usize,
    /// The names of its properties, in order.
    pub properties: Vec<String>,
    /// The value as compact JSON, keys sorted. As text it takes a tenth of
    /// what its parsed tree does, and a fleet can compile to thousands.
    text: String,
    /// Where each property's value lies in `text`, in property order.
    property_texts: Vec<Range<usize>>,
    /// What the schemas, their rules and IoT Hub's limits find wrong with
    /// the value, in the order they were checked.
    pub(super) checks: Vec<Check>,
}

impl Desired {
    /// The desired properties twinops manages, as they should be.
    #[must_use]
    pub fn value(&self) -> Map<String, Value> {
        // The text was written from a map: it reads back as one.
        serde_json::from_str(&self.text).unwrap_or_default()
    }

    /// The `index`th property's value as compact JSON, keys sorted.
    #[must_use]
    pub fn property_text(&self, index: usize) -> Option<&str> {
        self.text.get(self.property_texts.get(index)?.clone())
    }

    /// A value's compact text, as `serde_json` writes a map, and where each
    /// property's value lies in it.
    fn written(value: &Map<String, Value>) -> (String, Vec<Range<usize>>) {
        let mut text = String::from("{");
        let mut ranges = Vec::with_capacity(value.len());
        for (at, (property, value)) in value.iter().enumerate() {
            if at > 0 {
                text.push(',');
            }
            text.push_str(&Value::from(property.as_str()).to_string());
            text.push(':');
            let start = text.len();
            text.push_str(&value.to_string());
            ranges.push(start..text.len());
        }
        text.push('}');
        (text, ranges)
    }
}

/// Two values are equal when their properties are, whichever compiler made
/// them.
impl PartialEq for Desired {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// A problem of a compiled value, before it is explained by who set what.
#[derive(Debug)]
pub(super) enum Check {
    Violation(Violation),
    /// A broken rule, with the pointer (below desired) and value of each
    /// side it compares.
    Rule {
        rule: Rule,
        sides: [Option<(String, Value)>; 2],
    },
    Limit(LimitProblem),
}

/// Per leaf (pointer below desired), in pointer order: who set it and whom
/// it overrode. Each part is shared with the configurations that have it
/// too: a leaf set by the same policy, a list of the same overridden
/// policies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Provenance(Vec<ProvenanceLeaf>);

/// One leaf of a [`Provenance`]: its pointer and setter, and the policies
/// it overrode.
type ProvenanceLeaf = (Arc<(String, Setter)>, Arc<[PolicyId]>);

impl Provenance {
    /// Who set the leaf at `pointer`.
    #[must_use]
    pub fn setter(&self, pointer: &str) -> Option<&Setter> {
        self.at(pointer).map(|(leaf, _)| &leaf.1)
    }

    /// The origin of the leaf at `pointer`.
    #[must_use]
    pub fn get(&self, pointer: &str) -> Option<Origin> {
        self.at(pointer).map(origin)
    }

    /// Every leaf's pointer and origin, in pointer order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Origin)> {
        self.0
            .iter()
            .map(|entry| (entry.0.0.as_str(), origin(entry)))
    }

    /// The leaf that best explains `pointer`, and its origin: its own leaf,
    /// else the first leaf below it, else the nearest leaf above it.
    #[must_use]
    pub fn explain(&self, pointer: &str) -> Option<(&str, Origin)> {
        if let Some(entry) = self.at(pointer) {
            return Some((entry.0.0.as_str(), origin(entry)));
        }
        let below = format!("{pointer}/");
        let first_below = self.0.partition_point(|(leaf, _)| leaf.0 < below);
        if let Some(entry) = self.0.get(first_below)
            && entry.0.0.starts_with(&below)
        {
            return Some((entry.0.0.as_str(), origin(entry)));
        }
        let mut above = pointer;
        while let Some((parent, _)) = above.rsplit_once('/') {
            above = parent;
            if let Some(entry) = self.at(above) {
                return Some((entry.0.0.as_str(), origin(entry)));
            }
        }
        None
    }

    /// The entry of the leaf at `pointer`.
    fn at(&self, pointer: &str) -> Option<&ProvenanceLeaf> {
        let at = self
            .0
            .binary_search_by(|(leaf, _)| leaf.0.as_str().cmp(pointer))
            .ok()?;
        self.0.get(at)
    }
}

fn origin((leaf, overrode): &ProvenanceLeaf) -> Origin {
    Origin {
        setter: leaf.1.clone(),
        overrode: overrode.to_vec(),
    }
}

/// The values and leaf origins one compiler has made so far.
#[derive(Default)]
pub(super) struct Pool {
    /// Key ([`value_key`]) → the value compiled from those leaves.
    values: FxHashMap<Vec<u8>, Arc<Desired>>,
    /// Leaves and who set them.
    setters: FxHashSet<Arc<(String, Setter)>>,
    /// Lists of overridden policies.
    overrides: FxHashSet<Arc<[PolicyId]>>,
}

impl Pool {
    /// How many distinct values it holds.
    pub(super) fn len(&self) -> usize {
        self.values.len()
    }

    /// The value compiled from the leaves `key` names, if one was.
    pub(super) fn value(&self, key: &[u8]) -> Option<&Arc<Desired>> {
        self.values.get(key)
    }

    /// The shared copy of a value just compiled (another configuration of
    /// the same batch may have compiled it too).
    pub(super) fn add_value(
        &mut self,
        key: Vec<u8>,
        value: &Map<String, Value>,
        checks: Vec<Check>,
    ) -> Arc<Desired> {
        let id = self.values.len();
        Arc::clone(self.values.entry(key).or_insert_with(|| {
            let (text, property_texts) = Desired::written(value);
            Arc::new(Desired {
                id,
                properties: value.keys().cloned().collect(),
                text,
                property_texts,
                checks,
            })
        }))
    }

    /// Takes in the leaves of schema defaults, made once with their
    /// setters, so that every configuration they complete shares them.
    pub(super) fn adopt(&mut self, defaults: &Defaults) {
        for leaf in defaults.leaves() {
            self.setters.insert(Arc::clone(&leaf.setter));
        }
    }

    /// The leaves a configuration's policies `set` and the `defaults` that
    /// complete it (each in pointer order), in pointer order, with each
    /// part this pool already holds replaced by its shared copy: read-only,
    /// so configurations compiled in parallel look their leaves up at once.
    pub(super) fn pooled(
        &self,
        set: impl Iterator<Item = (String, Origin)>,
        defaults: &[&DefaultLeaf],
    ) -> Vec<PooledLeaf> {
        let overrides = |overrode: Vec<PolicyId>| match self.overrides.get(overrode.as_slice()) {
            Some(known) => Pooled::Shared(Arc::clone(known)),
            None => Pooled::New(overrode),
        };
        let set = set.map(|(pointer, origin)| {
            let leaf = (pointer, origin.setter);
            let leaf = match self.setters.get(&leaf) {
                Some(known) => Pooled::Shared(Arc::clone(known)),
                None => Pooled::New(leaf),
            };
            (leaf, overrides(origin.overrode))
        });
        // A default overrides nothing.
        let defaults = defaults
            .iter()
            .map(|default| {
                let leaf = Pooled::Shared(Arc::clone(&default.setter));
                (leaf, overrides(Vec::new()))
            })
            .collect();
        by_pointer(set, defaults, pooled_pointer)
    }

    /// The provenance of pooled `leaves`, adding the parts it did not hold
    /// yet, for the configurations that have them too.
    pub(super) fn provenance(&mut self, leaves: Vec<PooledLeaf>) -> Provenance {
        // Not collected in place: the leaves' buffer is larger than a
        // provenance needs, and provenances are kept.
        let mut shared = Vec::with_capacity(leaves.len());
        shared.extend(leaves.into_iter().map(|(leaf, overrode)| {
            let leaf = match leaf {
                Pooled::Shared(known) => known,
                Pooled::New(leaf) => share(&mut self.setters, leaf),
            };
            let overrode = match overrode {
                Pooled::Shared(known) => known,
                Pooled::New(overrode) => share(&mut self.overrides, overrode),
            };
            (leaf, overrode)
        }));
        Provenance(shared)
    }
}

/// A part of a leaf's origin: the pool's copy, or one it does not hold.
pub(super) enum Pooled<T: ?Sized, Own> {
    Shared(Arc<T>),
    New(Own),
}

/// One leaf's origin, as [`Pool::pooled`] found it.
pub(super) type PooledLeaf = (
    Pooled<(String, Setter), (String, Setter)>,
    Pooled<[PolicyId], Vec<PolicyId>>,
);

/// The pointer of a pooled leaf.
fn pooled_pointer(leaf: &PooledLeaf) -> &str {
    match &leaf.0 {
        Pooled::Shared(known) => &known.0,
        Pooled::New(own) => &own.0,
    }
}

/// `first` and `second`, each in pointer order (`pointer` reads an item's),
/// as one list in pointer order.
pub(super) fn by_pointer<T>(
    first: impl Iterator<Item = T>,
    second: Vec<T>,
    pointer: impl Fn(&T) -> &str,
) -> Vec<T> {
    let mut all = Vec::with_capacity(first.size_hint().0 + second.len());
    let mut second = second.into_iter().peekable();
    for item in first {
        while let Some(before) = second.next_if(|next| pointer(next) < pointer(&item)) {
            all.push(before);
        }
        all.push(item);
    }
    all.extend(second);
    all
}

/// The pointer of a leaf and its value.
pub(super) fn leaf_pointer<'a>(leaf: &'a (&str, &Value)) -> &'a str {
    leaf.0
}

/// The copy of `part` in `set`, added if it is not there (another
/// configuration of the same batch may have added it since it was pooled).
fn share<T, Own>(set: &mut FxHashSet<Arc<T>>, part: Own) -> Arc<T>
where
    T: ?Sized + Eq + std::hash::Hash,
    Own: std::borrow::Borrow<T> + Into<Arc<T>>,
{
    if let Some(known) = set.get(part.borrow()) {
        return Arc::clone(known);
    }
    let part: Arc<T> = part.into();
    set.insert(Arc::clone(&part));
    part
}

/// What identifies a compiled value before it is built: the module and
/// every leaf's pointer and value. Texts are written with their length
/// before them, so that none runs into the next; each value as its JSON
/// text, ended by a NUL byte, which JSON text never holds.
pub(super) fn value_key<'l>(
    module: Option<&str>,
    leaves: impl ExactSizeIterator<Item = (&'l str, &'l Value)>,
) -> Vec<u8> {
    fn text(key: &mut Vec<u8>, text: &str) {
        key.extend_from_slice(&text.len().to_le_bytes());
        key.extend_from_slice(text.as_bytes());
    }
    let mut key = Vec::with_capacity(64 * leaves.len());
    match module {
        None => key.push(0),
        Some(module) => {
            key.push(1);
            text(&mut key, module);
        }
    }
    for (pointer, value) in leaves {
        text(&mut key, pointer);
        // Writing JSON into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut key, value);
        key.push(0);
    }
    key
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::{Pool, value_key};
    use crate::compile::merge::{Entry, Origin, Setter};

    fn origin(setter: usize) -> Origin {
        Origin {
            setter: Setter::Policy(setter),
            overrode: Vec::new(),
        }
    }

    /// The pointers and values of `leaves`, as a value's key reads them.
    fn values(
        leaves: &BTreeMap<String, Entry>,
    ) -> impl ExactSizeIterator<Item = (&str, &serde_json::Value)> {
        leaves
            .iter()
            .map(|(pointer, entry)| (pointer.as_str(), &entry.value))
    }

    fn leaves(entries: &[(&str, serde_json::Value, usize)]) -> BTreeMap<String, Entry> {
        entries
            .iter()
            .map(|(pointer, value, setter)| {
                (
                    (*pointer).to_owned(),
                    Entry {
                        value: value.clone(),
                        origin: origin(*setter),
                    },
                )
            })
            .collect()
    }

    impl Pool {
        fn provenance_of(&mut self, leaves: Vec<(String, Origin)>) -> super::Provenance {
            let pooled = self.pooled(leaves.into_iter(), &[]);
            self.provenance(pooled)
        }
    }

    #[test]
    fn a_value_is_known_by_its_module_and_leaves_not_by_who_set_them() {
        let set_by_some = leaves(&[("/p/a", json!(1), 0), ("/p/b", json!("x"), 1)]);
        let set_by_others = leaves(&[("/p/a", json!(1), 2), ("/p/b", json!("x"), 3)]);
        assert_eq!(
            value_key(Some("m"), values(&set_by_some)),
            value_key(Some("m"), values(&set_by_others))
        );
        assert_ne!(
            value_key(Some("m"), values(&set_by_some)),
            value_key(None, values(&set_by_some))
        );
        let other_value = leaves(&[("/p/a", json!(1), 0), ("/p/b", json!("y"), 1)]);
        assert_ne!(
            value_key(Some("m"), values(&set_by_some)),
            value_key(Some("m"), values(&other_value))
        );
        // A pointer and a value cannot be mistaken for each other.
        let comma_in_pointer = leaves(&[("/p/a,", json!(1), 0)]);
        let comma_in_value = leaves(&[("/p/a", json!(","), 0)]);
        assert_ne!(
            value_key(None, values(&comma_in_pointer)),
            value_key(None, values(&comma_in_value))
        );
        // Nor where one leaf ends and the next begins.
        let one = leaves(&[("/p/a", json!("x"), 0)]);
        let two = leaves(&[("/p", json!(1), 0), ("/p/a", json!("x"), 0)]);
        assert_ne!(value_key(None, values(&one)), value_key(None, values(&two)));
        assert_ne!(
            value_key(Some(""), values(&one)),
            value_key(None, values(&one))
        );
    }

    #[test]
    fn the_pool_shares_values_and_leaf_origins() {
        let mut pool = Pool::default();
        let first = pool.add_value(b"k".to_vec(), &serde_json::Map::new(), Vec::new());
        let again = pool.add_value(b"k".to_vec(), &serde_json::Map::new(), Vec::new());
        let other = pool.add_value(b"j".to_vec(), &serde_json::Map::new(), Vec::new());
        assert!(std::sync::Arc::ptr_eq(&first, &again));
        assert_eq!((first.id, other.id), (0, 1));
        assert!(pool.value(b"k").is_some() && pool.value(b"x").is_none());

        let one = pool.provenance_of(vec![("/a".to_owned(), origin(1))]);
        let two = pool.provenance_of(vec![
            ("/a".to_owned(), origin(1)),
            ("/b".to_owned(), origin(2)),
        ]);
        assert!(std::sync::Arc::ptr_eq(&one.0[0].0, &two.0[0].0));
        assert!(std::sync::Arc::ptr_eq(&one.0[0].1, &two.0[1].1));
    }

    #[test]
    fn a_value_is_written_as_serde_json_writes_it_with_each_property_found_in_it() {
        let value = json!({"b\"q": {"z": [1, "é"], "a": null}, "a": 2.5, "c": {}});
        let serde_json::Value::Object(value) = value else {
            unreachable!()
        };
        let desired = Pool::default().add_value(Vec::new(), &value, Vec::new());
        assert_eq!(desired.text, serde_json::to_string(&value).unwrap());
        let texts: Vec<&str> = (0..4).filter_map(|at| desired.property_text(at)).collect();
        let expected: Vec<String> = value.values().map(ToString::to_string).collect();
        assert_eq!(texts, expected);
    }

    #[test]
    fn a_pointer_is_explained_by_its_leaf_the_first_below_or_the_nearest_above() {
        let mut pool = Pool::default();
        let provenance = pool.provenance_of(vec![
            ("/a/b".to_owned(), origin(1)),
            ("/a/c/d".to_owned(), origin(2)),
            ("/e".to_owned(), origin(3)),
        ]);
        let explained = |pointer: &str| {
            provenance
                .explain(pointer)
                .map(|(at, origin)| (at.to_owned(), origin.setter.clone()))
        };
        assert_eq!(
            explained("/a/b"),
            Some(("/a/b".to_owned(), Setter::Policy(1)))
        );
        assert_eq!(
            explained("/a"),
            Some(("/a/b".to_owned(), Setter::Policy(1)))
        );
        assert_eq!(
            explained("/a/c"),
            Some(("/a/c/d".to_owned(), Setter::Policy(2)))
        );
        assert_eq!(
            explained("/e/f/g"),
            Some(("/e".to_owned(), Setter::Policy(3)))
        );
        assert_eq!(explained("/ab"), None);
        assert_eq!(explained("/z"), None);
        assert_eq!(provenance.setter("/a/c/d"), Some(&Setter::Policy(2)));
        assert_eq!(provenance.get("/a/c"), None);
    }
}
