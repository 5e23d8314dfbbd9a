//! Status: every twin of a fleet in one class — managed and converged,
//! pending, differing or drifted, or unmanaged. Pure; reads ownership from
//! `tags.twinops`, so it needs no policies.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::fleet::Fleet;
use crate::hub::TwinId;
use crate::plan::converge::{self, Convergence};
use crate::plan::ownership::{self, Ownership};

/// The class of one twin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Managed; the device reports what it was given.
    Converged,
    /// Managed; desired changed after the device last reported.
    Pending,
    /// Managed; the device reported since and disagrees.
    Differing,
    /// Managed; a managed property was changed outside twinops.
    Drifted,
    /// Nothing on it is managed by twinops.
    Unmanaged,
}

/// Twins by class, each list sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The twins of each class.
    pub classes: BTreeMap<Class, Vec<TwinId>>,
}

/// Classifies every twin of `fleet`.
#[must_use]
pub fn survey(fleet: &Fleet) -> Status {
    let mut status = Status::default();
    for device in &fleet.devices {
        for twin in std::iter::once(&device.twin).chain(device.modules.values()) {
            let class = match Ownership::read(&twin.json) {
                None => Class::Unmanaged,
                Some(owned) => {
                    let live = ownership::live_desired(&twin.json);
                    let drifted = owned.managed.iter().any(|(property, recorded)| {
                        live.get(property).map(ownership::digest).as_ref() != Some(recorded)
                    });
                    if drifted {
                        Class::Drifted
                    } else {
                        let managed: Vec<&String> = owned.managed.keys().collect();
                        match converge::classify(twin, &managed) {
                            Convergence::Converged => Class::Converged,
                            Convergence::Pending => Class::Pending,
                            Convergence::Differing => Class::Differing,
                        }
                    }
                }
            };
            status
                .classes
                .entry(class)
                .or_default()
                .push(TwinId::from(twin));
        }
    }
    status
}
