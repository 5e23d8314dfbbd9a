//! The pull-request preview: what a change of policies does to a fleet.
//!
//! The change itself is a [`Plan`]: the head's policies planned against the
//! fleet as it would be once the base's policies were applied
//! ([`crate::plan::applied`]), so every changed leaf carries the head's
//! policy line, and twins that change identically group as in any plan.
//! Beside it: devices entering and leaving each policy's target
//! ([`targets`]), and errors the change brings or resolves ([`errors`]).
//! Pure.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::compile::DesiredFleet;
use crate::diag::{Diagnostic, Severity, SourceMap};
use crate::gitops::CommitInfo;
use crate::plan::Plan;
use crate::validate::PolicySet;

/// Devices (or module twins) a change brings into or takes out of one
/// policy's target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetChange {
    /// The policy.
    pub policy: String,
    /// Twins it targets at the head and not at the base.
    pub entered: Vec<String>,
    /// Twins it targeted at the base and not at the head.
    pub left: Vec<String>,
}

/// The live plan of the head, when an environment was reachable.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Live {
    /// The plan against the environment's hub.
    Planned {
        /// The environment.
        environment: String,
        /// The plan.
        plan: Plan,
    },
    /// Why there is none.
    Skipped {
        /// The environment.
        environment: String,
        /// What stopped it.
        reason: String,
    },
}

/// Everything a pull-request comment says.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    /// The merge base.
    pub base: CommitInfo,
    /// The head.
    pub head: CommitInfo,
    /// The head's plan against the fleet as the base leaves it.
    pub change: Plan,
    /// Target membership changes, by policy name.
    pub targets: Vec<TargetChange>,
    /// Errors at the head that the base does not have.
    pub new_errors: Vec<String>,
    /// Errors at the base that the head no longer has.
    pub resolved_errors: Vec<String>,
    /// The head against the live hub.
    pub live: Live,
}

/// Per policy, the twins that enter or leave its target between two
/// compilations of one fleet; policies whose targets do not move are left
/// out. Sorted by policy name, twins by id.
#[must_use]
pub fn targets(
    base: &DesiredFleet,
    base_policies: &PolicySet,
    head: &DesiredFleet,
    head_policies: &PolicySet,
) -> Vec<TargetChange> {
    let base = members(base, base_policies);
    let head = members(head, head_policies);
    let empty = BTreeSet::new();
    let names: BTreeSet<&String> = base.keys().chain(head.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let was = base.get(name).unwrap_or(&empty);
            let is = head.get(name).unwrap_or(&empty);
            let change = TargetChange {
                policy: name.clone(),
                entered: is.difference(was).cloned().collect(),
                left: was.difference(is).cloned().collect(),
            };
            (!change.entered.is_empty() || !change.left.is_empty()).then_some(change)
        })
        .collect()
}

/// Per policy name, the twins it targets.
fn members(desired: &DesiredFleet, policies: &PolicySet) -> BTreeMap<String, BTreeSet<String>> {
    let mut members: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for twin in &desired.twins {
        let Some(configuration) = desired.configuration(twin) else {
            continue;
        };
        let shown = match &twin.module_id {
            Some(module) => format!("{}/{module}", twin.device_id),
            None => twin.device_id.clone(),
        };
        for id in &configuration.policies {
            if let Some(policy) = policies.get(*id) {
                members
                    .entry(policy.name.clone())
                    .or_default()
                    .insert(shown.clone());
            }
        }
    }
    members
}

/// Errors the head has and the base has not (`new`), and the reverse
/// (`resolved`), each as `code: message (where)`. Errors are matched by
/// code and message, not position, since an edit moves lines.
#[must_use]
pub fn errors(
    base: &[Diagnostic],
    head: &[Diagnostic],
    sources: &SourceMap,
) -> (Vec<String>, Vec<String>) {
    let key = |diagnostic: &Diagnostic| format!("{}: {}", diagnostic.code, diagnostic.message);
    let shown = |diagnostic: &Diagnostic| match &diagnostic.primary {
        Some(label) => format!("{} ({})", key(diagnostic), sources.describe(label.span)),
        None => key(diagnostic),
    };
    let errors = |diagnostics: &[Diagnostic]| -> BTreeMap<String, String> {
        diagnostics
            .iter()
            .filter(|diagnostic| diagnostic.severity == Severity::Error)
            .map(|diagnostic| (key(diagnostic), shown(diagnostic)))
            .collect()
    };
    let (base, head) = (errors(base), errors(head));
    let new = head
        .iter()
        .filter(|(key, _)| !base.contains_key(*key))
        .map(|(_, shown)| shown.clone())
        .collect();
    let resolved = base
        .iter()
        .filter(|(key, _)| !head.contains_key(*key))
        .map(|(_, shown)| shown.clone())
        .collect();
    (new, resolved)
}
