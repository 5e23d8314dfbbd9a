//! Audit: what each commit did to the fleet, and who set each value a
//! device receives.
//!
//! [`effect`] compares two compilations of one fleet (a commit's and its
//! parent's) by distinct pair of configurations, so a history over a large
//! fleet costs one compile per commit and one comparison per pair.
//! [`lines`] lists a device's compiled leaves with the policy line that set
//! each; the command joins them to `git blame`. Pure.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::compile::{DesiredFleet, Setter};
use crate::diag::SourceMap;
use crate::fleet::Device;
use crate::gitops::CommitInfo;
use crate::gitops::preview;
use crate::plan::patch;
use crate::validate::PolicySet;

/// What a change of policies did to a fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Effect {
    /// Twins whose compiled desired properties changed.
    pub twins_changed: usize,
    /// Leaves added, changed or removed, over all twins.
    pub leaves_changed: usize,
    /// Twins that entered a policy's target (one per policy).
    pub entered: usize,
    /// Twins that left a policy's target (one per policy).
    pub left: usize,
    /// With a device: its twins' changed leaves, `twin: pointer`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_leaves: Vec<String>,
}

impl Effect {
    /// Whether the change did anything to the fleet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.twins_changed == 0 && self.entered == 0 && self.left == 0
    }
}

/// One commit of the history and its effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The commit.
    pub commit: CommitInfo,
    /// What it did.
    pub effect: Effect,
    /// Errors its policies have over the fleet.
    pub errors: usize,
}

/// The configuration of every targeted twin that exists (a missing module
/// is not written, so it does not count), keyed `device[/module]`.
fn by_twin(desired: &DesiredFleet) -> BTreeMap<String, usize> {
    desired
        .twins
        .iter()
        .filter(|twin| !twin.module_missing)
        .map(|twin| {
            let id = match &twin.module_id {
                Some(module) => format!("{}/{module}", twin.device_id),
                None => twin.device_id.clone(),
            };
            (id, twin.configuration)
        })
        .collect()
}

/// The leaves that differ between two desired objects.
fn changed_leaves(
    before: Option<&Map<String, Value>>,
    after: Option<&Map<String, Value>>,
) -> Vec<String> {
    let whole = |desired: Option<&Map<String, Value>>| desired.cloned().map(Value::Object);
    let (before, after) = (whole(before), whole(after));
    patch::changed_leaves(before.as_ref(), after.as_ref(), "")
        .into_iter()
        .map(|(pointer, _, _)| pointer)
        .collect()
}

/// What going from `before` to `after` (two compilations of one fleet) does;
/// with `device`, its changed leaves too.
#[must_use]
pub fn effect(
    before: (&DesiredFleet, &PolicySet),
    after: (&DesiredFleet, &PolicySet),
    device: Option<&str>,
) -> Effect {
    let (was, is) = (by_twin(before.0), by_twin(after.0));
    let mut pair_leaves: HashMap<(Option<usize>, Option<usize>), Vec<String>> = HashMap::new();
    let mut effect = Effect::default();
    let twins: std::collections::BTreeSet<&String> = was.keys().chain(is.keys()).collect();
    for twin in twins {
        let pair = (was.get(twin).copied(), is.get(twin).copied());
        let leaves = pair_leaves.entry(pair).or_insert_with(|| {
            let was = pair
                .0
                .and_then(|at| before.0.configurations.get(at))
                .map(|c| c.desired.value());
            let is = pair
                .1
                .and_then(|at| after.0.configurations.get(at))
                .map(|c| c.desired.value());
            changed_leaves(was.as_ref(), is.as_ref())
        });
        if leaves.is_empty() {
            continue;
        }
        effect.twins_changed += 1;
        effect.leaves_changed += leaves.len();
        let of_device = device.is_some_and(|device| {
            twin == device
                || twin
                    .strip_prefix(device)
                    .is_some_and(|rest| rest.starts_with('/'))
        });
        if of_device {
            effect
                .device_leaves
                .extend(leaves.iter().map(|leaf| format!("{twin}: {leaf}")));
        }
    }
    for change in preview::targets(before.0, before.1, after.0, after.1) {
        effect.entered += change.entered.len();
        effect.left += change.left.len();
    }
    effect
}

/// One leaf a device's twin receives, and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    /// `device` or `device/module`.
    pub twin: String,
    /// JSON pointer below `properties.desired`.
    pub path: String,
    /// The compiled value.
    pub value: Value,
    /// The policy that set it, or `default of SCHEMA`.
    pub setter: String,
    /// `file` and 1-based `line` of the value in the policy, for a policy.
    pub file: Option<String>,
    /// See `file`.
    pub line: Option<usize>,
    /// Lower-priority policies it overrode, nearest first.
    pub overrode: Vec<String>,
    /// The live twin's value there, when the twin exists.
    pub live: Option<Value>,
    /// Whether the live twin holds the compiled value.
    pub live_matches: bool,
    /// The commit that last changed the policy line (`git blame`).
    pub commit: Option<CommitInfo>,
}

/// Every compiled leaf of `device`'s twins, sorted by twin and path, with
/// the policy line that set it and the live value; `commit` is left for the
/// caller to fill from `git blame`.
#[must_use]
pub fn lines(
    desired: &DesiredFleet,
    policies: &PolicySet,
    sources: &SourceMap,
    device: &Device,
) -> Vec<Line> {
    let mut lines = Vec::new();
    for twin in desired.twins.iter().filter(|t| t.device_id == device.id()) {
        let Some(configuration) = desired.configuration(twin) else {
            continue;
        };
        let live_twin = match &twin.module_id {
            Some(module) => device.modules.get(module),
            None => Some(&device.twin),
        };
        let live_desired = live_twin.and_then(|t| t.json.pointer("/properties/desired"));
        let shown = match &twin.module_id {
            Some(module) => format!("{}/{module}", twin.device_id),
            None => twin.device_id.clone(),
        };
        let leaves = patch::leaves(Some(&Value::Object(configuration.desired.value())), "");
        for (path, value) in leaves {
            let origin = configuration.provenance.get(&path);
            let (setter, file, line) = match origin.as_ref().map(|origin| &origin.setter) {
                Some(Setter::Policy(id)) => policies.get(*id).map_or_else(
                    || ("?".to_owned(), None, None),
                    |policy| {
                        let span = policy.leaf_span(&path);
                        let (file, line) = sources.get(span.file).map_or((None, None), |file| {
                            (
                                Some(file.path.clone()),
                                Some(file.location(span.start).line),
                            )
                        });
                        (policy.name.clone(), file, line)
                    },
                ),
                Some(Setter::Default(schema)) => (format!("default of {schema}"), None, None),
                None => ("?".to_owned(), None, None),
            };
            let overrode = origin.map_or_else(Vec::new, |origin| {
                origin
                    .overrode
                    .iter()
                    .filter_map(|id| policies.get(*id).map(|policy| policy.name.clone()))
                    .collect()
            });
            let current = live_desired
                .and_then(|desired| desired.pointer(&path))
                .cloned();
            lines.push(Line {
                twin: shown.clone(),
                live_matches: current.as_ref() == Some(&value),
                path,
                value,
                setter,
                file,
                line,
                overrode,
                live: current,
                commit: None,
            });
        }
    }
    lines
}
