//! Fleet: the device twins and module twins a hub holds, as IoT Hub shapes them.
//!
//! Twins keep their full JSON (the wire shape of `reference/iothub-rest-api.md`
//! §5.2) so that target conditions can read any field; devices are sorted by
//! id, modules by module id. Large fleets are planned without holding them:
//! [`RawTwin`] reads one line lightly, and [`TwinFields`] is what targets and
//! plans read of either kind of twin.

pub mod raw;

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

pub use raw::RawTwin;

/// What targets and plans read of a twin, whether it is held whole
/// ([`Twin`]) or read lightly from a line ([`RawTwin`]).
pub trait TwinFields {
    /// The device id.
    fn device_id(&self) -> &str;
    /// The module id, for a module twin.
    fn module_id(&self) -> Option<&str>;
    /// The etag, when the twin has one.
    fn etag(&self) -> Option<&str>;
    /// The JSON text at `path`. Equal texts mean equal values (not always
    /// the other way round), so texts can key what is worked out from them.
    fn text<K: AsRef<str>>(&self, path: &[K]) -> Option<Cow<'_, str>>;
    /// The value at `path`.
    fn value<K: AsRef<str>>(&self, path: &[K]) -> Option<Cow<'_, Value>>;
    /// Whether the value at `path` is an object.
    fn is_object(&self, path: &[&str]) -> bool;
}

impl TwinFields for Twin {
    fn device_id(&self) -> &str {
        &self.device_id
    }

    fn module_id(&self) -> Option<&str> {
        self.module_id.as_deref()
    }

    fn etag(&self) -> Option<&str> {
        self.json.get("etag").and_then(Value::as_str)
    }

    fn text<K: AsRef<str>>(&self, path: &[K]) -> Option<Cow<'_, str>> {
        self.value(path).map(|value| Cow::Owned(value.to_string()))
    }

    fn value<K: AsRef<str>>(&self, path: &[K]) -> Option<Cow<'_, Value>> {
        path.iter()
            .try_fold(&self.json, |value, key| value.get(key.as_ref()))
            .map(Cow::Borrowed)
    }

    fn is_object(&self, path: &[&str]) -> bool {
        self.value(path).is_some_and(|value| value.is_object())
    }
}

impl TwinFields for RawTwin<'_> {
    fn device_id(&self) -> &str {
        &self.device_id
    }

    fn module_id(&self) -> Option<&str> {
        self.module_id.as_deref()
    }

    fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    fn text<K: AsRef<str>>(&self, path: &[K]) -> Option<Cow<'_, str>> {
        RawTwin::text(self, path)
    }

    fn value<K: AsRef<str>>(&self, path: &[K]) -> Option<Cow<'_, Value>> {
        let text = RawTwin::text(self, path)?;
        serde_json::from_str(&text).ok().map(Cow::Owned)
    }

    fn is_object(&self, path: &[&str]) -> bool {
        RawTwin::is_object(self, path)
    }
}

/// One twin: a device twin, or a module twin when `module_id` is set.
#[derive(Clone, Debug, PartialEq)]
pub struct Twin {
    /// The device id.
    pub device_id: String,
    /// The module id, for a module twin.
    pub module_id: Option<String>,
    /// The twin as IoT Hub returns it.
    pub json: Value,
}

impl Twin {
    /// `properties.desired`, if present.
    #[must_use]
    pub fn desired(&self) -> Option<&serde_json::Map<String, Value>> {
        self.json
            .pointer("/properties/desired")
            .and_then(Value::as_object)
    }
}

/// A device: its twin and its module twins.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// The device twin.
    pub twin: Twin,
    /// Module twins by module id.
    pub modules: BTreeMap<String, Twin>,
}

impl Device {
    /// The device id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.twin.device_id
    }
}

/// Every device of a hub, sorted by device id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fleet {
    /// The devices.
    pub devices: Vec<Device>,
}

impl Fleet {
    /// The device with `id`.
    #[must_use]
    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices
            .binary_search_by(|device| device.id().cmp(id))
            .ok()
            .and_then(|at| self.devices.get(at))
    }
}
