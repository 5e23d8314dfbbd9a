//! Fleet snapshots: NDJSON, one twin per line, in IoT Hub's twin JSON shape.
//!
//! Reading is all or nothing: a snapshot with any bad line yields an error
//! naming the first bad lines, and no fleet.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::fleet::{Device, Fleet, Twin};
use crate::hub::err::{HubError, SnapshotLineError};
use crate::hub::json_kind;

/// How many bad lines an error lists.
const LISTED_ERRORS: usize = 20;

/// One line's twin, keyed by device and (for a module twin) module id.
pub(crate) type Keyed = ((String, Option<String>), Twin);

/// Parses snapshot `text` (from the file shown as `path`).
///
/// # Errors
/// [`HubError::InvalidSnapshot`] listing the first bad lines: not JSON, not
/// an object, no string `deviceId`, a twin given twice, a module twin whose
/// device twin is absent.
pub fn parse(path: &str, text: &str) -> Result<Fleet, HubError> {
    let mut errors = Vec::new();
    let mut twins: BTreeMap<(String, Option<String>), (usize, Twin)> = BTreeMap::new();
    let line_error = |line: usize, reason: String| SnapshotLineError {
        path: path.to_owned(),
        line,
        reason,
    };
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok((key, twin)) => {
                if let Some((first, _)) = twins.get(&key) {
                    let name = twin_name(&key);
                    errors.push(line_error(
                        number,
                        format!("twin `{name}` already given on line {first}"),
                    ));
                } else {
                    twins.insert(key, (number, twin));
                }
            }
            Err(reason) => errors.push(line_error(number, reason)),
        }
    }
    let mut devices: BTreeMap<String, Device> = BTreeMap::new();
    // Device twins sort before their module twins (`None` < `Some`).
    for ((device_id, module_id), (number, twin)) in twins {
        match (module_id, devices.get_mut(&device_id)) {
            (None, _) => {
                devices.insert(device_id, Device { twin, modules: BTreeMap::new() });
            }
            (Some(module_id), Some(device)) => {
                device.modules.insert(module_id, twin);
            }
            (Some(module_id), None) => errors.push(line_error(
                number,
                format!("module twin `{device_id}/{module_id}` has no device twin `{device_id}` in the snapshot"),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(invalid(path, errors));
    }
    Ok(Fleet {
        devices: devices.into_values().collect(),
    })
}

/// The error for a snapshot with bad lines: how many, and the first ones.
pub(crate) fn invalid(path: &str, mut errors: Vec<SnapshotLineError>) -> HubError {
    errors.sort_by_key(|error| error.line);
    let count = errors.len();
    errors.truncate(LISTED_ERRORS);
    HubError::InvalidSnapshot {
        path: path.to_owned(),
        count,
        lines: errors,
    }
}

fn twin_name((device_id, module_id): &(String, Option<String>)) -> String {
    match module_id {
        Some(module_id) => format!("{device_id}/{module_id}"),
        None => device_id.clone(),
    }
}

/// A line that is not JSON, as snapshot errors word it.
pub(crate) fn not_json(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let reason = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(reason, _)| reason);
    format!("not valid JSON at column {}: {reason}", error.column())
}

/// One line → its twin, or what is wrong with it.
pub(crate) fn parse_line(line: &str) -> Result<Keyed, String> {
    let json: Value = serde_json::from_str(line).map_err(|error| not_json(&error))?;
    if !json.is_object() {
        return Err(format!(
            "line is not a JSON object (found {})",
            json_kind(&json)
        ));
    }
    let device_id = match json.get("deviceId") {
        Some(Value::String(id)) => id.clone(),
        Some(other) => {
            return Err(format!(
                "`deviceId` must be a string, found {}",
                json_kind(other)
            ));
        }
        None => return Err("twin has no `deviceId`".to_owned()),
    };
    for field in ["properties", "tags"] {
        match json.get(field) {
            None | Some(Value::Object(_) | Value::Null) => {}
            Some(other) => {
                return Err(format!(
                    "twin `{device_id}`: `{field}` must be an object, found {}",
                    json_kind(other)
                ));
            }
        }
    }
    let module_id = match json.get("moduleId") {
        None | Some(Value::Null) => None,
        Some(Value::String(module_id)) => Some(module_id.clone()),
        Some(other) => {
            return Err(format!(
                "twin `{device_id}`: `moduleId` must be a string, found {}",
                json_kind(other)
            ));
        }
    };
    let twin = Twin {
        device_id: device_id.clone(),
        module_id: module_id.clone(),
        json,
    };
    Ok(((device_id, module_id), twin))
}

/// Reads and parses the snapshot at `path`, shown as `shown`.
///
/// # Errors
/// When the file cannot be read or any line is bad.
pub fn read(path: &std::path::Path, shown: &str) -> Result<Fleet, HubError> {
    let bytes = std::fs::read(path).map_err(|error| HubError::Io {
        path: shown.to_owned(),
        reason: error.to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|error| HubError::Io {
        path: shown.to_owned(),
        reason: format!(
            "not UTF-8 (first bad byte at offset {})",
            error.utf8_error().valid_up_to()
        ),
    })?;
    parse(shown, &text)
}

/// Writes `fleet` as a snapshot: one twin per line, each device twin
/// followed by its module twins; returns how many twins were written.
///
/// # Errors
/// [`HubError::Export`] when `out` fails.
pub fn write(fleet: &Fleet, out: &mut dyn std::io::Write) -> Result<usize, HubError> {
    let mut count = 0;
    let failed = |error: &dyn std::fmt::Display| HubError::Export {
        reason: error.to_string(),
    };
    for device in &fleet.devices {
        for twin in std::iter::once(&device.twin).chain(device.modules.values()) {
            serde_json::to_writer(&mut *out, &twin.json).map_err(|error| failed(&error))?;
            out.write_all(b"\n").map_err(|error| failed(&error))?;
            count += 1;
        }
    }
    out.flush().map_err(|error| failed(&error))?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::hub::HubError;

    #[test]
    fn reads_devices_and_modules_in_any_order() {
        let text = r#"{"deviceId":"b","moduleId":"m","properties":{"desired":{}}}
{"deviceId":"b"}

{"deviceId":"a","tags":{"x":1}}
"#;
        let fleet = parse("s.ndjson", text).unwrap();
        let ids: Vec<_> = fleet.devices.iter().map(|d| d.id().to_owned()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(fleet.device("b").unwrap().modules.contains_key("m"));
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let text = "{\"deviceId\":\"a\"}\nnot json\n{\"x\":1}\n{\"deviceId\":\"a\"}\n{\"deviceId\":\"z\",\"moduleId\":\"m\"}\n";
        let Err(HubError::InvalidSnapshot { count, lines, .. }) = parse("s.ndjson", text) else {
            panic!("expected an invalid snapshot");
        };
        assert_eq!(count, 4);
        let numbers: Vec<_> = lines.iter().map(|l| l.line).collect();
        assert_eq!(numbers, [2, 3, 4, 5]);
        assert!(
            lines[2].reason.contains("already given on line 1"),
            "{lines:?}"
        );
    }
}
