//! Local hub: device and module twins in one SQLite file, written the way IoT
//! Hub writes them.
//!
//! [`LocalHub`] implements [`Hub`] for a database file made by
//! [`LocalHub::open`]; [`LocalHub::import`] seeds it from a [`Fleet`] and
//! [`LocalHub::export`] writes it back as an NDJSON snapshot. What a write
//! does to a twin is [`crate::hub::model`]'s; this module stores it.
//!
//! Schema (version [`SCHEMA_VERSION`]):
//!
//! - `meta(key, value)`: `format` = [`FORMAT`] (the marker that tells a
//!   twinops hub from any other SQLite file), `schema_version`, and `hub_id`,
//!   a UUID made when the file was created ([`HubIdentity::id`]).
//! - `twins(device_id, module_id, tag_writes, twin)`, keyed by
//!   `(device_id, module_id)`: one row per twin. `module_id` is `''` for the
//!   device twin (IoT Hub module ids are never empty), so rows sort by device
//!   then module with the device twin first. `twin` is the compact JSON
//!   exactly as IoT Hub returns it; `tag_writes` is
//!   [`StoredTwin::tag_writes`], kept out of the JSON users see.
//!
//! Invariants: every module twin's device twin exists; every write is one
//! `IMMEDIATE` transaction (read, `If-Match`, model, write), with WAL and
//! `synchronous=FULL`, so a killed process leaves every twin before or after
//! a write, never torn, and two processes on one file wait for each other
//! (up to [`BUSY_TIMEOUT`]) rather than fail or lose an update. A file that
//! is not a twinops hub is never written. The wall clock (for `$lastUpdated`)
//! is read here and nowhere in the model.

use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use serde_json::Value;

use crate::fleet::{Device, Fleet, Twin};
use crate::hub::model::{self, MAX_MODULES_PER_DEVICE, StoredTwin};
use crate::hub::{DevicePage, Hub, HubError, HubIdentity, TwinId};

/// The `meta.format` marker of a twinops local hub.
pub const FORMAT: &str = "twinops-local-hub";
/// The schema this twinops writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// How long a write waits for another process holding the file.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// `module_id` of a device twin's row.
const DEVICE_ROW: &str = "";

const SCHEMA: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE twins (
    device_id  TEXT NOT NULL,
    module_id  TEXT NOT NULL DEFAULT '',
    tag_writes INTEGER NOT NULL DEFAULT 0,
    twin       TEXT NOT NULL,
    PRIMARY KEY (device_id, module_id)
) WITHOUT ROWID;
";

/// A twinops local hub: an SQLite file of twins.
#[derive(Debug)]
pub struct LocalHub {
    /// The file, for messages.
    path: String,
    /// The hub id from `meta`.
    id: String,
    connection: Mutex<Connection>,
}

impl LocalHub {
    /// Opens the local hub at `path`, creating the file (with a new hub id)
    /// when it does not exist or is empty.
    ///
    /// # Errors
    /// [`HubError::NotAHub`] when the file is not a twinops hub (not SQLite,
    /// SQLite without the twinops marker, or a newer schema), leaving it
    /// untouched; [`HubError::Storage`] when SQLite or the disk fails.
    pub fn open(path: &Path) -> Result<Self, HubError> {
        let shown = path.display().to_string();
        let storage = |error: &dyn std::fmt::Display| HubError::Storage {
            path: shown.clone(),
            reason: error.to_string(),
        };
        let fresh = match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_dir() => {
                return Err(not_a_hub(&shown, "it is a directory"));
            }
            Ok(metadata) => metadata.len() == 0,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => true,
            Err(error) => return Err(storage(&error)),
        };
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if fresh {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let mut connection =
            Connection::open_with_flags(path, flags).map_err(|error| classify(&shown, &error))?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|error| storage(&error))?;
        if fresh {
            create_schema(&mut connection).map_err(|error| classify(&shown, &error))?;
        }
        // A file that existed is checked before anything is written to it.
        let id = read_identity(&connection, &shown)?;
        let journal: String = connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|error| storage(&error))?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(storage(&format!(
                "cannot use SQLite's write-ahead log here (journal mode stays `{journal}`)"
            )));
        }
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|error| storage(&error))?;
        Ok(Self {
            path: shown,
            id,
            connection: Mutex::new(connection),
        })
    }

    /// Whether the hub holds no twin.
    ///
    /// # Errors
    /// [`HubError::Storage`] when SQLite fails.
    pub fn is_empty(&self) -> Result<bool, HubError> {
        let connection = self.lock()?;
        let any: bool = connection
            .query_row("SELECT EXISTS (SELECT 1 FROM twins)", [], |row| row.get(0))
            .map_err(|error| self.storage(&error))?;
        Ok(!any)
    }

    /// Adds every twin of `fleet` (as [`crate::hub::snapshot::parse`] reads
    /// it), all or nothing, in one transaction; returns how many twins were
    /// added.
    ///
    /// An import never replaces: a twin the hub already holds (or one the
    /// fleet gives twice) fails the whole import. Twins keep their JSON as
    /// given, with `etag` and `version` computed when absent
    /// ([`StoredTwin::imported`]).
    ///
    /// # Errors
    /// [`HubError::TwinExists`]; [`HubError::InvalidTwin`] for a twin IoT Hub
    /// would not hold (limits, more than 50 modules, ids that do not match);
    /// [`HubError::Storage`]. Nothing is imported on any error.
    pub fn import(&self, fleet: &Fleet) -> Result<usize, HubError> {
        let mut connection = self.lock()?;
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|error| self.storage(&error))?;
        let mut count = 0;
        {
            let mut insert = transaction
                .prepare(
                    "INSERT INTO twins (device_id, module_id, tag_writes, twin) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(|error| self.storage(&error))?;
            for device in &fleet.devices {
                let device_id = TwinId {
                    device_id: device.id().to_owned(),
                    module_id: None,
                };
                if device.modules.len() > MAX_MODULES_PER_DEVICE {
                    return Err(HubError::InvalidTwin {
                        twin: device_id.display(),
                        reason: format!(
                            "device has {} modules, over IoT Hub's limit of {MAX_MODULES_PER_DEVICE}",
                            device.modules.len()
                        ),
                    });
                }
                let twins = std::iter::once((device_id.clone(), &device.twin)).chain(
                    device.modules.iter().map(|(module_id, twin)| {
                        let id = TwinId {
                            device_id: device_id.device_id.clone(),
                            module_id: Some(module_id.clone()),
                        };
                        (id, twin)
                    }),
                );
                for (id, twin) in twins {
                    if TwinId::from(twin) != id {
                        return Err(HubError::InvalidTwin {
                            twin: id.display(),
                            reason: format!(
                                "the fleet files twin `{}` here",
                                TwinId::from(twin).display()
                            ),
                        });
                    }
                    if id.module_id.as_deref() == Some(DEVICE_ROW) {
                        return Err(HubError::InvalidTwin {
                            twin: id.display(),
                            reason: "a module id cannot be empty".to_owned(),
                        });
                    }
                    let stored = StoredTwin::imported(&id, twin.json.clone())?;
                    let text = self.serialize(&id, &stored)?;
                    let result = insert.execute(params![
                        id.device_id,
                        id.module_id.as_deref().unwrap_or(DEVICE_ROW),
                        self.tag_writes_column(&id, stored.tag_writes)?,
                        text
                    ]);
                    match result {
                        Ok(_) => count += 1,
                        Err(error)
                            if error.sqlite_error_code()
                                == Some(ErrorCode::ConstraintViolation) =>
                        {
                            return Err(HubError::TwinExists { twin: id.display() });
                        }
                        Err(error) => return Err(self.storage(&error)),
                    }
                }
            }
        }
        transaction.commit().map_err(|error| self.storage(&error))?;
        Ok(count)
    }

    /// Writes every twin to `out` as an NDJSON fleet snapshot: one compact
    /// JSON object per line, sorted by device id then module id (device twin
    /// first), read in one transaction. Returns how many twins were written.
    ///
    /// # Errors
    /// [`HubError::Export`] when `out` fails; [`HubError::Storage`].
    pub fn export(&self, out: &mut dyn Write) -> Result<usize, HubError> {
        let mut connection = self.lock()?;
        let transaction = connection
            .transaction()
            .map_err(|error| self.storage(&error))?;
        let mut statement = transaction
            .prepare("SELECT twin FROM twins ORDER BY device_id, module_id")
            .map_err(|error| self.storage(&error))?;
        let mut rows = statement.query([]).map_err(|error| self.storage(&error))?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(|error| self.storage(&error))? {
            let text: String = row.get(0).map_err(|error| self.storage(&error))?;
            out.write_all(text.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|error| HubError::Export {
                    reason: error.to_string(),
                })?;
            count += 1;
        }
        out.flush().map_err(|error| HubError::Export {
            reason: error.to_string(),
        })?;
        Ok(count)
    }

    /// One page of devices after `continuation` (a device id), in one read.
    fn page(&self, continuation: Option<&str>, limit: usize) -> Result<DevicePage, HubError> {
        // A page of nothing would never end a read; ask for one device at least.
        let limit = limit.max(1);
        let after = continuation.unwrap_or("");
        let mut connection = self.lock()?;
        let transaction = connection
            .transaction()
            .map_err(|error| self.storage(&error))?;
        let mut ids = transaction
            .prepare_cached(
                "SELECT device_id FROM twins WHERE device_id > ?1 AND module_id = '' ORDER BY device_id LIMIT ?2",
            )
            .map_err(|error| self.storage(&error))?;
        let wanted = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let mut device_ids = ids
            .query_map(params![after, wanted], |row| row.get::<_, String>(0))
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|error| self.storage(&error))?;
        drop(ids);
        let more = device_ids.len() > limit;
        device_ids.truncate(limit);
        let Some(last) = device_ids.last().cloned() else {
            return Ok(DevicePage::default());
        };
        let mut twins = transaction
            .prepare_cached(
                "SELECT device_id, module_id, twin FROM twins WHERE device_id > ?1 AND device_id <= ?2 ORDER BY device_id, module_id",
            )
            .map_err(|error| self.storage(&error))?;
        let rows = twins
            .query_map(params![after, last], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .map_err(|error| self.storage(&error))?;
        let mut devices: Vec<Device> = Vec::with_capacity(device_ids.len());
        for row in rows {
            let (device_id, module_id, text) = row.map_err(|error| self.storage(&error))?;
            let id = TwinId {
                device_id,
                module_id: (module_id != DEVICE_ROW).then_some(module_id),
            };
            let twin = Twin {
                json: self.parse(&id, &text)?,
                device_id: id.device_id.clone(),
                module_id: id.module_id.clone(),
            };
            match (&id.module_id, devices.last_mut()) {
                (None, _) => devices.push(Device {
                    twin,
                    modules: std::collections::BTreeMap::new(),
                }),
                (Some(module_id), Some(device)) if device.id() == id.device_id => {
                    device.modules.insert(module_id.clone(), twin);
                }
                (Some(_), _) => {
                    // INVARIANT: module rows have a device row (import and
                    // create_module only add modules to existing devices).
                    return Err(self.storage(&format!(
                        "module twin `{}` has no device twin",
                        id.display()
                    )));
                }
            }
        }
        Ok(DevicePage {
            devices,
            continuation: more.then_some(last),
        })
    }

    /// One twin, read.
    fn read_twin(&self, id: &TwinId) -> Result<Twin, HubError> {
        let connection = self.lock()?;
        let stored = self.load(&connection, id)?;
        Ok(stored.into_twin(id))
    }

    /// One write: the twin is read, checked against `if_match`, changed by
    /// `change` (given the time) and stored, in one `IMMEDIATE` transaction.
    fn write(
        &self,
        id: &TwinId,
        if_match: Option<&str>,
        change: impl FnOnce(&StoredTwin, &str) -> Result<StoredTwin, HubError>,
    ) -> Result<Twin, HubError> {
        let mut connection = self.lock()?;
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|error| self.storage(&error))?;
        let current = self.load(&transaction, id)?;
        model::check_if_match(id, if_match, current.etag())?;
        let next = change(&current, &now())?;
        if next != current {
            let text = self.serialize(id, &next)?;
            transaction
                .execute(
                    "UPDATE twins SET tag_writes = ?3, twin = ?4 WHERE device_id = ?1 AND module_id = ?2",
                    params![
                        id.device_id,
                        id.module_id.as_deref().unwrap_or(DEVICE_ROW),
                        self.tag_writes_column(id, next.tag_writes)?,
                        text
                    ],
                )
                .map_err(|error| self.storage(&error))?;
            transaction.commit().map_err(|error| self.storage(&error))?;
        }
        Ok(next.into_twin(id))
    }

    /// Adds module `module_id` to device `device_id`, in one transaction.
    fn add_module(&self, device_id: &str, module_id: &str) -> Result<Twin, HubError> {
        // Before any lookup: the empty id is the device twin's row.
        model::check_module_id(device_id, module_id)?;
        let mut connection = self.lock()?;
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|error| self.storage(&error))?;
        if !self.exists(&transaction, device_id, DEVICE_ROW)? {
            return Err(HubError::DeviceNotFound {
                device: device_id.to_owned(),
            });
        }
        if self.exists(&transaction, device_id, module_id)? {
            return Err(HubError::ModuleExists {
                device: device_id.to_owned(),
                module: module_id.to_owned(),
            });
        }
        let modules: i64 = transaction
            .query_row(
                "SELECT COUNT(*) FROM twins WHERE device_id = ?1 AND module_id <> ''",
                params![device_id],
                |row| row.get(0),
            )
            .map_err(|error| self.storage(&error))?;
        let id = TwinId {
            device_id: device_id.to_owned(),
            module_id: Some(module_id.to_owned()),
        };
        let modules = usize::try_from(modules).unwrap_or(usize::MAX);
        let stored = StoredTwin::new_module(device_id, module_id, modules, &now())?;
        let text = self.serialize(&id, &stored)?;
        transaction
            .execute(
                "INSERT INTO twins (device_id, module_id, tag_writes, twin) VALUES (?1, ?2, ?3, ?4)",
                params![
                    device_id,
                    module_id,
                    self.tag_writes_column(&id, stored.tag_writes)?,
                    text
                ],
            )
            .map_err(|error| self.storage(&error))?;
        transaction.commit().map_err(|error| self.storage(&error))?;
        Ok(stored.into_twin(&id))
    }

    /// The stored twin `id`, or which of device and module is missing.
    fn load(&self, connection: &Connection, id: &TwinId) -> Result<StoredTwin, HubError> {
        let module_id = match id.module_id.as_deref() {
            // The empty id is the device twin's row, never a module.
            Some(DEVICE_ROW) => return Err(self.missing(connection, id)),
            Some(module_id) => module_id,
            None => DEVICE_ROW,
        };
        let row: Option<(i64, String)> = connection
            .prepare_cached(
                "SELECT tag_writes, twin FROM twins WHERE device_id = ?1 AND module_id = ?2",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![id.device_id, module_id], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()
            })
            .map_err(|error| self.storage(&error))?;
        let Some((tag_writes, text)) = row else {
            return Err(self.missing(connection, id));
        };
        let Value::Object(json) = self.parse(id, &text)? else {
            return Err(self.storage(&format!("twin `{}` is not a JSON object", id.display())));
        };
        let tag_writes = u64::try_from(tag_writes).map_err(|_| {
            self.storage(&format!(
                "twin `{}` has a negative tag write count",
                id.display()
            ))
        })?;
        Ok(StoredTwin { json, tag_writes })
    }

    /// The 404 for a twin that is not there.
    fn missing(&self, connection: &Connection, id: &TwinId) -> HubError {
        let device_missing = HubError::DeviceNotFound {
            device: id.device_id.clone(),
        };
        let Some(module_id) = &id.module_id else {
            return device_missing;
        };
        match self.exists(connection, &id.device_id, DEVICE_ROW) {
            Ok(true) => HubError::ModuleNotFound {
                device: id.device_id.clone(),
                module: module_id.clone(),
            },
            Ok(false) => device_missing,
            Err(error) => error,
        }
    }

    fn exists(
        &self,
        connection: &Connection,
        device_id: &str,
        module_id: &str,
    ) -> Result<bool, HubError> {
        connection
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM twins WHERE device_id = ?1 AND module_id = ?2)",
            )
            .and_then(|mut statement| {
                statement.query_row(params![device_id, module_id], |row| row.get(0))
            })
            .map_err(|error| self.storage(&error))
    }

    fn parse(&self, id: &TwinId, text: &str) -> Result<Value, HubError> {
        serde_json::from_str(text).map_err(|error| {
            self.storage(&format!(
                "twin `{}` holds invalid JSON: {error}",
                id.display()
            ))
        })
    }

    fn serialize(&self, id: &TwinId, twin: &StoredTwin) -> Result<String, HubError> {
        serde_json::to_string(&twin.json).map_err(|error| {
            self.storage(&format!("cannot store twin `{}`: {error}", id.display()))
        })
    }

    fn tag_writes_column(&self, id: &TwinId, tag_writes: u64) -> Result<i64, HubError> {
        i64::try_from(tag_writes).map_err(|_| {
            self.storage(&format!(
                "twin `{}`: tag write count out of range",
                id.display()
            ))
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, HubError> {
        self.connection.lock().map_err(|_| HubError::Storage {
            path: self.path.clone(),
            reason: "an earlier operation failed while holding the database; open the hub again"
                .to_owned(),
        })
    }

    fn storage(&self, error: &dyn std::fmt::Display) -> HubError {
        HubError::Storage {
            path: self.path.clone(),
            reason: error.to_string(),
        }
    }
}

impl Hub for LocalHub {
    fn identity(&self) -> HubIdentity {
        HubIdentity {
            kind: "local".to_owned(),
            id: self.id.clone(),
        }
    }

    // The SQLite calls are short and run on the caller's task.
    async fn devices(
        &self,
        continuation: Option<String>,
        limit: usize,
    ) -> Result<DevicePage, HubError> {
        self.page(continuation.as_deref(), limit)
    }

    async fn twin(&self, id: &TwinId) -> Result<Twin, HubError> {
        self.read_twin(id)
    }

    async fn patch(
        &self,
        id: &TwinId,
        patch: &Value,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError> {
        self.write(id, if_match, |twin, now| twin.patched(id, patch, now))
    }

    async fn replace(
        &self,
        id: &TwinId,
        twin: &Value,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError> {
        self.write(id, if_match, |stored, now| stored.replaced(id, twin, now))
    }

    async fn create_module(&self, device_id: &str, module_id: &str) -> Result<Twin, HubError> {
        self.add_module(device_id, module_id)
    }
}

/// Now, as IoT Hub writes times.
fn now() -> String {
    model::timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// Makes the schema in a new file; a file another process initialised in the
/// meantime is left as it is.
fn create_schema(connection: &mut Connection) -> rusqlite::Result<()> {
    let transaction: Transaction<'_> =
        connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let used: bool =
        transaction.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master)", [], |row| {
            row.get(0)
        })?;
    if !used {
        transaction.execute_batch(SCHEMA)?;
        let mut insert = transaction.prepare("INSERT INTO meta (key, value) VALUES (?1, ?2)")?;
        insert.execute(params!["format", FORMAT])?;
        insert.execute(params!["schema_version", SCHEMA_VERSION.to_string()])?;
        insert.execute(params!["hub_id", uuid::Uuid::new_v4().to_string()])?;
    }
    transaction.commit()
}

/// The hub id, once the file is known to be a twinops hub this twinops reads.
fn read_identity(connection: &Connection, shown: &str) -> Result<String, HubError> {
    let has_meta: bool = connection
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
            [],
            |row| row.get(0),
        )
        .map_err(|error| classify(shown, &error))?;
    if !has_meta {
        return Err(not_a_hub(
            shown,
            "it is an SQLite database without twinops' tables",
        ));
    }
    let read = |key: &str| -> Result<Option<String>, HubError> {
        connection
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                params![key],
                |row| row.get(0),
            )
            .optional()
            .map_err(|error| match error.sqlite_error_code() {
                // Another application's `meta` table, with other columns.
                Some(ErrorCode::Unknown) => {
                    not_a_hub(shown, "it is an SQLite database of another application")
                }
                _ => classify(shown, &error),
            })
    };
    if read("format")?.as_deref() != Some(FORMAT) {
        return Err(not_a_hub(
            shown,
            "it is an SQLite database of another application",
        ));
    }
    let version = read("schema_version")?.unwrap_or_default();
    match version.parse::<u32>() {
        Ok(SCHEMA_VERSION) => {}
        Ok(newer) if newer > SCHEMA_VERSION => {
            return Err(not_a_hub(
                shown,
                &format!(
                    "it was made by a newer twinops (schema version `{newer}`; this one reads `{SCHEMA_VERSION}`)"
                ),
            ));
        }
        _ => {
            return Err(not_a_hub(
                shown,
                &format!("unknown schema version `{version}`"),
            ));
        }
    }
    read("hub_id")?.ok_or_else(|| not_a_hub(shown, "it has no hub id"))
}

/// An SQLite error while opening: "not a database" is the user's file, not a
/// failure.
fn classify(shown: &str, error: &rusqlite::Error) -> HubError {
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => not_a_hub(shown, "it is not an SQLite database"),
        _ => HubError::Storage {
            path: shown.to_owned(),
            reason: error.to_string(),
        },
    }
}

fn not_a_hub(shown: &str, reason: &str) -> HubError {
    HubError::NotAHub {
        path: shown.to_owned(),
        reason: reason.to_owned(),
    }
}
