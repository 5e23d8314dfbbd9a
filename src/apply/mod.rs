//! Apply: [`Plan`] × [`Hub`] → [`ApplyReport`].
//!
//! Each twin's patch is sent with `If-Match` set to the etag it was planned
//! against, so a twin changed since the plan is never overwritten: it is
//! reported stale, with what changed, and left alone. One bad twin never
//! stops the run. Twins go concurrently, up to a limit (the hub paces
//! them); a module to create is created just before its twin is patched.
//! After a 412 the twin is read again: if it already holds everything the
//! patch sets (a retried write whose answer was lost, or someone wrote the
//! same values), it counts as applied. Draws nothing: progress goes to a
//! callback.

use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::{StreamExt as _, stream};
use serde::Serialize;
use serde_json::Value;

use crate::fleet::Twin;
use crate::hub::{Hub, HubError, TwinId};
use crate::plan::{Action, Plan, TwinPlan, patch};

/// What happened to one twin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Outcome {
    /// Written; the twin's new etag.
    Applied {
        /// The etag after the write.
        etag: String,
    },
    /// Changed since the plan; left untouched.
    Stale {
        /// What changed, in words.
        changed: Vec<String>,
    },
    /// The hub refused or failed.
    Failed {
        /// Why.
        reason: String,
    },
}

/// The result for one twin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TwinReport {
    /// The twin.
    #[serde(flatten)]
    pub id: TwinId,
    /// What was planned.
    pub action: Action,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The result of an apply, one row per planned twin.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// Per twin, in plan order.
    pub twins: Vec<TwinReport>,
}

impl ApplyReport {
    /// How many twins ended with `outcome`'s variant.
    #[must_use]
    pub fn count(&self, matches: impl Fn(&Outcome) -> bool) -> usize {
        self.twins
            .iter()
            .filter(|twin| matches(&twin.outcome))
            .count()
    }

    /// Whether every twin was applied.
    #[must_use]
    pub fn succeeded(&self) -> bool {
        self.twins
            .iter()
            .all(|twin| matches!(twin.outcome, Outcome::Applied { .. }))
    }
}

/// Applies every twin of `plan` to `hub`, with up to `concurrency`
/// requests in flight (the hub paces them); `progress` is called with the
/// count of twins done after each. The report is in plan order whatever
/// order the twins finish in.
pub async fn execute(
    plan: &Plan,
    hub: &impl Hub,
    concurrency: usize,
    progress: &mut (dyn FnMut(usize) + Send),
) -> ApplyReport {
    execute_until(plan, hub, concurrency, progress, &AtomicBool::new(false)).await
}

/// [`execute`], starting no new twin once `stop` is set: twins in flight
/// finish, the rest are reported not attempted.
pub async fn execute_until(
    plan: &Plan,
    hub: &impl Hub,
    concurrency: usize,
    progress: &mut (dyn FnMut(usize) + Send),
    stop: &AtomicBool,
) -> ApplyReport {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; plan.changes.len()];
    let mut finished = stream::iter(plan.changes.iter().enumerate())
        .take_while(|_| std::future::ready(!stop.load(Ordering::SeqCst)))
        .map(|(at, twin)| async move { (at, apply_one(twin, hub).await) })
        .buffer_unordered(concurrency.max(1));
    let mut done = 0;
    while let Some((at, outcome)) = finished.next().await {
        if let Some(slot) = outcomes.get_mut(at) {
            *slot = Some(outcome);
        }
        done += 1;
        progress(done);
    }
    let twins = plan
        .changes
        .iter()
        .zip(outcomes)
        .map(|(twin, outcome)| TwinReport {
            id: twin.id(),
            action: twin.action,
            outcome: outcome.unwrap_or_else(|| Outcome::Failed {
                reason: "not attempted: the run was stopped".to_owned(),
            }),
        })
        .collect();
    ApplyReport { twins }
}

async fn apply_one(twin: &TwinPlan, hub: &impl Hub) -> Outcome {
    let id = twin.id();
    let etag = if twin.action == Action::Create {
        match create(&id, hub).await {
            Ok(etag) => Some(etag),
            Err(reason) => return Outcome::Failed { reason },
        }
    } else {
        twin.etag.clone()
    };
    match hub.patch(&id, &twin.patch.value(), etag.as_deref()).await {
        Ok(etag) => Outcome::Applied { etag },
        Err(HubError::PreconditionFailed { .. }) => stale_or_applied(twin, hub).await,
        Err(error) => Outcome::Failed {
            reason: error.to_string(),
        },
    }
}

/// Creates a module identity; one that exists already (a run that stopped
/// after creating it) is taken as it is, at its current etag.
async fn create(id: &TwinId, hub: &impl Hub) -> Result<String, String> {
    let module = id.module_id.as_deref().unwrap_or_default();
    let created = match hub.create_module(&id.device_id, module).await {
        Ok(twin) => twin,
        Err(HubError::ModuleExists { .. }) => {
            hub.twin(id).await.map_err(|error| error.to_string())?
        }
        Err(error) => return Err(error.to_string()),
    };
    created
        .json
        .get("etag")
        .and_then(Value::as_str)
        .filter(|etag| !etag.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| "the created module twin has no etag to write against".to_owned())
}

/// After a 412: the twin as it is now. If the patch is already in effect
/// (a retried write whose first answer was lost in a dropped connection),
/// the twin is applied; otherwise it is stale.
async fn stale_or_applied(twin: &TwinPlan, hub: &impl Hub) -> Outcome {
    let Ok(now) = hub.twin(&twin.id()).await else {
        return Outcome::Stale {
            changed: vec!["the twin changed and could not be read again".to_owned()],
        };
    };
    if patch::is_in_effect(&twin.patch.value(), Some(&now.json)) {
        return Outcome::Applied {
            etag: now
                .json
                .get("etag")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        };
    }
    Outcome::Stale {
        changed: what_changed(twin, &now),
    }
}

/// For a stale twin: which planned leaves no longer hold the value the plan
/// saw, else that something else on the twin changed.
fn what_changed(twin: &TwinPlan, now: &Twin) -> Vec<String> {
    let desired = now.json.pointer("/properties/desired");
    let mut changed: Vec<String> = twin
        .changes
        .iter()
        .filter_map(|leaf| {
            let current = desired.and_then(|d| d.pointer(&leaf.path));
            (current != leaf.before.as_ref()).then(|| {
                let show = |value: Option<&Value>| {
                    value.map_or_else(|| "absent".to_owned(), Value::to_string)
                };
                format!(
                    "{}: planned from {}, now {}",
                    leaf.path,
                    show(leaf.before.as_ref()),
                    show(current)
                )
            })
        })
        .collect();
    if changed.is_empty() {
        let etag = now
            .json
            .get("etag")
            .and_then(Value::as_str)
            .unwrap_or_default();
        changed.push(format!(
            "the twin was written since the plan (etag `{}` is now `{etag}`), outside the planned leaves",
            twin.etag.as_deref().unwrap_or_default()
        ));
    }
    changed
}
