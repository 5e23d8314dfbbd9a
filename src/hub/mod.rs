//! Hubs: where twins live. For now, fleet snapshots (NDJSON, one twin per
//! line) read into a [`crate::fleet::Fleet`].

mod err;
pub mod snapshot;

pub use err::{HubError, SnapshotLineError};
