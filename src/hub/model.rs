//! Twin model: what IoT Hub does to a twin when the service writes it, as pure
//! functions shared by the local hub and the REST emulator.
//!
//! A [`StoredTwin`] is a twin's JSON in IoT Hub's wire shape
//! (`reference/iothub-rest-api.md` §5.2) plus the one counter IoT Hub keeps
//! but never shows: how many times the service wrote its tags. The storage
//! keeps that count beside the JSON (the local hub: column
//! `twins.tag_writes`), never inside it, so users never see it in a twin.
//!
//! [`StoredTwin::patched`] (PATCH, a JSON merge patch) and
//! [`StoredTwin::replaced`] (PUT) write `tags` and `properties.desired`,
//! never reported properties, and keep the bookkeeping of §5.3 in step:
//!
//! - desired `$version` goes up by one whenever the desired section is
//!   written; a tags-only write leaves it and counts one tag write instead;
//! - every desired node written (and each of its ancestors, up to the
//!   section) gets `$lastUpdated` = `now` and `$lastUpdatedVersion` = the new
//!   desired `$version`; removed nodes leave `$metadata`; nodes not written
//!   keep theirs;
//! - `etag` = [`etag_for`]`(desired $version + tag writes)` and
//!   `version` = desired `$version` + reported `$version` + tag writes.
//!
//! Every write checks IoT Hub's limits (§5.5, [`limits::check`] plus the 8 KB
//! tags rule) on the sections it writes and returns the twin after it or
//! [`HubError::InvalidTwin`]. A write takes the twin it starts from (the
//! caller's stored copy stays as it was, so a rejected write stores
//! nothing) and says whether it changed it ([`Written`]). No I/O and no
//! clock: callers pass `now` (formatted by [`timestamp`]).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use crate::compile::limits::{self, LimitProblem};
use crate::fleet::Twin;
use crate::hub::json_kind;
use crate::hub::{HubError, TwinId};
use crate::load::join_pointer;

/// Largest tags section, by IoT Hub's size formula (desired has its own 32 KB
/// limit in [`limits::MAX_DESIRED_BYTES`]).
pub const MAX_TAGS_BYTES: usize = 8 * 1024;
/// Most module identities one device may have.
pub const MAX_MODULES_PER_DEVICE: usize = 50;
/// Longest device or module id, in characters.
pub const MAX_ID_CHARS: usize = 128;

/// The characters IoT Hub allows in ids besides ASCII letters and digits (§2).
const ID_PUNCTUATION: &str = "-:.+%_#*?!(),=@;$'";
/// IoT Hub's "never" for registry times on a new identity.
const NEVER: &str = "0001-01-01T00:00:00Z";
/// `$version` of a section that does not carry one: every twin starts at 1.
const FIRST_VERSION: u64 = 1;
/// Top-level keys of a PATCH body that IoT Hub ignores: C# v1 always sends
/// them, possibly null (§5.4).
const IGNORED_PATCH_KEYS: [&str; 4] = ["deviceId", "moduleId", "etag", "version"];

/// The etag IoT Hub shows for `counter` (desired `$version` + tag writes):
/// base64 of its 8 big-endian bytes, `AAAAAAAAAAE=` for 1 (§5.3, INFERRED).
#[must_use]
pub fn etag_for(counter: u64) -> String {
    BASE64.encode(counter.to_be_bytes())
}

/// The counter behind an etag made by [`etag_for`], if `etag` is one.
#[must_use]
pub fn etag_counter(etag: &str) -> Option<u64> {
    let bytes: [u8; 8] = BASE64.decode(etag).ok()?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// `since_unix_epoch` as IoT Hub writes times: UTC, seven fractional digits,
/// e.g. `2026-11-26T11:40:00.0000000Z`.
#[must_use]
pub fn timestamp(since_unix_epoch: Duration) -> String {
    const SECONDS_PER_DAY: u64 = 86_400;
    let seconds = since_unix_epoch.as_secs();
    let ticks = since_unix_epoch.subsec_nanos() / 100;
    let (year, month, day) = civil_date(seconds / SECONDS_PER_DAY);
    let of_day = seconds % SECONDS_PER_DAY;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ticks:07}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`, for days on or after the epoch).
pub(crate) fn civil_date(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Checks an `If-Match` value against a twin's current `etag`, as IoT Hub
/// does (§4): none, `*` or `"*"` match anything; an etag, quoted (as every
/// official SDK sends it) or not, must equal the current one exactly.
///
/// # Errors
/// [`HubError::PreconditionFailed`] with the current etag.
pub fn check_if_match(id: &TwinId, if_match: Option<&str>, current: &str) -> Result<(), HubError> {
    let Some(sent) = if_match.map(str::trim) else {
        return Ok(());
    };
    let expected = sent
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(sent);
    // Unquoted values are compared too: the service once ignored them
    // (§4, UNCONFIRMED today), which would let a stale plan overwrite a twin.
    if expected == "*" || expected == current {
        return Ok(());
    }
    Err(HubError::PreconditionFailed {
        twin: id.display(),
        expected: expected.to_owned(),
        actual: current.to_owned(),
    })
}

/// Checks a new module's id against IoT Hub's id rules (§2).
///
/// # Errors
/// [`HubError::InvalidTwin`] naming the rule broken.
pub fn check_module_id(device_id: &str, module_id: &str) -> Result<(), HubError> {
    let reason = if module_id.is_empty() {
        Some("a module id cannot be empty".to_owned())
    } else if module_id.chars().count() > MAX_ID_CHARS {
        Some(format!(
            "module id is {} characters, over IoT Hub's limit of {MAX_ID_CHARS}",
            module_id.chars().count()
        ))
    } else {
        module_id
            .chars()
            .find(|ch| !ch.is_ascii_alphanumeric() && !ID_PUNCTUATION.contains(*ch))
            .map(|bad| {
                format!(
                    "module id contains `{bad}`; IoT Hub allows ASCII letters, digits and `{ID_PUNCTUATION}`"
                )
            })
    };
    match reason {
        Some(reason) => Err(HubError::InvalidTwin {
            twin: format!("{device_id}/{module_id}"),
            reason,
        }),
        None => Ok(()),
    }
}

/// A twin as a hub stores it: IoT Hub's JSON, and the hidden tag-write count.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredTwin {
    /// The twin, exactly as IoT Hub returns it.
    pub json: Map<String, Value>,
    /// How many times the service wrote the tags; part of `etag` and
    /// `version` (§5.3), never shown in the JSON.
    pub tag_writes: u64,
}

/// A twin after a write: changed (to be stored), or unchanged because the
/// write named nothing to write.
#[derive(Clone, Debug, PartialEq)]
pub enum Written {
    /// The write changed the twin.
    Changed(StoredTwin),
    /// The write wrote nothing; the twin is as it was.
    Unchanged(StoredTwin),
}

/// How a write treats the desired section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Write {
    /// Merge the body into what is there (PATCH).
    Merge,
    /// Replace what is there with the body (PUT).
    Whole,
}

/// Which section a limit or key problem is in, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Tags,
    Desired,
}

impl Section {
    fn noun(self) -> &'static str {
        match self {
            Self::Tags => "tag",
            Self::Desired => "desired property",
        }
    }
}

/// The sections a PATCH or PUT body writes.
struct Body<'a> {
    tags: Option<&'a Map<String, Value>>,
    desired: Option<&'a Map<String, Value>>,
}

/// What `$lastUpdated` and `$lastUpdatedVersion` say on every node written.
struct Stamp<'a> {
    now: &'a str,
    version: u64,
}

impl Stamp<'_> {
    fn mark(&self, node: &mut Map<String, Value>) {
        node.insert("$lastUpdated".to_owned(), Value::from(self.now));
        node.insert("$lastUpdatedVersion".to_owned(), Value::from(self.version));
    }

    fn node(&self) -> Map<String, Value> {
        let mut node = Map::new();
        self.mark(&mut node);
        node
    }
}

impl StoredTwin {
    /// A twin as read from a snapshot: its JSON is kept as given, except that
    /// a missing `deviceId` or `moduleId` is filled from `id` and a missing
    /// `etag` or `version` is computed. The tag-write count is inferred from
    /// the etag (or else the version) by the arithmetic of §5.3, so the next
    /// write continues where the source hub left off; 0 when neither tells.
    ///
    /// # Errors
    /// [`HubError::InvalidTwin`] when the JSON is not a twin object, names
    /// another twin than `id`, an id is empty, or it breaks IoT Hub's limits
    /// on tags or desired properties.
    pub fn imported(id: &TwinId, json: Value) -> Result<Self, HubError> {
        let invalid = |reason: String| HubError::InvalidTwin {
            twin: id.display(),
            reason,
        };
        let Value::Object(mut root) = json else {
            return Err(invalid(format!(
                "a twin must be a JSON object, found {}",
                json_kind(&json)
            )));
        };
        if id.device_id.is_empty() {
            return Err(invalid("a device id cannot be empty".to_owned()));
        }
        if id.module_id.as_deref() == Some("") {
            return Err(invalid("a module id cannot be empty".to_owned()));
        }
        claim_id(&mut root, "deviceId", Some(&id.device_id)).map_err(&invalid)?;
        claim_id(&mut root, "moduleId", id.module_id.as_deref()).map_err(&invalid)?;
        if let Some(tags) = section(&root, &["tags"]).map_err(&invalid)? {
            check_limits(id, Section::Tags, tags)?;
        }
        if let Some(desired) = section(&root, &["properties", "desired"]).map_err(&invalid)? {
            // `$metadata` can be many times the size of the values: leave it.
            let values: Map<String, Value> = desired
                .iter()
                .filter(|(key, _)| !matches!(key.as_str(), "$metadata" | "$version"))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            check_limits(id, Section::Desired, &values)?;
        }
        let desired = desired_version(&root);
        let reported = reported_version(&root);
        let from_etag = root
            .get("etag")
            .and_then(Value::as_str)
            .and_then(etag_counter)
            .and_then(|counter| counter.checked_sub(desired));
        let from_version = root
            .get("version")
            .and_then(Value::as_u64)
            .and_then(|version| version.checked_sub(desired.saturating_add(reported)));
        let tag_writes = from_etag.max(from_version).unwrap_or(0);
        let mut twin = Self {
            json: root,
            tag_writes,
        };
        let (etag, version) = twin.counters();
        if !twin.json.get("etag").is_some_and(Value::is_string) {
            twin.json.insert("etag".to_owned(), Value::from(etag));
        }
        if !twin.json.get("version").is_some_and(Value::is_u64) {
            twin.json.insert("version".to_owned(), Value::from(version));
        }
        Ok(twin)
    }

    /// A new module identity's twin, as IoT Hub shapes it (§5.2): enabled,
    /// disconnected, no tags, empty desired and reported sections at
    /// `$version` 1, etag 1, version 2.
    ///
    /// # Errors
    /// [`HubError::InvalidTwin`] when the module id breaks IoT Hub's id rules
    /// or the device already has [`MAX_MODULES_PER_DEVICE`] modules
    /// (`existing_modules`).
    pub fn new_module(
        device_id: &str,
        module_id: &str,
        existing_modules: usize,
        now: &str,
    ) -> Result<Self, HubError> {
        check_module_id(device_id, module_id)?;
        if existing_modules >= MAX_MODULES_PER_DEVICE {
            return Err(HubError::InvalidTwin {
                twin: format!("{device_id}/{module_id}"),
                reason: format!(
                    "device `{device_id}` already has {existing_modules} modules, IoT Hub's limit is {MAX_MODULES_PER_DEVICE}"
                ),
            });
        }
        let section = json!({ "$metadata": { "$lastUpdated": now }, "$version": FIRST_VERSION });
        let json = [
            ("deviceId", Value::from(device_id)),
            ("moduleId", Value::from(module_id)),
            ("etag", Value::from(etag_for(FIRST_VERSION))),
            ("version", Value::from(FIRST_VERSION + FIRST_VERSION)),
            ("status", Value::from("enabled")),
            ("statusUpdateTime", Value::from(NEVER)),
            ("connectionState", Value::from("Disconnected")),
            ("lastActivityTime", Value::from(NEVER)),
            ("cloudToDeviceMessageCount", Value::from(0)),
            ("authenticationType", Value::from("sas")),
            (
                "x509Thumbprint",
                json!({ "primaryThumbprint": null, "secondaryThumbprint": null }),
            ),
            ("modelId", Value::from("")),
            ("tags", json!({})),
            (
                "properties",
                json!({ "desired": section.clone(), "reported": section }),
            ),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        Ok(Self {
            json,
            tag_writes: 0,
        })
    }

    /// The twin after a service-side PATCH with `patch` at `now`.
    ///
    /// The body may hold `tags` and `properties.desired`, each a JSON merge
    /// patch (RFC 7396: objects merge, `null` removes, anything else
    /// replaces). `deviceId`, `moduleId`, `etag`, `version` and
    /// `properties.reported` are ignored, as IoT Hub ignores what C# sends
    /// (what it does with a non-empty `reported` is UNCONFIRMED, §5.4). A
    /// section counts as written when its patch has at least one key; an
    /// empty patch returns the twin [`Written::Unchanged`].
    ///
    /// # Errors
    /// [`HubError::InvalidTwin`]: another top-level key, a section that is
    /// not an object, a key starting with `$`, or a limit broken by the
    /// result.
    pub fn patched(self, id: &TwinId, patch: &Value, now: &str) -> Result<Written, HubError> {
        let body = patch_body(id, patch)?;
        self.written(id, &body, Write::Merge, now)
    }

    /// The twin after a service-side PUT of `body` at `now`: all tags and all
    /// desired properties become the body's. The body may be a whole twin as
    /// read: its other fields (ids, `etag`, `status`, ...), desired
    /// `$metadata` and `$version`, and `properties.reported` are ignored.
    /// Both sections are always written (desired `$version` + 1, one tag
    /// write).
    ///
    /// An omitted or null `tags` clears the tags, as an omitted
    /// `properties.desired` clears the desired properties. Whether IoT Hub
    /// clears omitted tags is UNCONFIRMED (§5.4); it likely does, since C# v1
    /// omits empty tags.
    ///
    /// # Errors
    /// [`HubError::InvalidTwin`]: the body or a section is not an object, a
    /// key starting with `$`, or a limit broken by the result.
    pub fn replaced(self, id: &TwinId, body: &Value, now: &str) -> Result<Written, HubError> {
        let body = replace_body(id, body)?;
        let tags = body.tags.cloned().unwrap_or_default();
        let mut desired = body.desired.cloned().unwrap_or_default();
        // A desired section read from a twin carries these; they are IoT
        // Hub's to set, so a PUT ignores them rather than refusing them.
        desired.remove("$metadata");
        desired.remove("$version");
        let whole = Body {
            tags: Some(&tags),
            desired: Some(&desired),
        };
        self.written(id, &whole, Write::Whole, now)
    }

    /// The twin's current etag; empty when it has none.
    #[must_use]
    pub fn etag(&self) -> &str {
        self.json.get("etag").and_then(Value::as_str).unwrap_or("")
    }

    /// The twin as the rest of twinops sees it.
    #[must_use]
    pub fn into_twin(self, id: &TwinId) -> Twin {
        Twin {
            device_id: id.device_id.clone(),
            module_id: id.module_id.clone(),
            json: Value::Object(self.json),
        }
    }

    /// Applies `body` in `mode`; `None` sections are left alone.
    fn written(
        mut self,
        id: &TwinId,
        body: &Body<'_>,
        mode: Write,
        now: &str,
    ) -> Result<Written, HubError> {
        let tags = body
            .tags
            .filter(|tags| mode == Write::Whole || !tags.is_empty());
        let desired = body
            .desired
            .filter(|desired| mode == Write::Whole || !desired.is_empty());
        if tags.is_none() && desired.is_none() {
            return Ok(Written::Unchanged(self));
        }
        if let Some(patch) = tags {
            reject_reserved_keys(id, Section::Tags, patch)?;
            let mut values = match mode {
                Write::Merge => take_object(&mut self.json, "tags"),
                Write::Whole => Map::new(),
            };
            merge(&mut values, patch);
            check_limits(id, Section::Tags, &values)?;
            self.json.insert("tags".to_owned(), Value::Object(values));
            self.tag_writes = self.tag_writes.saturating_add(1);
        }
        if let Some(patch) = desired {
            reject_reserved_keys(id, Section::Desired, patch)?;
            let mut properties = take_object(&mut self.json, "properties");
            let mut values = take_object(&mut properties, "desired");
            let stamp = Stamp {
                now,
                version: section_version(&values).saturating_add(1),
            };
            let mut metadata = take_object(&mut values, "$metadata");
            values.remove("$version");
            if mode == Write::Whole {
                values.clear();
                metadata.clear();
            }
            stamp.mark(&mut metadata);
            merge_desired(&mut values, &mut metadata, patch, &stamp);
            check_limits(id, Section::Desired, &values)?;
            values.insert("$metadata".to_owned(), Value::Object(metadata));
            values.insert("$version".to_owned(), Value::from(stamp.version));
            properties.insert("desired".to_owned(), Value::Object(values));
            self.json
                .insert("properties".to_owned(), Value::Object(properties));
        }
        self.restamp();
        Ok(Written::Changed(self))
    }

    /// `etag` and `version` as the counters make them (§5.3).
    fn counters(&self) -> (String, u64) {
        let desired = desired_version(&self.json);
        let reported = reported_version(&self.json);
        let etag = etag_for(desired.saturating_add(self.tag_writes));
        let version = desired
            .saturating_add(reported)
            .saturating_add(self.tag_writes);
        (etag, version)
    }

    /// Sets `etag` and `version` from the counters, after a write.
    fn restamp(&mut self) {
        let (etag, version) = self.counters();
        self.json.insert("etag".to_owned(), Value::from(etag));
        self.json.insert("version".to_owned(), Value::from(version));
    }
}

/// Splits a PATCH body into its sections, refusing what IoT Hub refuses.
fn patch_body<'a>(id: &TwinId, patch: &'a Value) -> Result<Body<'a>, HubError> {
    let invalid = |reason: String| HubError::InvalidTwin {
        twin: id.display(),
        reason,
    };
    let Value::Object(fields) = patch else {
        return Err(invalid(format!(
            "a twin patch must be a JSON object, found {}",
            json_kind(patch)
        )));
    };
    let mut body = Body {
        tags: None,
        desired: None,
    };
    for (key, value) in fields {
        match key.as_str() {
            "tags" => body.tags = Some(object_field("tags", value).map_err(&invalid)?),
            "properties" => {
                let properties = object_field("properties", value).map_err(&invalid)?;
                body.desired = desired_field(properties).map_err(&invalid)?;
            }
            ignored if IGNORED_PATCH_KEYS.contains(&ignored) => {}
            other => {
                return Err(invalid(format!(
                    "a twin patch may only write `tags` and `properties.desired`, found `{other}`"
                )));
            }
        }
    }
    Ok(body)
}

/// Splits a PUT body into its sections; read-only twin fields are ignored.
fn replace_body<'a>(id: &TwinId, twin: &'a Value) -> Result<Body<'a>, HubError> {
    let invalid = |reason: String| HubError::InvalidTwin {
        twin: id.display(),
        reason,
    };
    let Value::Object(fields) = twin else {
        return Err(invalid(format!(
            "a twin must be a JSON object, found {}",
            json_kind(twin)
        )));
    };
    let optional_object = |name: &str| match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => object_field(name, value).map(Some).map_err(&invalid),
    };
    let tags = optional_object("tags")?;
    let desired = match optional_object("properties")? {
        Some(properties) => desired_field(properties).map_err(&invalid)?,
        None => None,
    };
    Ok(Body { tags, desired })
}

/// `properties.desired` of a body's `properties`, which may also hold an
/// ignored `reported`. A desired section read from a twin keeps its
/// `$metadata` and `$version`, which are not part of the write.
fn desired_field(properties: &Map<String, Value>) -> Result<Option<&Map<String, Value>>, String> {
    let mut desired = None;
    for (key, value) in properties {
        match key.as_str() {
            "desired" => desired = Some(object_field("properties.desired", value)?),
            "reported" => {}
            other => {
                return Err(format!(
                    "`properties` may only hold `desired` and `reported`, found `{other}`"
                ));
            }
        }
    }
    Ok(desired)
}

/// `value` as an object, or why not.
fn object_field<'a>(name: &str, value: &'a Value) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("`{name}` must be an object, found {}", json_kind(value)))
}

/// The object at `path` in a twin; `None` when absent or null.
fn section<'a>(
    root: &'a Map<String, Value>,
    path: &[&str],
) -> Result<Option<&'a Map<String, Value>>, String> {
    let mut node = root;
    let mut name = String::new();
    for key in path {
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(key);
        match node.get(*key) {
            None | Some(Value::Null) => return Ok(None),
            Some(value) => node = object_field(&name, value)?,
        }
    }
    Ok(Some(node))
}

/// Makes the twin's `key` (`deviceId` or `moduleId`) say `expected`: filled
/// in when absent, an error when it names another twin.
fn claim_id(
    root: &mut Map<String, Value>,
    key: &str,
    expected: Option<&str>,
) -> Result<(), String> {
    match (root.get(key), expected) {
        (None | Some(Value::Null), None) => Ok(()),
        (None, Some(id)) => {
            root.insert(key.to_owned(), Value::from(id));
            Ok(())
        }
        (Some(Value::String(found)), Some(id)) if found == id => Ok(()),
        (Some(found), Some(id)) => Err(format!(
            "`{key}` is {}, but the twin is filed as `{id}`",
            shown(found)
        )),
        (Some(found), None) => Err(format!("`{key}` is {} in a device twin", shown(found))),
    }
}

/// Refuses keys starting with `$` anywhere in a patch: IoT Hub reserves them
/// (`$metadata`, `$version`, ...) and rejects them in writes.
fn reject_reserved_keys(
    id: &TwinId,
    section: Section,
    patch: &Map<String, Value>,
) -> Result<(), HubError> {
    fn find(pointer: &str, value: &Value) -> Option<String> {
        match value {
            Value::Object(map) => map.iter().find_map(|(key, child)| {
                let at = join_pointer(pointer, key);
                if key.starts_with('$') {
                    Some(at)
                } else {
                    find(&at, child)
                }
            }),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(at, item)| find(&format!("{pointer}/{at}"), item)),
            _ => None,
        }
    }
    match patch.iter().find_map(|(key, value)| {
        let at = join_pointer("", key);
        if key.starts_with('$') {
            Some(at)
        } else {
            find(&at, value)
        }
    }) {
        Some(pointer) => Err(HubError::InvalidTwin {
            twin: id.display(),
            reason: format!(
                "{} `{pointer}`: keys starting with `$` are reserved by IoT Hub",
                section.noun()
            ),
        }),
        None => Ok(()),
    }
}

/// IoT Hub's limits on one section's values (no `$metadata` or `$version`).
fn check_limits(
    id: &TwinId,
    section: Section,
    values: &Map<String, Value>,
) -> Result<(), HubError> {
    let mut problems: Vec<String> = limits::check(values)
        .iter()
        // The only problem without a pointer is the 32 KB desired size;
        // tags have their own size limit, checked below.
        .filter(|problem| section == Section::Desired || !problem.pointer.is_empty())
        .map(|problem| describe(section, problem))
        .collect();
    if section == Section::Tags {
        let size = limits::size(values);
        if size > MAX_TAGS_BYTES {
            problems.push(format!(
                "tags take {size} bytes, over IoT Hub's limit of {MAX_TAGS_BYTES}"
            ));
        }
    }
    let mut problems = problems.into_iter();
    match problems.next() {
        None => Ok(()),
        Some(first) => {
            let more = problems.count();
            let reason = if more == 0 {
                first
            } else {
                format!("{first} (and {more} more)")
            };
            Err(HubError::InvalidTwin {
                twin: id.display(),
                reason,
            })
        }
    }
}

fn describe(section: Section, problem: &LimitProblem) -> String {
    if problem.pointer.is_empty() {
        problem.reason.clone()
    } else {
        format!(
            "{} `{}`: {}",
            section.noun(),
            problem.pointer,
            problem.reason
        )
    }
}

/// RFC 7396 merge of `patch` into `target`.
fn merge(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                let mut child = take_object(target, key);
                merge(&mut child, inner);
                target.insert(key.clone(), Value::Object(child));
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

/// RFC 7396 merge of `patch` into desired `values`, keeping `metadata` (the
/// node of the same place in `$metadata`) in step: every node written is
/// stamped, a replaced node loses its old children's metadata, a removed
/// node loses its metadata.
fn merge_desired(
    values: &mut Map<String, Value>,
    metadata: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    stamp: &Stamp<'_>,
) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                values.remove(key);
                metadata.remove(key);
            }
            Value::Object(inner) => {
                let merged_into_object = values.get(key).is_some_and(Value::is_object);
                let mut child = take_object(values, key);
                let mut child_metadata = if merged_into_object {
                    take_object(metadata, key)
                } else {
                    Map::new()
                };
                stamp.mark(&mut child_metadata);
                merge_desired(&mut child, &mut child_metadata, inner, stamp);
                values.insert(key.clone(), Value::Object(child));
                metadata.insert(key.clone(), Value::Object(child_metadata));
            }
            other => {
                values.insert(key.clone(), other.clone());
                metadata.insert(key.clone(), Value::Object(stamp.node()));
            }
        }
    }
}

/// Removes and returns the object at `key`; an empty object when absent or
/// not an object (RFC 7396 merges into `{}` then).
fn take_object(map: &mut Map<String, Value>, key: &str) -> Map<String, Value> {
    match map.remove(key) {
        Some(Value::Object(inner)) => inner,
        _ => Map::new(),
    }
}

/// A section's `$version`, [`FIRST_VERSION`] when it has none.
fn section_version(section: &Map<String, Value>) -> u64 {
    section
        .get("$version")
        .and_then(Value::as_u64)
        .unwrap_or(FIRST_VERSION)
}

fn desired_version(root: &Map<String, Value>) -> u64 {
    root.get("properties")
        .and_then(|properties| properties.get("desired"))
        .and_then(Value::as_object)
        .map_or(FIRST_VERSION, section_version)
}

fn reported_version(root: &Map<String, Value>) -> u64 {
    root.get("properties")
        .and_then(|properties| properties.get("reported"))
        .and_then(Value::as_object)
        .map_or(FIRST_VERSION, section_version)
}

fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => format!("`{text}`"),
        other => json_kind(other).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::{
        MAX_MODULES_PER_DEVICE, StoredTwin, Written, check_if_match, etag_counter, etag_for,
        timestamp,
    };
    use crate::hub::{HubError, TwinId};

    impl Written {
        /// The twin after the write, changed or not.
        fn into_stored(self) -> StoredTwin {
            match self {
                Self::Changed(twin) | Self::Unchanged(twin) => twin,
            }
        }
    }

    const EARLIER: &str = "2026-01-01T00:00:00.0000000Z";
    const NOW: &str = "2026-11-26T11:40:00.0000000Z";

    fn id() -> TwinId {
        TwinId {
            device_id: "dev-1".to_owned(),
            module_id: Some("agent".to_owned()),
        }
    }

    fn fresh() -> StoredTwin {
        StoredTwin::new_module("dev-1", "agent", 0, EARLIER).unwrap()
    }

    /// A new module twin moved to the given counters.
    fn twin_at(desired: u64, reported: u64, tag_writes: u64) -> StoredTwin {
        let mut twin = fresh();
        let properties = twin.json.get_mut("properties").unwrap();
        properties["desired"]["$version"] = json!(desired);
        properties["reported"]["$version"] = json!(reported);
        twin.tag_writes = tag_writes;
        twin.restamp();
        twin
    }

    #[expect(
        clippy::needless_pass_by_value,
        reason = "callers write `json!` literals in place"
    )]
    fn patched(twin: &StoredTwin, patch: Value, now: &str) -> StoredTwin {
        twin.clone()
            .patched(&id(), &patch, now)
            .unwrap()
            .into_stored()
    }

    fn invalid<T: std::fmt::Debug>(result: Result<T, HubError>) -> String {
        match result {
            Err(HubError::InvalidTwin { reason, .. }) => reason,
            other => panic!("expected an invalid twin, got {other:?}"),
        }
    }

    fn at(twin: &StoredTwin, pointer: &str) -> Value {
        Value::Object(twin.json.clone())
            .pointer(pointer)
            .cloned()
            .unwrap_or_else(|| panic!("twin has no `{pointer}`"))
    }

    /// Desired properties without `$metadata` and `$version`.
    fn desired_values(twin: &StoredTwin) -> Value {
        let mut desired = at(twin, "/properties/desired").as_object().unwrap().clone();
        desired.remove("$metadata");
        desired.remove("$version");
        Value::Object(desired)
    }

    /// (desired `$version`, tag writes, etag, version).
    fn counters(twin: &StoredTwin) -> (u64, u64, String, u64) {
        (
            at(twin, "/properties/desired/$version").as_u64().unwrap(),
            twin.tag_writes,
            twin.etag().to_owned(),
            at(twin, "/version").as_u64().unwrap(),
        )
    }

    fn stamp(now: &str, version: u64) -> Value {
        json!({ "$lastUpdated": now, "$lastUpdatedVersion": version })
    }

    #[test]
    fn etags_are_big_endian_counters_in_base64() {
        assert_eq!(etag_for(1), "AAAAAAAAAAE=");
        assert_eq!(etag_for(20), "AAAAAAAAABQ=");
        assert_eq!(etag_for(22), "AAAAAAAAABY=");
        assert_eq!(etag_counter("AAAAAAAAABY="), Some(22));
        assert_eq!(etag_counter("NTgwMDg5MDAz"), None);
        assert_eq!(etag_counter("not base64"), None);
    }

    #[test]
    fn timestamps_are_written_like_iot_hubs() {
        assert_eq!(timestamp(Duration::ZERO), "1970-01-01T00:00:00.0000000Z");
        assert_eq!(timestamp(Duration::new(1_795_693_200, 0)), NOW);
        assert_eq!(
            timestamp(Duration::new(951_868_799, 123_456_789)),
            "2000-02-29T23:59:59.1234567Z"
        );
    }

    #[test]
    fn a_new_module_twin_has_iot_hubs_shape() {
        let twin = fresh();
        assert_eq!(
            Value::Object(twin.json.clone()),
            json!({
                "deviceId": "dev-1",
                "moduleId": "agent",
                "etag": "AAAAAAAAAAE=",
                "version": 2,
                "status": "enabled",
                "statusUpdateTime": "0001-01-01T00:00:00Z",
                "connectionState": "Disconnected",
                "lastActivityTime": "0001-01-01T00:00:00Z",
                "cloudToDeviceMessageCount": 0,
                "authenticationType": "sas",
                "x509Thumbprint": { "primaryThumbprint": null, "secondaryThumbprint": null },
                "modelId": "",
                "tags": {},
                "properties": {
                    "desired": { "$metadata": { "$lastUpdated": EARLIER }, "$version": 1 },
                    "reported": { "$metadata": { "$lastUpdated": EARLIER }, "$version": 1 },
                },
            })
        );
        assert_eq!(twin.tag_writes, 0);
    }

    #[test]
    fn module_creation_follows_id_rules_and_the_module_limit() {
        let reason =
            |module: &str, existing| invalid(StoredTwin::new_module("d", module, existing, NOW));
        assert_eq!(reason("", 0), "a module id cannot be empty");
        assert!(
            reason("a b", 0).contains("contains ` `"),
            "{}",
            reason("a b", 0)
        );
        assert!(reason(&"m".repeat(129), 0).contains("129 characters"));
        assert_eq!(
            reason("m", MAX_MODULES_PER_DEVICE),
            "device `d` already has 50 modules, IoT Hub's limit is 50"
        );
        assert!(StoredTwin::new_module("d", "m-1:(x)'$", MAX_MODULES_PER_DEVICE - 1, NOW).is_ok());
    }

    #[test]
    fn patches_merge_objects_replace_values_and_delete_nulls_at_any_depth() {
        let twin = patched(
            &fresh(),
            json!({
                "tags": { "t": { "u": 1, "v": 2 } },
                "properties": { "desired": {
                    "a": { "b": 1, "c": { "d": 2, "e": 3 } },
                    "keep": "x",
                    "list": [1, 2],
                    "s": "old",
                    "gone": true,
                } },
            }),
            EARLIER,
        );
        let twin = patched(
            &twin,
            json!({
                "tags": { "t": { "u": null }, "w": "z" },
                "properties": { "desired": {
                    "a": { "c": { "d": null, "f": 4 } },
                    "list": [3],
                    "s": { "now": "an object", "dropped": null },
                    "gone": null,
                    "never-there": null,
                } },
            }),
            NOW,
        );
        assert_eq!(at(&twin, "/tags"), json!({ "t": { "v": 2 }, "w": "z" }));
        assert_eq!(
            desired_values(&twin),
            json!({
                "a": { "b": 1, "c": { "e": 3, "f": 4 } },
                "keep": "x",
                "list": [3],
                "s": { "now": "an object" },
            })
        );
    }

    #[test]
    fn desired_writes_stamp_metadata_and_bump_desired_version() {
        let first = patched(
            &fresh(),
            json!({ "properties": { "desired": { "a": { "b": 1, "c": 2 }, "z": 1 } } }),
            EARLIER,
        );
        assert_eq!(counters(&first), (2, 0, etag_for(2), 3));
        let second = patched(
            &first,
            json!({ "properties": { "desired": { "a": { "b": null, "d": 3 } } } }),
            NOW,
        );
        assert_eq!(counters(&second), (3, 0, etag_for(3), 4));
        let mut root = stamp(NOW, 3);
        root["a"] = stamp(NOW, 3);
        root["a"]["c"] = stamp(EARLIER, 2);
        root["a"]["d"] = stamp(NOW, 3);
        root["z"] = stamp(EARLIER, 2);
        assert_eq!(at(&second, "/properties/desired/$metadata"), root);
        assert_eq!(
            at(&second, "/properties/reported"),
            at(&fresh(), "/properties/reported")
        );
    }

    #[test]
    fn a_scalar_replacing_an_object_drops_its_children_metadata() {
        let twin = patched(
            &fresh(),
            json!({ "properties": { "desired": { "a": { "b": 1 } } } }),
            EARLIER,
        );
        let twin = patched(
            &twin,
            json!({ "properties": { "desired": { "a": 5 } } }),
            NOW,
        );
        assert_eq!(at(&twin, "/properties/desired/$metadata/a"), stamp(NOW, 3));
    }

    #[test]
    fn tags_only_patches_count_a_tag_write_and_leave_desired_alone() {
        let before = fresh();
        let twin = patched(&before, json!({ "tags": { "x": 1 } }), NOW);
        assert_eq!(counters(&twin), (1, 1, etag_for(2), 3));
        assert_eq!(
            at(&twin, "/properties/desired"),
            at(&before, "/properties/desired")
        );
    }

    #[test]
    fn counters_match_the_reference_samples() {
        // (desired, reported, tag writes → etag, version), reference §5.3.
        assert_eq!(counters(&fresh()), (1, 0, "AAAAAAAAAAE=".to_owned(), 2));
        assert_eq!(
            counters(&twin_at(20, 1, 0)),
            (20, 0, "AAAAAAAAABQ=".to_owned(), 21)
        );
        let mixed = patched(
            &twin_at(20, 2, 0),
            json!({ "tags": { "x": 1 }, "properties": { "desired": { "y": 1 } } }),
            NOW,
        );
        assert_eq!(counters(&mixed), (21, 1, "AAAAAAAAABY=".to_owned(), 24));
    }

    #[test]
    fn reported_properties_and_read_only_fields_are_ignored() {
        let before = fresh();
        // What C# v1 sends: ids, null etag and version, an empty reported.
        let twin = patched(
            &before,
            json!({
                "deviceId": "dev-1",
                "etag": null,
                "version": null,
                "tags": {},
                "properties": { "desired": { "y": 1 }, "reported": { "fake": true } },
            }),
            NOW,
        );
        assert_eq!(
            at(&twin, "/properties/reported"),
            at(&before, "/properties/reported")
        );
        assert_eq!(counters(&twin), (2, 0, etag_for(2), 3));
    }

    #[test]
    fn empty_patches_change_nothing() {
        let before = fresh();
        assert_eq!(
            before
                .clone()
                .patched(&id(), &json!({ "tags": {} }), NOW)
                .unwrap(),
            Written::Unchanged(before.clone())
        );
        assert_eq!(patched(&before, json!({}), NOW), before);
        assert_eq!(
            patched(
                &before,
                json!({ "tags": {}, "properties": { "desired": {} } }),
                NOW
            ),
            before
        );
    }

    #[test]
    fn patches_may_write_only_tags_and_desired_properties() {
        let reason = |patch: Value| invalid(fresh().patched(&id(), &patch, NOW));
        assert_eq!(
            reason(json!({ "status": "disabled" })),
            "a twin patch may only write `tags` and `properties.desired`, found `status`"
        );
        assert_eq!(
            reason(json!({ "properties": { "desire": {} } })),
            "`properties` may only hold `desired` and `reported`, found `desire`"
        );
        assert_eq!(
            reason(json!({ "tags": 5 })),
            "`tags` must be an object, found a number"
        );
        assert_eq!(
            reason(json!({ "properties": { "desired": null } })),
            "`properties.desired` must be an object, found null"
        );
        assert_eq!(
            reason(json!([1])),
            "a twin patch must be a JSON object, found an array"
        );
    }

    #[test]
    fn keys_starting_with_dollar_are_refused_anywhere() {
        let reason = |patch: Value| invalid(fresh().patched(&id(), &patch, NOW));
        assert_eq!(
            reason(json!({ "properties": { "desired": { "$version": 5 } } })),
            "desired property `/$version`: keys starting with `$` are reserved by IoT Hub"
        );
        assert!(
            reason(json!({ "properties": { "desired": { "a": { "$x": null } } } }))
                .starts_with("desired property `/a/$x`")
        );
        assert!(
            reason(json!({ "properties": { "desired": { "a": [{ "$k": 1 }] } } }))
                .starts_with("desired property `/a/0/$k`")
        );
        assert!(reason(json!({ "tags": { "$t": 1 } })).starts_with("tag `/$t`"));
    }

    #[test]
    fn limits_are_checked_on_the_result_of_each_write() {
        let reason =
            |twin: &StoredTwin, patch: Value| invalid(twin.clone().patched(&id(), &patch, NOW));
        let desired = |values: Value| json!({ "properties": { "desired": values } });
        let twin = fresh();
        assert_eq!(
            reason(&twin, desired(json!({ "a.b": 1 }))),
            "desired property `/a.b`: key `a.b` contains `.`"
        );
        let mut deep = json!("leaf");
        for _ in 0..11 {
            deep = json!({ "d": deep });
        }
        assert!(
            reason(&twin, desired(deep))
                .contains("nesting is deeper than IoT Hub's limit of 10 levels")
        );
        assert!(
            reason(&twin, desired(json!({ "s": "x".repeat(5000) })))
                .contains("over IoT Hub's limit of 4096")
        );
        assert_eq!(
            reason(&twin, desired(json!({ "l": [1, null] }))),
            "desired property `/l/1`: a list holds null, which IoT Hub rejects"
        );
        assert_eq!(
            reason(&twin, desired(json!({ "l": [null], "m": [null] }))),
            "desired property `/l/0`: a list holds null, which IoT Hub rejects (and 1 more)"
        );
        // Each patch is small; the desired section they make is not.
        let mut big = twin.clone();
        for key in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            big = patched(&big, desired(json!({ key: "x".repeat(4000) })), NOW);
        }
        assert!(
            reason(&big, desired(json!({ "i": "x".repeat(4000) })))
                .contains("over IoT Hub's limit of 32768")
        );
        assert_eq!(
            reason(
                &twin,
                json!({ "tags": { "a": "x".repeat(4000), "b": "x".repeat(4000), "c": "x".repeat(1000) } })
            ),
            "tags take 9003 bytes, over IoT Hub's limit of 8192"
        );
        assert!(
            reason(&twin, json!({ "tags": { "k": 4_503_599_627_370_496_i64 } }))
                .starts_with("tag `/k`: integer")
        );
    }

    #[test]
    fn replace_swaps_all_tags_and_desired_properties() {
        let twin = patched(
            &fresh(),
            json!({ "tags": { "a": 1, "b": 2 }, "properties": { "desired": { "x": { "y": 1 }, "z": 2 } } }),
            EARLIER,
        );
        assert_eq!(counters(&twin), (2, 1, etag_for(3), 4));
        // A PUT body as read back: read-only fields, `$metadata`, `$version`.
        let mut body = Value::Object(twin.json.clone());
        body["tags"] = json!({ "c": 3 });
        body["properties"]["desired"]["x"] = json!({ "w": 5 });
        body["properties"]["desired"]
            .as_object_mut()
            .unwrap()
            .remove("z");
        let replaced = twin
            .clone()
            .replaced(&id(), &body, NOW)
            .unwrap()
            .into_stored();
        assert_eq!(at(&replaced, "/tags"), json!({ "c": 3 }));
        assert_eq!(desired_values(&replaced), json!({ "x": { "w": 5 } }));
        let mut metadata = stamp(NOW, 3);
        metadata["x"] = stamp(NOW, 3);
        metadata["x"]["w"] = stamp(NOW, 3);
        assert_eq!(at(&replaced, "/properties/desired/$metadata"), metadata);
        assert_eq!(counters(&replaced), (3, 2, etag_for(5), 6));
        assert_eq!(
            at(&replaced, "/properties/reported"),
            at(&twin, "/properties/reported")
        );

        // Omitted sections are cleared (whether IoT Hub clears omitted tags is UNCONFIRMED).
        let cleared = replaced
            .clone()
            .replaced(&id(), &json!({}), NOW)
            .unwrap()
            .into_stored();
        assert_eq!(at(&cleared, "/tags"), json!({}));
        assert_eq!(desired_values(&cleared), json!({}));
        assert_eq!(counters(&cleared), (4, 3, etag_for(7), 8));

        let reason = invalid(twin.clone().replaced(
            &id(),
            &json!({ "tags": { "a": [null] } }),
            NOW,
        ));
        assert_eq!(
            reason,
            "tag `/a/0`: a list holds null, which IoT Hub rejects"
        );
    }

    #[test]
    fn imported_twins_keep_their_json_and_continue_their_counters() {
        // The demo fleet's gateway: desired 1, reported 2, etag 3, version 5.
        let json = json!({
            "deviceId": "gw",
            "etag": "AAAAAAAAAAM=",
            "version": 5,
            "tags": { "ring": "canary" },
            "properties": {
                "desired": { "$metadata": { "$lastUpdated": EARLIER }, "$version": 1 },
                "reported": { "$metadata": { "$lastUpdated": EARLIER }, "$version": 2 },
            },
        });
        let gateway = TwinId {
            device_id: "gw".to_owned(),
            module_id: None,
        };
        let twin = StoredTwin::imported(&gateway, json.clone()).unwrap();
        assert_eq!(Value::Object(twin.json.clone()), json);
        assert_eq!(twin.tag_writes, 2);
        let next = twin
            .patched(&gateway, &json!({ "tags": { "ring": "broad" } }), NOW)
            .unwrap()
            .into_stored();
        assert_eq!(counters(&next), (1, 3, etag_for(4), 6));

        let bare = StoredTwin::imported(&gateway, json!({ "tags": { "x": 1 } })).unwrap();
        assert_eq!(
            Value::Object(bare.json),
            json!({ "deviceId": "gw", "etag": "AAAAAAAAAAE=", "version": 2, "tags": { "x": 1 } })
        );
        assert_eq!(
            invalid(StoredTwin::imported(
                &gateway,
                json!({ "deviceId": "other" })
            )),
            "`deviceId` is `other`, but the twin is filed as `gw`"
        );
        assert_eq!(
            invalid(StoredTwin::imported(
                &gateway,
                json!({ "tags": { "a.b": 1 } })
            )),
            "tag `/a.b`: key `a.b` contains `.`"
        );
    }

    #[test]
    fn if_match_is_star_or_the_exact_etag_quoted_or_not() {
        let current = "AAAAAAAAAAE=";
        for sent in [
            None,
            Some("*"),
            Some("\"*\""),
            Some("\"AAAAAAAAAAE=\""),
            Some("AAAAAAAAAAE="),
        ] {
            assert!(check_if_match(&id(), sent, current).is_ok(), "{sent:?}");
        }
        for sent in ["\"AAAAAAAAAAI=\"", "AAAAAAAAAAI=", "abc", "", "\"\""] {
            match check_if_match(&id(), Some(sent), current) {
                Err(HubError::PreconditionFailed { twin, actual, .. }) => {
                    assert_eq!(twin, "dev-1/agent");
                    assert_eq!(actual, current);
                }
                other => panic!("{sent}: expected a failed precondition, got {other:?}"),
            }
        }
        let Err(HubError::PreconditionFailed { expected, .. }) =
            check_if_match(&id(), Some("\"AAAAAAAAAAI=\""), current)
        else {
            panic!("expected a failed precondition");
        };
        assert_eq!(expected, "AAAAAAAAAAI=");
    }
}
