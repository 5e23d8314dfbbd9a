//! Hubs: where twins live, behind one trait.
//!
//! [`Hub`] is what plan and apply see: every device with its module twins,
//! one twin, a merge-patch or replacement with an optional `If-Match` etag,
//! and module identity creation. Backends: [`local`] (an SQLite file, the
//! embedded default) and [`rest`] (Azure IoT Hub, or the emulator, over
//! HTTPS); [`AnyHub`] is whichever an environment names. [`model`] is the
//! pure twin model both the local hub and the emulator keep, [`snapshot`]
//! reads and writes NDJSON fleet snapshots, [`lines`] hands out a snapshot's
//! or a local hub's twins a batch of lines at a time, [`sas`] signs and checks shared
//! access signatures, [`throttle`] paces requests, [`wire`] reads and writes
//! IoT Hub's error bodies, and `err` holds the boundary's errors. Twins cross this
//! boundary in IoT Hub's own JSON shape (`reference/iothub-rest-api.md` §5).

mod err;
pub mod lines;
pub mod local;
pub mod model;
pub mod rest;
pub mod sas;
pub mod snapshot;
pub mod throttle;
pub mod wire;

pub use err::{AuthError, HubError, SnapshotLineError};

use std::future::Future;

use serde_json::Value;

use crate::fleet::{Device, Fleet, Twin};

/// A twin's address: a device twin, or a module twin when `module_id` is set.
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
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
    // Fields in alphabetical order, as plans are written (`plan::saved`).
    /// The local hub's id (made when the database was created), or the host name.
    pub id: String,
    /// `local` or `iothub`.
    pub kind: String,
}

/// Devices read per page from a local hub.
pub const PAGE_SIZE: usize = 1000;

/// A place that holds twins, as IoT Hub models them.
pub trait Hub: Send + Sync {
    /// This hub's identity.
    fn identity(&self) -> HubIdentity;

    /// Every device with its module twins, sorted by device id.
    fn fleet(&self) -> impl Future<Output = Result<Fleet, HubError>> + Send;

    /// One twin.
    fn twin(&self, id: &TwinId) -> impl Future<Output = Result<Twin, HubError>> + Send;

    /// Applies a JSON merge patch to a twin's `tags` and `properties.desired`;
    /// with `if_match`, only when the twin's etag is still that one
    /// ([`HubError::PreconditionFailed`] otherwise). Returns the twin's new
    /// etag (empty when the hub's answer carries none); read the twin for
    /// the rest.
    fn patch(
        &self,
        id: &TwinId,
        patch: &Value,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<String, HubError>> + Send;

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

/// An environment's hub: local or REST.
#[derive(Debug)]
pub enum AnyHub {
    /// An SQLite file.
    Local(local::LocalHub),
    /// Azure IoT Hub or the emulator, over HTTPS.
    Rest(Box<rest::RestHub>),
}

impl Hub for AnyHub {
    fn identity(&self) -> HubIdentity {
        match self {
            Self::Local(hub) => hub.identity(),
            Self::Rest(hub) => hub.identity(),
        }
    }

    async fn fleet(&self) -> Result<Fleet, HubError> {
        match self {
            Self::Local(hub) => hub.fleet().await,
            Self::Rest(hub) => hub.fleet().await,
        }
    }

    async fn twin(&self, id: &TwinId) -> Result<Twin, HubError> {
        match self {
            Self::Local(hub) => hub.twin(id).await,
            Self::Rest(hub) => hub.twin(id).await,
        }
    }

    async fn patch(
        &self,
        id: &TwinId,
        patch: &Value,
        if_match: Option<&str>,
    ) -> Result<String, HubError> {
        match self {
            Self::Local(hub) => hub.patch(id, patch, if_match).await,
            Self::Rest(hub) => hub.patch(id, patch, if_match).await,
        }
    }

    async fn replace(
        &self,
        id: &TwinId,
        twin: &Value,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError> {
        match self {
            Self::Local(hub) => hub.replace(id, twin, if_match).await,
            Self::Rest(hub) => hub.replace(id, twin, if_match).await,
        }
    }

    async fn create_module(&self, device_id: &str, module_id: &str) -> Result<Twin, HubError> {
        match self {
            Self::Local(hub) => hub.create_module(device_id, module_id).await,
            Self::Rest(hub) => hub.create_module(device_id, module_id).await,
        }
    }
}
