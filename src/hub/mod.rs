//! Hubs: where twins live, behind one trait.
//!
//! [`Hub`] is what plan and apply see: pages of devices with their module
//! twins, one twin, a merge-patch or replacement with an optional `If-Match`
//! etag, and module identity creation. Backends: [`local`] (an SQLite file,
//! the embedded default) and, next, Azure IoT Hub over REST. [`snapshot`]
//! reads and writes NDJSON fleet snapshots. Twins cross this boundary in IoT
//! Hub's own JSON shape (`reference/iothub-rest-api.md` §5).

mod err;
pub mod local;
pub mod model;
pub mod sas;
pub mod snapshot;

pub use err::{AuthError, HubError, SnapshotLineError};

use std::future::Future;

use serde_json::Value;

use crate::fleet::{Device, Fleet, Twin};

/// A twin's address: a device twin, or a module twin when `module_id` is set.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct TwinId {
    /// The device.
    pub device_id: String,
    /// The module, for a module twin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
}

impl TwinId {
    /// `device` or `device/module`, for messages.
    #[must_use]
    pub fn display(&self) -> String {
        match &self.module_id {
            Some(module) => format!("{}/{module}", self.device_id),
            None => self.device_id.clone(),
        }
    }
}

impl From<&Twin> for TwinId {
    fn from(twin: &Twin) -> Self {
        Self {
            device_id: twin.device_id.clone(),
            module_id: twin.module_id.clone(),
        }
    }
}

/// One page of devices, in device id order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DevicePage {
    /// Devices with their module twins.
    pub devices: Vec<Device>,
    /// Pass back to get the next page; `None` on the last page.
    pub continuation: Option<String>,
}

/// Which hub a plan was made against: its kind and a stable id.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HubIdentity {
    /// `local` or `iothub`.
    pub kind: String,
    /// The local hub's id (made when the database was created), or the host name.
    pub id: String,
}

/// Devices read per page by [`read_fleet`].
pub const PAGE_SIZE: usize = 1000;

/// A place that holds twins, as IoT Hub models them.
pub trait Hub: Send + Sync {
    /// This hub's identity.
    fn identity(&self) -> HubIdentity;

    /// One page of devices after `continuation`, at most `limit` devices.
    fn devices(
        &self,
        continuation: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Result<DevicePage, HubError>> + Send;

    /// One twin.
    fn twin(&self, id: &TwinId) -> impl Future<Output = Result<Twin, HubError>> + Send;

    /// Applies a JSON merge patch to a twin's `tags` and `properties.desired`;
    /// with `if_match`, only when the twin's etag is still that one
    /// ([`HubError::PreconditionFailed`] otherwise). Returns the new twin.
    fn patch(
        &self,
        id: &TwinId,
        patch: &Value,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<Twin, HubError>> + Send;

    /// Replaces a twin's tags and desired properties.
    fn replace(
        &self,
        id: &TwinId,
        twin: &Value,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<Twin, HubError>> + Send;

    /// Creates module identity `module_id` on a device, with an empty twin.
    fn create_module(
        &self,
        device_id: &str,
        module_id: &str,
    ) -> impl Future<Output = Result<Twin, HubError>> + Send;
}

/// What kind of JSON value `value` is, for messages: `an array`, `null`...
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads every device of `hub`, page by page.
///
/// # Errors
/// The first error of the hub.
pub async fn read_fleet(hub: &impl Hub) -> Result<Fleet, HubError> {
    let mut devices = Vec::new();
    let mut continuation = None;
    loop {
        let page = hub.devices(continuation, PAGE_SIZE).await?;
        devices.extend(page.devices);
        match page.continuation {
            Some(next) => continuation = Some(next),
            None => break,
        }
    }
    Ok(Fleet { devices })
}
