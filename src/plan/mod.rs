//! Plan: what must change on each twin so the hub matches the policies.
//!
//! [`diff`] takes the compiled [`DesiredFleet`] and the live [`Fleet`] and
//! gives, per twin, a JSON merge patch, the etag it was computed against, and
//! a reason per changed leaf. It writes only properties twinops manages
//! (recorded in `tags.twinops`, [`ownership`]), prunes managed properties no
//! policy sets any more, restores drifted ones, completes `whole` objects,
//! and reports missing modules and twins whose devices lag behind. Pure;
//! order depends only on the input.

pub mod converge;
mod err;
pub mod ownership;
pub mod patch;
pub mod saved;
pub mod stream;

pub use converge::Convergence;
pub use err::PlanFileError;

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::compile::{Configuration, Desired, DesiredFleet, Setter, TwinTarget};
use crate::diag::SourceMap;
use crate::fleet::{Fleet, Twin, TwinFields};
use crate::hub::{HubIdentity, TwinId};
use crate::parallel::{self, PerThread};
use crate::schema::{SchemaSet, WriteMode};
use crate::validate::{PolicyId, PolicySet};

use ownership::{Ownership, TAG};
use patch::Patch;
use rustc_hash::FxHashMap;

/// What apply does to a twin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Create the module identity, then write its desired properties.
    Create,
    /// Change managed desired properties.
    Update,
    /// Only record ownership: the twin already holds what the policies say.
    Adopt,
    /// No policy targets the twin any more: remove what twinops wrote and
    /// its ownership tag.
    Release,
}

/// What happens to one leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// A leaf that is not there yet.
    Add,
    /// A leaf whose value changes.
    Update,
    /// A leaf that goes away.
    Remove,
}

/// Why a leaf changes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Reason {
    /// A policy sets it.
    Policy {
        /// The policy's name.
        policy: String,
        /// `file:line:col` of the value in the policy.
        source: String,
    },
    /// A schema default completes a `whole` object.
    Default {
        /// The schema's name.
        schema: String,
    },
    /// No policy sets this key of a managed object.
    Unset,
    /// No policy sets this managed property on this twin any more.
    Prune,
}

/// One changed leaf.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafChange {
    // Fields in alphabetical order: serialised as declared, a plan is then
    // byte for byte what its sorted JSON value gives (see `saved`).
    /// The value after apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// The live value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// Add, update or remove.
    pub op: Op,
    /// JSON pointer below `properties.desired`.
    pub path: String,
    /// Why.
    pub reason: Reason,
}

/// The planned change of one twin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TwinPlan {
    // Fields in alphabetical order (see `LeafChange`).
    /// What apply does.
    pub action: Action,
    /// Changed leaves, by path (shared by twins that change alike).
    pub changes: Arc<Vec<LeafChange>>,
    /// The device.
    pub device_id: String,
    /// Managed properties changed outside twinops, restored by this patch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drifted: Vec<String>,
    /// The live etag the patch was computed against (`None` for a module to create).
    pub etag: Option<String>,
    /// The module; absent for the device twin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    /// The JSON merge patch apply sends (shared by twins that change alike).
    pub patch: Arc<Patch>,
}

impl TwinPlan {
    /// The twin's address.
    #[must_use]
    pub fn id(&self) -> TwinId {
        TwinId {
            device_id: self.device_id.clone(),
            module_id: self.module_id.clone(),
        }
    }
}

/// Where a plan came from, and what it may be applied to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Origin {
    // Fields in alphabetical order (see `LeafChange`).
    /// The git commit the policies were read from (`--rev`), stamped into
    /// each changed twin's ownership tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The hub it was planned against; `None` for a snapshot file.
    pub hub: Option<HubIdentity>,
    /// Digest of the policies and schemas it was planned from.
    pub policy_set: String,
}

/// Everything that must change, and what is fine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    // Fields in alphabetical order (see `LeafChange`).
    /// Twins to change, by device then module.
    #[serde(deserialize_with = "shared_twins")]
    pub changes: Vec<TwinPlan>,
    /// Unchanged managed twins whose devices have not caught up, by class
    /// (written by name).
    #[serde(serialize_with = "by_name")]
    pub lagging: BTreeMap<Convergence, Vec<TwinId>>,
    /// Targeted module twins that do not exist and will not be created.
    pub missing_modules: Vec<TwinId>,
    /// Where the plan came from.
    pub origin: Origin,
    /// Targeted or managed twins that already match.
    pub unchanged: usize,
}

/// Twins read from a saved plan, sharing one copy of the changes and patch
/// of twins that change alike, as when they were planned.
fn shared_twins<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<TwinPlan>, D::Error> {
    struct Twins;
    impl<'de> serde::de::Visitor<'de> for Twins {
        type Value = Vec<TwinPlan>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of twin plans")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<TwinPlan>, A::Error> {
            let mut memo = Memo::default();
            let mut twins = Vec::new();
            while let Some(mut twin) = seq.next_element::<TwinPlan>()? {
                twin.changes = intern(&mut memo.changes, twin.changes);
                twin.patch = intern_patch(&mut memo.patches, &twin.patch);
                twins.push(twin);
            }
            Ok(twins)
        }
    }
    deserializer.deserialize_seq(Twins)
}

/// The lagging twins with their classes in the order of their names, as a
/// sorted JSON object has them.
fn by_name<S: serde::Serializer>(
    lagging: &BTreeMap<Convergence, Vec<TwinId>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut named: Vec<(String, &Vec<TwinId>)> = lagging
        .iter()
        .map(|(class, twins)| {
            let name = serde_json::to_value(class)
                .ok()
                .and_then(|name| name.as_str().map(str::to_owned))
                .unwrap_or_default();
            (name, twins)
        })
        .collect();
    named.sort();
    serializer.collect_map(named)
}

impl Plan {
    /// Twins with drifted properties.
    #[must_use]
    pub fn drifted(&self) -> usize {
        self.changes
            .iter()
            .filter(|twin| !twin.drifted.is_empty())
            .count()
    }
}

/// What plan needs to know besides policies and twins.
#[derive(Clone, Debug)]
pub struct Context {
    /// The plan's origin.
    pub origin: Origin,
    /// Whether the environment creates missing modules for every policy.
    pub create_modules: bool,
}

/// Plans every twin of `fleet` that a policy targets or twinops manages.
#[must_use]
pub fn diff(
    desired: &DesiredFleet,
    fleet: &Fleet,
    policies: &PolicySet,
    schemas: &SchemaSet,
    sources: &SourceMap,
    context: &Context,
) -> Plan {
    let targets: HashMap<(&str, Option<&str>), &TwinTarget> = desired
        .twins
        .iter()
        .map(|twin| ((twin.device_id.as_str(), twin.module_id.as_deref()), twin))
        .collect();
    let planner = Planner {
        configurations: &desired.configurations,
        policies,
        schemas,
        sources,
        context,
    };
    let memos = PerThread::<Memo>::new();
    let outcomes: Vec<Vec<Outcome>> = fleet
        .devices
        .par_iter()
        .map(|device| {
            memos.with(|memo| {
                let mut outcomes = Vec::new();
                for twin in std::iter::once(&device.twin).chain(device.modules.values()) {
                    let configuration = targets
                        .get(&(twin.device_id.as_str(), twin.module_id.as_deref()))
                        .map(|target| target.configuration);
                    outcomes.extend(planner.existing(twin, configuration, memo));
                }
                for target in targets_of(desired, device.id()).filter(|t| t.module_missing) {
                    outcomes.push(planner.missing(
                        &target.device_id,
                        target.module_id.as_deref(),
                        target.configuration,
                        memo,
                    ));
                }
                outcomes
            })
        })
        .collect();
    let mut plan = Plan::empty(context.origin.clone());
    for outcome in outcomes.into_iter().flatten() {
        plan.record(outcome);
    }
    plan
}

impl Plan {
    /// A plan with nothing in it yet.
    #[must_use]
    pub fn empty(origin: Origin) -> Self {
        Self {
            origin,
            changes: Vec::new(),
            unchanged: 0,
            missing_modules: Vec::new(),
            lagging: BTreeMap::new(),
        }
    }

    /// Adds one twin's outcome, in device order.
    fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Change(twin) => self.changes.push(*twin),
            Outcome::Unchanged(None | Some(Convergence::Converged), _) => self.unchanged += 1,
            Outcome::Unchanged(Some(class), id) => {
                self.unchanged += 1;
                self.lagging.entry(class).or_default().extend(id);
            }
            Outcome::Missing(id) => self.missing_modules.push(id),
        }
    }
}

/// The targets of one device (twins are sorted by device).
fn targets_of<'d>(
    desired: &'d DesiredFleet,
    device: &'d str,
) -> impl Iterator<Item = &'d TwinTarget> {
    let start = desired
        .twins
        .partition_point(|t| t.device_id.as_str() < device);
    desired
        .twins
        .iter()
        .skip(start)
        .take_while(move |t| t.device_id == device)
}

/// The part of a twin's plan that depends only on its configuration, its
/// live values and its recorded ownership.
struct Delta {
    desired_patch: Map<String, Value>,
    changes: Arc<Vec<LeafChange>>,
    drifted: Vec<String>,
    managed: BTreeMap<String, String>,
}

/// The copy of `value` already in `memo`, or `value`, remembered.
fn intern<T: Serialize>(memo: &mut parallel::Memo<Arc<T>>, value: Arc<T>) -> Arc<T> {
    match serde_json::to_string(&*value) {
        Ok(text) => intern_as(memo, &text, value),
        Err(_) => value,
    }
}

/// The copy of `patch` already in `memo`, or `patch`, remembered: a patch
/// is known by the text it holds.
fn intern_patch(memo: &mut parallel::Memo<Arc<Patch>>, patch: &Arc<Patch>) -> Arc<Patch> {
    intern_as(memo, patch.text().get(), Arc::clone(patch))
}

/// The copy of `value` that `memo` holds for `text`, or `value`, remembered.
fn intern_as<T>(memo: &mut parallel::Memo<Arc<T>>, text: &str, value: Arc<T>) -> Arc<T> {
    if let Some(known) = memo.get(text) {
        return Arc::clone(known);
    }
    memo.remember(text, Arc::clone(&value));
    value
}

/// What becomes of every twin with the same configuration, the same live
/// values of the properties concerned and the same ownership tag.
enum Shape {
    /// Nothing to write; the properties whose convergence is reported.
    Unchanged,
    /// A patch to send.
    Change {
        /// Tells the shapes one memo holds apart, from the first on.
        id: usize,
        action: Action,
        drifted: Vec<String>,
        changes: Arc<Vec<LeafChange>>,
        patch: Arc<Patch>,
    },
}

/// Plans already worked out, by what they depend on. One per thread;
/// twins that look alike are planned once.
#[derive(Default)]
pub(crate) struct Memo {
    /// Tags and live values seen → ids, which the three memos below key
    /// on (and start again with).
    texts: parallel::Texts,
    /// Ownership tag (id) → what it records.
    ownership: FxHashMap<usize, Option<Arc<Ownership>>>,
    /// Desired value, tag and live values (ids) → what becomes of the twin.
    shapes: FxHashMap<Box<[usize]>, Arc<Shape>>,
    /// Desired and reported values of the managed properties (ids) → how
    /// they compare, before timestamps are read.
    convergence: FxHashMap<Box<[usize]>, converge::Comparison>,
    /// Changed leaves and patches by their JSON text: twins that differ in
    /// what a plan depends on often still change alike, and then share one.
    changes: parallel::Memo<Arc<Vec<LeafChange>>>,
    patches: parallel::Memo<Arc<Patch>>,
    /// (Configuration, shape id) → the shape's changes with the reasons
    /// that configuration gives.
    reasons: FxHashMap<(usize, usize), Arc<Vec<LeafChange>>>,
    /// (Shape id, who set each changed leaf) → the same, shared by the
    /// configurations that agree on who set the leaves that change.
    by_setters: FxHashMap<ShapeSetters, Arc<Vec<LeafChange>>>,
    /// Policy → leaf → the reason naming the policy's line for it.
    policy_reasons: FxHashMap<PolicyId, FxHashMap<Box<str>, Reason>>,
    /// How many shapes with changes this memo has made: the last one's id.
    shapes_made: usize,
    /// Configuration → the changes of a module to create.
    creates: HashMap<usize, Arc<Vec<LeafChange>>>,
    /// Desired value → the patch of a module to create.
    create_patches: HashMap<usize, Arc<Patch>>,
    /// The ids of one twin's live values, and a memo key, reused.
    live: Vec<usize>,
    key: Vec<usize>,
    /// Desired value (id) → the tag and shape of the last twin planned
    /// that held every property as that value has it, and whose tag
    /// named no other: a twin like it needs no text ids or memo key.
    as_configured: Vec<Option<AsBefore>>,
    /// Desired value (id) → the digest of each of its properties, as an
    /// ownership tag records them.
    managed: FxHashMap<usize, Arc<BTreeMap<String, String>>>,
}

/// What became of a twin that held its configuration's value, by its tag.
struct AsBefore {
    tag: Option<Box<str>>,
    shape: Arc<Shape>,
}

/// A shape's id and who set each of its changed leaves (`None` for a leaf
/// that goes away, or that nobody set).
type ShapeSetters = (usize, Vec<Option<Setter>>);

/// Most entries a memo keyed by numbers (reasons, shapes, convergence)
/// holds before it starts again.
const MAX_ENTRIES: usize = 1 << 20;

/// The texts of a twin's properties, in order; `None` where it has none.
type LiveTexts<'t> = [Option<Cow<'t, str>>];

/// The id, in memo keys, of a live desired property whose text is the one
/// its configuration's value `desired` gives it: most twins already hold
/// what they should, and comparing with that one text is cheaper than
/// looking a text up among thousands. Texts' own ids stay far below.
fn as_configured(desired: usize) -> usize {
    (1 << 62) | desired
}

/// The id, in a memo key, of a managed property's live text that the key
/// already holds, because the configuration sets that property too.
const NAMED_ABOVE: usize = usize::MAX;

/// The id, in a convergence key, of a reported property whose text is the
/// desired text before it in the key (the device reports what it was told).
const AS_DESIRED: usize = usize::MAX;

impl Memo {
    /// `shape` with its id, and the shared copy of its changes and patch.
    fn interned(&mut self, shape: Shape) -> Shape {
        let Shape::Change {
            action,
            drifted,
            changes,
            patch,
            ..
        } = shape
        else {
            return shape;
        };
        let changes = intern(&mut self.changes, changes);
        let patch = intern_patch(&mut self.patches, &patch);
        self.shapes_made += 1;
        Shape::Change {
            id: self.shapes_made,
            action,
            drifted,
            changes,
            patch,
        }
    }

    /// What the tag with text `tag` and id `id` records.
    fn ownership(&mut self, tag: Option<&str>, id: usize) -> Option<Arc<Ownership>> {
        let tag = tag?;
        if let Some(known) = self.ownership.get(&id) {
            return known.clone();
        }
        let read = serde_json::from_str::<Value>(tag)
            .ok()
            .and_then(|tag| Ownership::from_tag(&tag))
            .map(Arc::new);
        self.ownership.insert(id, read.clone());
        read
    }

    /// The digest of each property of `desired`, worked out once: the
    /// digest of a value is that of its compact text, which `desired`
    /// holds.
    fn managed(&mut self, desired: &Desired) -> Arc<BTreeMap<String, String>> {
        let digests = self.managed.entry(desired.id).or_insert_with(|| {
            let digests = desired
                .properties
                .iter()
                .enumerate()
                .map(|(at, property)| {
                    let text = desired.property_text(at).unwrap_or_default();
                    (property.clone(), ownership::digest_text(text))
                })
                .collect();
            Arc::new(digests)
        });
        Arc::clone(digests)
    }

    /// Remembers `shape` for the next twin with desired value `desired`
    /// and this `tag` that holds every property as the value has it.
    fn remember_as_configured(&mut self, desired: usize, tag: Option<&str>, shape: &Arc<Shape>) {
        if self.as_configured.len() <= desired {
            self.as_configured.resize_with(desired + 1, || None);
        }
        if let Some(slot) = self.as_configured.get_mut(desired)
            && slot
                .as_ref()
                .is_none_or(|before| before.tag.as_deref() != tag)
        {
            *slot = Some(AsBefore {
                tag: tag.map(Box::from),
                shape: Arc::clone(shape),
            });
        }
    }

    /// Starts the memos keyed by text ids again once the texts are full:
    /// called before a twin's texts get their ids.
    fn bound(&mut self) {
        if self.texts.is_full() {
            self.texts.clear();
            self.ownership.clear();
            self.shapes.clear();
            self.convergence.clear();
        }
        if self.shapes.len() >= MAX_ENTRIES {
            self.shapes.clear();
        }
        if self.convergence.len() >= MAX_ENTRIES {
            self.convergence.clear();
        }
    }
}

pub(crate) enum Outcome {
    Change(Box<TwinPlan>),
    /// Nothing to write; the twin's convergence, and its address when it
    /// is lagging.
    Unchanged(Option<Convergence>, Option<TwinId>),
    Missing(TwinId),
}

pub(crate) struct Planner<'a> {
    pub(crate) configurations: &'a [Configuration],
    pub(crate) policies: &'a PolicySet,
    pub(crate) schemas: &'a SchemaSet,
    pub(crate) sources: &'a SourceMap,
    pub(crate) context: &'a Context,
}

const DESIRED: [&str; 2] = ["properties", "desired"];

impl Planner<'_> {
    /// The plan of a twin that exists, given its configuration (an index
    /// into the configurations); nothing for one twinops neither targets
    /// nor manages.
    pub(crate) fn existing(
        &self,
        twin: &impl TwinFields,
        configuration: Option<usize>,
        memo: &mut Memo,
    ) -> Option<Outcome> {
        let configured = configuration.and_then(|at| Some((at, self.configurations.get(at)?)));
        let tag = twin.text(&["tags", TAG]);
        if let Some(outcome) = self.as_before(twin, configured, tag.as_deref(), memo) {
            return Some(outcome);
        }
        memo.bound();
        let tag_id = memo.texts.id(tag.as_deref());
        let recorded = memo.ownership(tag.as_deref(), tag_id);
        if configured.is_none() && recorded.is_none() {
            return None;
        }
        let properties = configured.map_or(&[][..], |(_, c)| c.desired.properties.as_slice());
        let owned = recorded.clone().unwrap_or_default();

        // Twins with the same desired value, the same live values of the
        // properties concerned and the same ownership tag get the same plan
        // (but for who set each leaf): work it out once. The value and the
        // tag decide which properties those are.
        let mut live = std::mem::take(&mut memo.live);
        live.clear();
        let mut live_texts = Vec::with_capacity(properties.len());
        for (at, property) in properties.iter().enumerate() {
            let text = twin.text(&["properties", "desired", property.as_str()]);
            let configured_text = configured.and_then(|(_, c)| c.desired.property_text(at));
            live.push(match (text.as_deref(), configured) {
                (Some(text), Some((_, c))) if configured_text == Some(text) => {
                    as_configured(c.desired.id)
                }
                (text, _) => memo.texts.id(text),
            });
            live_texts.push(text);
        }
        // A managed property the configuration also sets was named above:
        // the value and the tag say where, so its text is not read again.
        for property in owned.managed.keys() {
            if properties.contains(property) {
                live.push(NAMED_ABOVE);
                continue;
            }
            let text = twin.text(&["properties", "desired", property.as_str()]);
            live.push(memo.texts.id(text.as_deref()));
        }
        let mut key = std::mem::take(&mut memo.key);
        key.clear();
        key.push(configured.map_or(0, |(_, c)| c.desired.id + 1));
        key.push(tag_id);
        key.extend_from_slice(&live);
        let shape = if let Some(shape) = memo.shapes.get(key.as_slice()) {
            Arc::clone(shape)
        } else {
            let current = |property: &str| twin.value(&["properties", "desired", property]);
            let old_tag = tag
                .as_deref()
                .and_then(|tag| serde_json::from_str::<Value>(tag).ok());
            let wanted = configured
                .map(|(_, c)| c.desired.value())
                .unwrap_or_default();
            let managed = configured
                .map(|(_, c)| memo.managed(&c.desired))
                .unwrap_or_default();
            let shape = self.shape(
                configured.map(|(_, c)| c),
                (&wanted, &managed),
                (recorded.as_deref(), old_tag.as_ref()),
                &current,
            );
            let shape = Arc::new(memo.interned(shape));
            memo.shapes
                .insert(key.as_slice().into(), Arc::clone(&shape));
            shape
        };
        if let Some((_, c)) = configured {
            // Every property as configured and no other managed: the next
            // twin with this value and tag gets the same key.
            let (desired, others) = live.split_at(properties.len().min(live.len()));
            if desired.iter().all(|&id| id == as_configured(c.desired.id))
                && others.iter().all(|&id| id == NAMED_ABOVE)
            {
                memo.remember_as_configured(c.desired.id, tag.as_deref(), &shape);
            }
        }
        memo.key = key;
        let desired = live.get(..properties.len()).unwrap_or_default();
        let outcome = self.outcome(
            twin,
            configured,
            &shape,
            (properties, desired, &live_texts),
            memo,
        );
        memo.live = live;
        Some(outcome)
    }

    /// The plan of a twin that holds every property its configuration's
    /// value sets as the value has it, and the tag that a twin with that
    /// value held when it was planned: its memo key would be that twin's,
    /// so what became of that twin becomes of this one. `None` otherwise.
    fn as_before(
        &self,
        twin: &impl TwinFields,
        configured: Option<(usize, &Configuration)>,
        tag: Option<&str>,
        memo: &mut Memo,
    ) -> Option<Outcome> {
        let (_, configuration) = configured?;
        let desired = &configuration.desired;
        let before = memo.as_configured.get(desired.id)?.as_ref()?;
        if before.tag.as_deref() != tag {
            return None;
        }
        let shape = Arc::clone(&before.shape);
        let properties = desired.properties.as_slice();
        let mut texts = Vec::with_capacity(properties.len());
        for (at, property) in properties.iter().enumerate() {
            let text = twin.text(&["properties", "desired", property.as_str()]);
            match (text.as_deref(), desired.property_text(at)) {
                (Some(live), Some(configured)) if live == configured => texts.push(text),
                _ => return None,
            }
        }
        let mut live = std::mem::take(&mut memo.live);
        live.clear();
        live.resize(properties.len(), as_configured(desired.id));
        let outcome = self.outcome(twin, configured, &shape, (properties, &live, &texts), memo);
        memo.live = live;
        Some(outcome)
    }

    /// What `shape` comes to for `twin`, whose live desired `properties`
    /// have these ids and texts.
    fn outcome(
        &self,
        twin: &impl TwinFields,
        configured: Option<(usize, &Configuration)>,
        shape: &Shape,
        (properties, desired, desired_texts): (&[String], &[usize], &LiveTexts<'_>),
        memo: &mut Memo,
    ) -> Outcome {
        let id = || TwinId {
            device_id: twin.device_id().to_owned(),
            module_id: twin.module_id().map(str::to_owned),
        };
        match shape {
            Shape::Unchanged => {
                let class = (!properties.is_empty()).then(|| {
                    let mut key = std::mem::take(&mut memo.key);
                    let class = Self::convergence(
                        twin,
                        (properties, desired, desired_texts),
                        &mut key,
                        memo,
                    );
                    memo.key = key;
                    class
                });
                // Only a lagging twin is named in the plan.
                let named = class.is_some_and(|class| class != Convergence::Converged);
                Outcome::Unchanged(class, named.then(id))
            }
            Shape::Change {
                id: shape,
                action,
                drifted,
                changes,
                patch,
            } => {
                let changes = self.reasoned(configured, *shape, changes, memo);
                let id = id();
                Outcome::Change(Box::new(TwinPlan {
                    device_id: id.device_id,
                    module_id: id.module_id,
                    action: *action,
                    etag: twin.etag().map(str::to_owned),
                    drifted: drifted.clone(),
                    changes,
                    patch: Arc::clone(patch),
                }))
            }
        }
    }

    /// `changes`, worked out for a twin whose configuration compiled to the
    /// same value, with the reasons `configuration` gives for its leaves.
    fn reasoned(
        &self,
        configuration: Option<(usize, &Configuration)>,
        shape: usize,
        changes: &Arc<Vec<LeafChange>>,
        memo: &mut Memo,
    ) -> Arc<Vec<LeafChange>> {
        let Some((at, configuration)) = configuration else {
            return Arc::clone(changes);
        };
        if let Some(known) = memo.reasons.get(&(at, shape)) {
            return Arc::clone(known);
        }
        // Leaves with a value after apply are set by the configuration;
        // the others are unset or pruned, whoever configures the twin. Which
        // leaves those are is the shape's, so the shape and who set each
        // leaf decide the reasons: configurations that agree share a list.
        let setters: Vec<Option<Setter>> = changes
            .iter()
            .map(|leaf| {
                leaf.after
                    .as_ref()
                    .and_then(|_| configuration.provenance.setter(&leaf.path).cloned())
            })
            .collect();
        if memo.by_setters.len() >= MAX_ENTRIES {
            memo.by_setters.clear();
        }
        let reasoned = match memo.by_setters.entry((shape, setters)) {
            Entry::Occupied(known) => Arc::clone(known.get()),
            Entry::Vacant(new) => {
                let reasons: Vec<Option<Reason>> = changes
                    .iter()
                    .zip(&new.key().1)
                    .map(|(leaf, setter)| {
                        leaf.after.is_some().then(|| {
                            self.remembered_reason(
                                setter.as_ref(),
                                &leaf.path,
                                &mut memo.policy_reasons,
                            )
                        })
                    })
                    .collect();
                let same = changes.iter().zip(&reasons).all(|(leaf, reason)| {
                    reason.as_ref().is_none_or(|reason| *reason == leaf.reason)
                });
                let reasoned = if same {
                    Arc::clone(changes)
                } else {
                    Arc::new(
                        changes
                            .iter()
                            .zip(reasons)
                            .map(|(leaf, reason)| LeafChange {
                                reason: reason.unwrap_or_else(|| leaf.reason.clone()),
                                ..leaf.clone()
                            })
                            .collect(),
                    )
                };
                Arc::clone(new.insert(reasoned))
            }
        };
        if memo.reasons.len() >= MAX_ENTRIES {
            memo.reasons.clear();
        }
        memo.reasons.insert((at, shape), Arc::clone(&reasoned));
        reasoned
    }

    /// How an unchanged twin's device reports the `wanted` properties:
    /// the values are compared once per distinct pair of desired and
    /// reported values; only timestamps are read per twin, where values
    /// disagree.
    fn convergence(
        twin: &impl TwinFields,
        (properties, desired, desired_texts): (&[String], &[usize], &LiveTexts<'_>),
        key: &mut Vec<usize>,
        memo: &mut Memo,
    ) -> Convergence {
        let managed: Vec<&String> = properties.iter().collect();
        key.clear();
        key.push(usize::from(twin.is_object(&DESIRED)));
        for ((property, &desired), desired_text) in managed.iter().zip(desired).zip(desired_texts) {
            let reported = twin.text(&["properties", "reported", property.as_str()]);
            key.push(desired);
            key.push(match reported.as_deref() {
                Some(reported) if desired_text.as_deref() == Some(reported) => AS_DESIRED,
                reported => memo.texts.id(reported),
            });
        }
        if let Some(known) = memo.convergence.get(key.as_slice()) {
            return known.judge(twin, &managed);
        }
        let comparison = converge::compare(twin, &managed);
        let class = comparison.judge(twin, &managed);
        memo.convergence.insert(key.as_slice().into(), comparison);
        class
    }

    /// What becomes of a twin: its patch, or nothing to write.
    fn shape<'v>(
        &self,
        configuration: Option<&Configuration>,
        (wanted, managed): (&Map<String, Value>, &BTreeMap<String, String>),
        (recorded, old_tag): (Option<&Ownership>, Option<&Value>),
        current: &dyn Fn(&str) -> Option<Cow<'v, Value>>,
    ) -> Shape {
        let owned = recorded.cloned().unwrap_or_default();
        let delta = self.delta(configuration, (wanted, managed), &owned, current);
        let new_ownership = (!wanted.is_empty()).then(|| Ownership {
            managed: delta.managed.clone(),
            // The stamp names the policy set that last changed what twinops
            // manages here; it moves only when that changes.
            // So does the commit stamp.
            ..if delta.desired_patch.is_empty() && owned.managed == delta.managed {
                Ownership {
                    policy_set: owned.policy_set.clone(),
                    commit: owned.commit.clone(),
                    ..Ownership::default()
                }
            } else {
                Ownership {
                    policy_set: Some(self.context.origin.policy_set.clone()),
                    commit: self.context.origin.commit.clone(),
                    ..Ownership::default()
                }
            }
        });
        let ownership_changes = match &new_ownership {
            Some(new) => Some(new) != recorded,
            None => old_tag.is_some(),
        };
        if delta.desired_patch.is_empty() && !ownership_changes {
            return Shape::Unchanged;
        }
        let tag_patch = match &new_ownership {
            Some(new) => patch::merge_diff(old_tag, &new.to_tag()),
            None => old_tag.is_some().then_some(Value::Null),
        };
        let action = if wanted.is_empty() {
            Action::Release
        } else if delta.desired_patch.is_empty() {
            Action::Adopt
        } else {
            Action::Update
        };
        Shape::Change {
            id: 0,
            action,
            drifted: delta.drifted,
            changes: delta.changes,
            patch: Arc::new(Patch::new(&assemble(delta.desired_patch, tag_patch))),
        }
    }

    /// What must change on a twin's desired properties, and the digests of
    /// what twinops then manages there.
    fn delta<'v>(
        &self,
        configuration: Option<&Configuration>,
        (wanted, managed): (&Map<String, Value>, &BTreeMap<String, String>),
        owned: &Ownership,
        current: &dyn Fn(&str) -> Option<Cow<'v, Value>>,
    ) -> Delta {
        let mut desired_patch = Map::new();
        let mut changes = Vec::new();
        let mut drifted = Vec::new();
        for (property, value) in wanted {
            let live = current(property);
            let live = live.as_deref();
            if live == Some(value) {
                continue;
            }
            if let (Some(recorded), Some(live)) = (owned.managed.get(property), live)
                && *recorded != ownership::digest(live)
            {
                drifted.push(property.clone());
            }
            let change = if self.writes_whole(configuration, property) {
                patch::whole(live, value)
            } else {
                patch::merge_diff(live, value).unwrap_or(Value::Null)
            };
            desired_patch.insert(property.clone(), change);
            changes.extend(self.leaf_changes(property, live, Some(value), configuration));
        }
        for property in owned.managed.keys().filter(|p| !wanted.contains_key(*p)) {
            if let Some(live) = current(property) {
                desired_patch.insert(property.clone(), Value::Null);
                changes.extend(self.leaf_changes(property, Some(&live), None, None));
            }
        }
        drifted.sort();
        Delta {
            desired_patch,
            changes: Arc::new(changes),
            drifted,
            managed: managed.clone(),
        }
    }

    /// A targeted module twin that does not exist.
    pub(crate) fn missing(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        configuration: usize,
        memo: &mut Memo,
    ) -> Outcome {
        let id = TwinId {
            device_id: device_id.to_owned(),
            module_id: module_id.map(str::to_owned),
        };
        let Some(configured) = self.configurations.get(configuration) else {
            return Outcome::Missing(id);
        };
        if !(configured.create_modules || self.context.create_modules) {
            return Outcome::Missing(id);
        }
        let desired = &configured.desired;
        let patch = if let Some(known) = memo.create_patches.get(&desired.id) {
            Arc::clone(known)
        } else {
            let ownership = Ownership {
                managed: BTreeMap::clone(&memo.managed(desired)),
                policy_set: Some(self.context.origin.policy_set.clone()),
                commit: self.context.origin.commit.clone(),
            };
            let patch = Arc::new(Patch::new(&assemble(
                desired.value(),
                Some(ownership.to_tag()),
            )));
            memo.create_patches.insert(desired.id, Arc::clone(&patch));
            patch
        };
        let changes = memo
            .creates
            .entry(configuration)
            .or_insert_with(|| {
                let mut changes = Vec::new();
                for (property, value) in &desired.value() {
                    changes.extend(self.leaf_changes(
                        property,
                        None,
                        Some(value),
                        Some(configured),
                    ));
                }
                Arc::new(changes)
            })
            .clone();
        Outcome::Change(Box::new(TwinPlan {
            device_id: id.device_id,
            module_id: id.module_id,
            action: Action::Create,
            etag: None,
            drifted: Vec::new(),
            changes,
            patch,
        }))
    }

    fn writes_whole(&self, configuration: Option<&Configuration>, property: &str) -> bool {
        let module = configuration.and_then(|c| c.module.as_deref());
        self.schemas
            .governing(module, property)
            .is_some_and(|schema| schema.property.is_some() && schema.write == WriteMode::Whole)
    }

    /// The leaves of one property that change from `before` to `after`.
    fn leaf_changes(
        &self,
        property: &str,
        before: Option<&Value>,
        after: Option<&Value>,
        configuration: Option<&Configuration>,
    ) -> Vec<LeafChange> {
        let base = crate::load::join_pointer("", property);
        patch::changed_leaves(before, after, &base)
            .into_iter()
            .filter_map(|(path, was, will)| {
                let op = match (was, will) {
                    (None, Some(_)) => Op::Add,
                    (Some(_), Some(_)) => Op::Update,
                    (Some(_), None) => Op::Remove,
                    (None, None) => return None,
                };
                let reason = match (will, configuration) {
                    (Some(_), Some(configuration)) => {
                        self.reason(configuration.provenance.setter(&path), &path)
                    }
                    (None, Some(_)) => Reason::Unset,
                    _ => Reason::Prune,
                };
                Some(LeafChange {
                    path,
                    op,
                    before: was.cloned(),
                    after: will.cloned(),
                    reason,
                })
            })
            .collect()
    }

    /// [`reason`](Self::reason), with a policy's reasons remembered in
    /// `known`: each names a place in a file, worked out once.
    fn remembered_reason(
        &self,
        setter: Option<&Setter>,
        path: &str,
        known: &mut FxHashMap<PolicyId, FxHashMap<Box<str>, Reason>>,
    ) -> Reason {
        let Some(Setter::Policy(id)) = setter else {
            return self.reason(setter, path);
        };
        let known = known.entry(*id).or_default();
        if let Some(reason) = known.get(path) {
            return reason.clone();
        }
        let reason = self.reason(setter, path);
        known.insert(path.into(), reason.clone());
        reason
    }

    /// Why the leaf at `path` gets its value, given who set it.
    fn reason(&self, setter: Option<&Setter>, path: &str) -> Reason {
        match setter {
            Some(Setter::Policy(id)) => {
                self.policies
                    .get(*id)
                    .map_or(Reason::Unset, |policy| Reason::Policy {
                        policy: policy.name.clone(),
                        source: self.sources.describe(policy.leaf_span(path)),
                    })
            }
            Some(Setter::Default(schema)) => Reason::Default {
                schema: schema.clone(),
            },
            None => Reason::Unset,
        }
    }
}

/// `fleet` as it would be once `plan` is applied: each planned patch merged
/// into its twin (a module to create made first, empty). What a change of
/// policies does is then the plan of the new policies against this fleet.
#[must_use]
pub fn applied(plan: &Plan, fleet: &Fleet) -> Fleet {
    let mut fleet = fleet.clone();
    for twin in &plan.changes {
        let Ok(at) = fleet
            .devices
            .binary_search_by(|device| device.id().cmp(&twin.device_id))
        else {
            continue;
        };
        let Some(device) = fleet.devices.get_mut(at) else {
            continue;
        };
        let target = match &twin.module_id {
            None => &mut device.twin,
            Some(module) => device
                .modules
                .entry(module.clone())
                .or_insert_with(|| Twin {
                    device_id: twin.device_id.clone(),
                    module_id: Some(module.clone()),
                    json: json!({
                        "deviceId": twin.device_id,
                        "moduleId": module,
                        "tags": {},
                        "properties": {"desired": {}, "reported": {}},
                    }),
                }),
        };
        patch::merge(&mut target.json, &twin.patch.value());
    }
    fleet
}

/// `{"tags": {"twinops": …}, "properties": {"desired": …}}`, leaving out
/// what does not change.
fn assemble(desired: Map<String, Value>, tag: Option<Value>) -> Value {
    let mut patch = Map::new();
    if let Some(tag) = tag {
        patch.insert("tags".to_owned(), json!({ TAG: tag }));
    }
    if !desired.is_empty() {
        let mut properties = Map::new();
        properties.insert("desired".to_owned(), Value::Object(desired));
        patch.insert("properties".to_owned(), Value::Object(properties));
    }
    Value::Object(patch)
}

/// A digest of everything a plan is computed from: every policy (name,
/// priority, target, module, `createModules`, desired) and every schema.
#[must_use]
pub fn policy_set_digest(policies: &PolicySet, schemas: &SchemaSet) -> String {
    let policies: Vec<Value> = policies
        .policies
        .iter()
        .map(|policy| {
            json!([
                policy.name,
                policy.priority,
                policy.target.text,
                policy.module,
                policy.create_modules,
                policy.desired
            ])
        })
        .collect();
    let schemas: Vec<&Value> = schemas.iter().map(|schema| &schema.json).collect();
    ownership::digest(&json!([policies, schemas]))
}
