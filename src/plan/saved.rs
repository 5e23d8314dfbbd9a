//! Saved plans: the plan as a JSON document with a format version and a
//! checksum, so that apply can refuse one made for another hub or edited by
//! hand. The same document is `plan --format json`.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::value::{RawValue, to_raw_value};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::hub::{HubIdentity, TwinId};
use crate::plan::{Action, Convergence, LeafChange, Origin, Plan, PlanFileError, TwinPlan};

/// The plan format this twinops writes and reads.
pub const FORMAT_VERSION: u64 = 1;

/// The plan as its JSON document.
#[must_use]
pub fn to_json(plan: &Plan) -> Value {
    let body = serde_json::to_value(plan).unwrap_or(Value::Null);
    let checksum = checksum(&body);
    json!({ "format_version": FORMAT_VERSION, "plan": body, "checksum": checksum })
}

/// Writes the plan's JSON document (pretty, as [`to_json`] gives it) to
/// `out` without building it in memory: the plan is serialised twice, once
/// into the checksum and once into `out`.
///
/// # Errors
/// When writing fails.
pub fn write(plan: &Plan, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut digest = Digesting(Sha256::new());
    serde_json::to_writer(&mut digest, plan)?;
    let checksum = crate::plan::ownership::hex(&digest.0.finalize());
    let document = Document {
        checksum,
        format_version: FORMAT_VERSION,
        plan,
    };
    serde_json::to_writer_pretty(&mut *out, &document)?;
    writeln!(out)
}

/// Writes a plan file: the same document compact, with the checksum last,
/// so that the plan is serialised once, into the file and the checksum
/// together. [`from_json`] reads either form.
///
/// # Errors
/// When writing fails.
pub fn write_file(plan: &Plan, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    write!(out, "{{\"format_version\":{FORMAT_VERSION},\"plan\":")?;
    // A large plan is hundreds of megabytes: it is hashed on another core
    // while it is written, a chunk at a time.
    let (chunks, hashed) = std::sync::mpsc::sync_channel::<Arc<Vec<u8>>>(HASHED_AHEAD);
    let digest = std::thread::scope(|scope| {
        let hashing = scope.spawn(move || {
            let mut digest = Sha256::new();
            for chunk in hashed {
                digest.update(chunk.as_slice());
            }
            digest.finalize()
        });
        let mut tee = Tee {
            chunk: Vec::with_capacity(TEE_CHUNK),
            chunks,
            out: &mut *out,
        };
        let written = serde_json::to_writer(&mut tee, &PlanText::of(plan))
            .map_err(std::io::Error::from)
            .and_then(|()| tee.pass_on());
        // The hasher ends once the last chunk is in.
        drop(tee);
        let digest = hashing.join().map_err(|_| unhashed());
        written.and(digest)
    })?;
    let checksum = crate::plan::ownership::hex(&digest);
    writeln!(out, ",\"checksum\":\"{checksum}\"}}")
}

/// Bytes [`Tee`] gathers before it writes them and hands them to the hasher.
const TEE_CHUNK: usize = 1 << 20;

/// Chunks written but not yet hashed, at most.
const HASHED_AHEAD: usize = 4;

/// A plan as [`write_file`] serialises it: the bytes of [`Plan`]'s own
/// serialisation, but each distinct list of changes and each distinct patch
/// is serialised once and copied for every twin that shares it. Walking
/// thousands of distinct JSON trees, one per changed twin, is otherwise
/// what bounds writing a large plan.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PlanText<'p> {
    // The fields of `Plan`, in its order.
    changes: TwinsText<'p>,
    lagging: LaggingText<'p>,
    missing_modules: &'p [TwinId],
    origin: &'p Origin,
    unchanged: usize,
}

impl<'p> PlanText<'p> {
    fn of(plan: &'p Plan) -> Self {
        Self {
            changes: TwinsText(&plan.changes),
            lagging: LaggingText(&plan.lagging),
            missing_modules: &plan.missing_modules,
            origin: &plan.origin,
            unchanged: plan.unchanged,
        }
    }
}

/// The lagging twins, as [`Plan`] serialises them.
struct LaggingText<'p>(&'p BTreeMap<Convergence, Vec<TwinId>>);

impl serde::Serialize for LaggingText<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        super::by_name(self.0, serializer)
    }
}

struct TwinsText<'p>(&'p [TwinPlan]);

/// One twin of [`TwinsText`]: the fields of [`TwinPlan`], in its order.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct TwinText<'p> {
    action: Action,
    changes: &'p RawValue,
    device_id: &'p str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    drifted: &'p [String],
    etag: Option<&'p str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    module_id: Option<&'p str>,
    patch: &'p RawValue,
}

impl serde::Serialize for TwinsText<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq as _};
        // Keyed by the address of the shared copy, which the plan holds
        // while it is written. Patches are held as their text already.
        let mut changes: HashMap<*const Vec<LeafChange>, Box<RawValue>> = HashMap::new();
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for twin in self.0 {
            let changes = match changes.entry(Arc::as_ptr(&twin.changes)) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => {
                    new.insert(to_raw_value(&*twin.changes).map_err(S::Error::custom)?)
                }
            };
            seq.serialize_element(&TwinText {
                action: twin.action,
                changes,
                device_id: &twin.device_id,
                drifted: &twin.drifted,
                etag: twin.etag.as_deref(),
                module_id: twin.module_id.as_deref(),
                patch: twin.patch.text(),
            })?;
        }
        seq.end()
    }
}

/// A writer that gathers bytes into chunks, and passes each chunk on both
/// to `out` and to a hasher.
struct Tee<'o> {
    chunk: Vec<u8>,
    chunks: std::sync::mpsc::SyncSender<Arc<Vec<u8>>>,
    out: &'o mut dyn std::io::Write,
}

impl Tee<'_> {
    /// Writes and hands on the bytes gathered so far.
    fn pass_on(&mut self) -> std::io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = Arc::new(std::mem::replace(
            &mut self.chunk,
            Vec::with_capacity(TEE_CHUNK),
        ));
        self.out.write_all(&chunk)?;
        self.chunks.send(chunk).map_err(|_| unhashed())
    }
}

/// The error when the hasher stopped before the plan was written.
fn unhashed() -> std::io::Error {
    std::io::Error::other("the plan's checksum could not be computed")
}

impl std::io::Write for Tee<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.chunk.extend_from_slice(bytes);
        if self.chunk.len() >= TEE_CHUNK {
            self.pass_on()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.pass_on()?;
        self.out.flush()
    }
}

/// A saved plan's members, in the order a sorted JSON object has them.
#[derive(serde::Serialize)]
struct Document<'a> {
    checksum: String,
    format_version: u64,
    plan: &'a Plan,
}

/// A writer that only feeds a digest.
struct Digesting(Sha256);

impl std::io::Write for Digesting {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn checksum(body: &Value) -> String {
    let canonical = serde_json::to_string(body).unwrap_or_default();
    crate::plan::ownership::hex(&Sha256::digest(canonical.as_bytes()))
}

/// A saved plan as read: the plan is parsed only once its version is known.
#[derive(serde::Deserialize)]
struct Stored<'a> {
    format_version: Option<u64>,
    #[serde(borrow)]
    plan: Option<&'a serde_json::value::RawValue>,
    checksum: Option<String>,
}

/// Reads a saved plan and checks it may be applied to `hub`. The plan is
/// read straight into its types, and twins that change alike share their
/// changes and patch again, so a plan of a million twins reads in a
/// fraction of its size as JSON values.
///
/// # Errors
/// When the text is not a plan, is of another format version, was edited,
/// or was made for another hub or from a snapshot.
pub fn from_json(path: &str, text: &str, hub: &HubIdentity) -> Result<Plan, PlanFileError> {
    let unreadable = |reason: String| PlanFileError::Unreadable {
        path: path.to_owned(),
        reason,
    };
    let stored: Stored<'_> =
        serde_json::from_str(text).map_err(|error| unreadable(error.to_string()))?;
    let version = stored
        .format_version
        .ok_or_else(|| unreadable("no `format_version`".to_owned()))?;
    if version != FORMAT_VERSION {
        return Err(PlanFileError::Version {
            path: path.to_owned(),
            found: version,
            expected: FORMAT_VERSION,
        });
    }
    let body = stored
        .plan
        .ok_or_else(|| unreadable("no `plan`".to_owned()))?;
    let plan: Plan =
        serde_json::from_str(body.get()).map_err(|error| unreadable(error.to_string()))?;
    // A plan serialises as its sorted JSON value does (see `write`), so this
    // is the checksum of what was written, less members no plan has.
    let mut digest = Digesting(Sha256::new());
    serde_json::to_writer(&mut digest, &PlanText::of(&plan))
        .map_err(|error| unreadable(error.to_string()))?;
    let found = crate::plan::ownership::hex(&digest.0.finalize());
    if stored.checksum.as_deref() != Some(found.as_str()) {
        return Err(PlanFileError::Edited {
            path: path.to_owned(),
        });
    }
    match &plan.origin.hub {
        None => Err(PlanFileError::FromSnapshot {
            path: path.to_owned(),
        }),
        Some(planned) if planned != hub => Err(PlanFileError::OtherHub {
            path: path.to_owned(),
            planned: format!("{} hub `{}`", planned.kind, planned.id),
            target: format!("{} hub `{}`", hub.kind, hub.id),
        }),
        Some(_) => Ok(plan),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use std::sync::Arc;

    use serde_json::json;

    use super::{from_json, to_json, write, write_file};
    use crate::hub::HubIdentity;
    use crate::hub::TwinId;
    use crate::plan::patch::Patch;
    use crate::plan::{
        Action, Convergence, LeafChange, Op, Origin, Plan, PlanFileError, Reason, TwinPlan,
    };

    fn hub(id: &str) -> HubIdentity {
        HubIdentity {
            kind: "local".into(),
            id: id.into(),
        }
    }

    fn plan() -> Plan {
        Plan {
            origin: Origin {
                hub: Some(hub("a")),
                policy_set: "p".into(),
                commit: None,
            },
            changes: Vec::new(),
            unchanged: 3,
            missing_modules: Vec::new(),
            lagging: BTreeMap::new(),
        }
    }

    #[test]
    fn round_trips_and_refuses_edits_other_hubs_and_truncation() {
        let text = to_json(&plan()).to_string();
        assert_eq!(from_json("p.json", &text, &hub("a")), Ok(plan()));
        assert!(matches!(
            from_json("p.json", &text, &hub("b")),
            Err(PlanFileError::OtherHub { .. })
        ));
        let edited = text.replace("\"unchanged\":3", "\"unchanged\":4");
        assert_ne!(edited, text);
        assert!(matches!(
            from_json("p.json", &edited, &hub("a")),
            Err(PlanFileError::Edited { .. })
        ));
        assert!(matches!(
            from_json("p.json", &text[..text.len() / 2], &hub("a")),
            Err(PlanFileError::Unreadable { .. })
        ));
        let mut snapshot = plan();
        snapshot.origin.hub = None;
        assert!(matches!(
            from_json("p.json", &to_json(&snapshot).to_string(), &hub("a")),
            Err(PlanFileError::FromSnapshot { .. })
        ));
    }

    /// A plan written as it is serialised is exactly the document of its
    /// sorted JSON value, so the checksum holds either way.
    #[test]
    fn writing_as_it_goes_gives_the_sorted_document() {
        let twin = |device: &str, module: Option<&str>| TwinId {
            device_id: device.into(),
            module_id: module.map(Into::into),
        };
        let mut full = plan();
        full.origin.commit = Some("c0ffee".into());
        full.changes.push(TwinPlan {
            device_id: "d".into(),
            module_id: Some("m".into()),
            action: Action::Update,
            etag: Some("e".into()),
            drifted: vec!["p".into()],
            changes: Arc::new(vec![
                LeafChange {
                    path: "/p/a".into(),
                    op: Op::Update,
                    before: Some(json!(1)),
                    after: Some(json!({"z": 1, "a": [true, null]})),
                    reason: Reason::Policy {
                        policy: "x".into(),
                        source: "p.yaml:1:2".into(),
                    },
                },
                LeafChange {
                    path: "/p/b".into(),
                    op: Op::Remove,
                    before: Some(json!("v")),
                    after: None,
                    reason: Reason::Default { schema: "s".into() },
                },
            ]),
            patch: Arc::new(Patch::new(
                &json!({"tags": {"twinops": null}, "properties": {"desired": {"p": 1.5}}}),
            )),
        });
        // A twin sharing the first one's changes and patch, with none of
        // the optional fields.
        let mut shared = full.changes[0].clone();
        shared.device_id = "f".into();
        shared.module_id = None;
        shared.drifted.clear();
        shared.etag = None;
        full.changes.push(shared);
        full.missing_modules.push(twin("e", Some("m")));
        full.lagging
            .insert(Convergence::Pending, vec![twin("a", None)]);
        full.lagging
            .insert(Convergence::Differing, vec![twin("b", Some("m"))]);
        let mut written = Vec::new();
        write(&full, &mut written).unwrap();
        let expected = serde_json::to_string_pretty(&to_json(&full)).unwrap() + "\n";
        assert_eq!(String::from_utf8(written).unwrap(), expected);
        assert_eq!(from_json("p.json", &expected, &hub("a")), Ok(full.clone()));
        let mut file = Vec::new();
        write_file(&full, &mut file).unwrap();
        let file = String::from_utf8(file).unwrap();
        let document: serde_json::Value = serde_json::from_str(&file).unwrap();
        assert_eq!(document, to_json(&full), "the same document, compact");
        assert_eq!(from_json("p.json", &file, &hub("a")), Ok(full));
    }
}
