//! Ownership: what twinops manages on a twin, recorded in the twin's own
//! tags under `tags.twinops`.
//!
//! ```json
//! "twinops": {
//!   "managed": { "<desired property>": "<digest of the value written>" },
//!   "policySet": "<digest of the policy set that last changed this twin>"
//! }
//! ```
//!
//! A managed property whose live value no longer has the recorded digest was
//! changed outside twinops (drift). Properties not in `managed` are never
//! touched. The tag is written in the same patch as the desired properties,
//! so the two never disagree after a crash.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The tag key under which ownership is recorded.
pub const TAG: &str = "twinops";

/// Ownership recorded on one twin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Managed desired property → digest of the value twinops wrote.
    pub managed: BTreeMap<String, String>,
    /// The policy set (or commit) that last changed the twin.
    pub policy_set: Option<String>,
    /// The git commit whose policies last changed what twinops manages here
    /// (`apply --rev`); absent when they were not committed.
    pub commit: Option<String>,
}

impl Ownership {
    /// Reads `tags.twinops` of a twin; `None` when the twin is unmanaged.
    /// A malformed tag counts as unmanaged: twinops then owns nothing there.
    #[must_use]
    pub fn read(twin: &Value) -> Option<Self> {
        Self::from_tag(twin.pointer(&format!("/tags/{TAG}"))?)
    }

    /// Reads the value of a `twinops` tag; `None` when it is malformed.
    #[must_use]
    pub fn from_tag(tag: &Value) -> Option<Self> {
        let tag = tag.as_object()?;
        let managed = tag
            .get("managed")?
            .as_object()?
            .iter()
            .filter_map(|(property, digest)| Some((property.clone(), digest.as_str()?.to_owned())))
            .collect();
        Some(Self {
            managed,
            policy_set: tag
                .get("policySet")
                .and_then(Value::as_str)
                .map(str::to_owned),
            commit: tag.get("commit").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// The tag value to write.
    #[must_use]
    pub fn to_tag(&self) -> Value {
        let mut tag = json!({ "managed": self.managed, "policySet": self.policy_set });
        if let (Some(commit), Some(tag)) = (&self.commit, tag.as_object_mut()) {
            tag.insert("commit".to_owned(), json!(commit));
        }
        tag
    }
}

/// A short, stable digest of a JSON value (sorted keys, compact).
#[must_use]
pub fn digest(value: &Value) -> String {
    digest_text(&serde_json::to_string(value).unwrap_or_default())
}

/// [`digest`] of the value whose compact JSON text is `canonical`.
#[must_use]
pub fn digest_text(canonical: &str) -> String {
    let hash = Sha256::digest(canonical.as_bytes());
    hex(hash.get(..8).unwrap_or_default())
}

/// Lowercase hexadecimal.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// The live desired properties of a twin, without `$metadata` and `$version`.
#[must_use]
pub fn live_desired(twin: &Value) -> Map<String, Value> {
    twin.pointer("/properties/desired")
        .and_then(Value::as_object)
        .map(|desired| {
            desired
                .iter()
                .filter(|(key, _)| !key.starts_with('$'))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Ownership, digest, live_desired};

    #[test]
    fn reads_and_writes_the_tag() {
        let twin = json!({"tags": {"twinops": {"managed": {"p": "abc"}, "policySet": "d1"}}});
        let ownership = Ownership::read(&twin).unwrap();
        assert_eq!(ownership.managed["p"], "abc");
        assert_eq!(
            ownership.to_tag(),
            json!({"managed": {"p": "abc"}, "policySet": "d1"})
        );
        assert_eq!(
            Ownership::read(&json!({"tags": {"twinops": "garbage"}})),
            None
        );
        assert_eq!(Ownership::read(&json!({"tags": {}})), None);
    }

    #[test]
    fn digests_ignore_key_order_and_live_desired_drops_metadata() {
        assert_eq!(
            digest(&json!({"a": 1, "b": 2})),
            digest(&json!({"b": 2, "a": 1}))
        );
        assert_ne!(digest(&json!({"a": 1})), digest(&json!({"a": 2})));
        let twin = json!({"properties": {"desired": {"x": 1, "$version": 4, "$metadata": {}}}});
        assert_eq!(live_desired(&twin).len(), 1);
    }
}
