//! Fleet: the device twins and module twins a hub holds, as IoT Hub shapes them.
//!
//! Twins keep their full JSON (the wire shape of `reference/iothub-rest-api.md`
//! §5.2) so that target conditions can read any field; devices are sorted by
//! id, modules by module id.

use std::collections::BTreeMap;

use serde_json::Value;

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
