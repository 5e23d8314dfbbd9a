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
//! Invariants: every module twin's device twin exists; every write is
//! stored by one `IMMEDIATE` transaction in SQLite's write-ahead log, so a
//! killed process leaves every twin before or after a write, never torn.
//! The twin is read, checked against `If-Match` and changed by the model
//! with no lock held (so concurrent writes share the cores), and stored
//! only if its row is still as it was read; otherwise it is
//! read and changed again, so no write is lost or made against a stale
//! etag. The log is synced at checkpoints, not at every
//! commit (`synchronous=NORMAL`): a crash of the whole machine can roll the
//! last writes back, whole, and the next plan then shows them again. A sync
//! per write would cap a hub at a few thousand writes a second on common
//! disks (measured in `BENCHMARKS.md`). Two processes on one file wait for each other
//! (up to [`BUSY_TIMEOUT`]) rather than fail or lose an update. A file that
//! is not a twinops hub is never written. The wall clock (for `$lastUpdated`)
//! is read here and nowhere in the model.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use serde_json::Value;

use crate::fleet::{Device, Fleet, Twin};
use crate::hub::lines::TwinLines;
use crate::hub::model::{self, MAX_MODULES_PER_DEVICE, StoredTwin, Written};
use crate::hub::{
    DevicePage, Hub, HubError, HubIdentity, PAGE_SIZE, SnapshotLineError, TwinId, snapshot,
};

/// The `meta.format` marker of a twinops local hub.
pub const FORMAT: &str = "twinops-local-hub";
/// The schema this twinops writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// How long a write waits for another process holding the file.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// `module_id` of a device twin's row.
const DEVICE_ROW: &str = "";

// `twins` keeps its rowid: a twin is often more than 1/20 of a page, which
// `WITHOUT ROWID` tables store poorly (sqlite.org/withoutrowid.html, §4).
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
);
";

/// A line's number, and its row or why it is no twin (outer error: not a
/// snapshot line; inner: a twin IoT Hub would not hold).
type NumberedRow = (usize, Result<Result<Row, HubError>, String>);

/// One twin of an import, ready to insert.
struct Row {
    id: TwinId,
    tag_writes: i64,
    text: String,
}

/// Device twins or module twins, for [`LocalHub::twins`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwinKind {
    /// Device twins.
    Device,
    /// Module twins.
    Module,
}

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
            .pragma_update(None, "synchronous", "NORMAL")
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
                                "the fleet files twin `{}` under this id",
                                TwinId::from(twin).display()
                            ),
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

    /// Imports every twin `lines` holds, as [`import`](Self::import) does,
    /// a batch at a time: lines are read and checked on every core, then
    /// inserted, all in one transaction. Lines may come in any order.
    ///
    /// # Errors
    /// [`HubError::InvalidSnapshot`] listing the first bad lines;
    /// [`HubError::TwinExists`] for a twin the hub holds or the snapshot
    /// gives twice; [`HubError::InvalidTwin`] for a twin IoT Hub would not
    /// hold, a module twin without its device twin, or a device with too
    /// many modules; [`HubError::Storage`]. Nothing is imported on any error.
    pub fn import_lines(&self, lines: &mut dyn TwinLines) -> Result<usize, HubError> {
        let mut connection = self.lock()?;
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|error| self.storage(&error))?;
        let mut count = 0;
        let mut bad = Vec::new();
        let mut first_line = 1;
        {
            let mut insert = transaction
                .prepare(
                    "INSERT INTO twins (device_id, module_id, tag_writes, twin) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(|error| self.storage(&error))?;
            let mut more = true;
            let mut buffer = String::new();
            while more {
                buffer.clear();
                more = lines.fill(&mut buffer)?;
                let numbered: Vec<(usize, &str)> = buffer
                    .lines()
                    .enumerate()
                    .map(|(at, line)| (first_line + at, line))
                    .filter(|(_, line)| !line.trim().is_empty())
                    .collect();
                first_line += buffer.lines().count();
                let rows: Vec<NumberedRow> = numbered
                    .into_par_iter()
                    .with_min_len(256)
                    .map(|(number, line)| {
                        (
                            number,
                            snapshot::parse_line(line).map(|(_, twin)| self.row(twin)),
                        )
                    })
                    .collect();
                for (number, row) in rows {
                    let row = match row {
                        Err(reason) => {
                            bad.push(SnapshotLineError {
                                path: lines.shown().to_owned(),
                                line: number,
                                reason,
                            });
                            continue;
                        }
                        Ok(row) => row?,
                    };
                    if !bad.is_empty() {
                        continue;
                    }
                    let result = insert.execute(params![
                        row.id.device_id,
                        row.id.module_id.as_deref().unwrap_or(DEVICE_ROW),
                        row.tag_writes,
                        row.text
                    ]);
                    match result {
                        Ok(_) => count += 1,
                        Err(error)
                            if error.sqlite_error_code()
                                == Some(ErrorCode::ConstraintViolation) =>
                        {
                            return Err(HubError::TwinExists {
                                twin: row.id.display(),
                            });
                        }
                        Err(error) => return Err(self.storage(&error)),
                    }
                }
            }
        }
        if !bad.is_empty() {
            return Err(snapshot::invalid(lines.shown(), bad));
        }
        self.check_devices(&transaction)?;
        transaction.commit().map_err(|error| self.storage(&error))?;
        Ok(count)
    }

    /// One twin of an import, ready to insert.
    fn row(&self, twin: Twin) -> Result<Row, HubError> {
        let id = TwinId::from(&twin);
        let stored = StoredTwin::imported(&id, twin.json)?;
        Ok(Row {
            text: self.serialize(&id, &stored)?,
            tag_writes: self.tag_writes_column(&id, stored.tag_writes)?,
            id,
        })
    }

    /// After an import: every module twin has its device twin, and no
    /// device has more modules than IoT Hub allows.
    fn check_devices(&self, connection: &Connection) -> Result<(), HubError> {
        let orphan: Option<(String, String)> = connection
            .query_row(
                "SELECT device_id, module_id FROM twins AS m WHERE module_id <> '' AND NOT EXISTS \
                 (SELECT 1 FROM twins AS d WHERE d.device_id = m.device_id AND d.module_id = '') \
                 ORDER BY device_id, module_id LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|error| self.storage(&error))?;
        if let Some((device_id, module_id)) = orphan {
            return Err(HubError::InvalidTwin {
                twin: format!("{device_id}/{module_id}"),
                reason: format!("module twin has no device twin `{device_id}` in the snapshot"),
            });
        }
        let crowded: Option<(String, i64)> = connection
            .query_row(
                "SELECT device_id, COUNT(*) - 1 FROM twins GROUP BY device_id HAVING COUNT(*) - 1 > ?1 \
                 ORDER BY device_id LIMIT 1",
                params![i64::try_from(MAX_MODULES_PER_DEVICE).unwrap_or(i64::MAX)],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|error| self.storage(&error))?;
        if let Some((device_id, modules)) = crowded {
            return Err(HubError::InvalidTwin {
                twin: device_id,
                reason: format!(
                    "device has {modules} modules, over IoT Hub's limit of {MAX_MODULES_PER_DEVICE}"
                ),
            });
        }
        Ok(())
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
    ///
    /// # Errors
    /// [`HubError::Storage`] when SQLite fails or a twin is not JSON.
    pub fn page(&self, continuation: Option<&str>, limit: usize) -> Result<DevicePage, HubError> {
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
                    modules: BTreeMap::new(),
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

    /// Up to `limit` twins of one kind after `after`, in (device, module)
    /// order: the emulator's query scan.
    ///
    /// # Errors
    /// [`HubError::Storage`] when SQLite fails or a twin is not JSON.
    pub fn twins(
        &self,
        kind: TwinKind,
        after: Option<&TwinId>,
        limit: usize,
    ) -> Result<Vec<Twin>, HubError> {
        let (device, module) = after.map_or(("", ""), |id| {
            (
                id.device_id.as_str(),
                id.module_id.as_deref().unwrap_or(DEVICE_ROW),
            )
        });
        let filter = match kind {
            TwinKind::Device => "module_id = ''",
            TwinKind::Module => "module_id <> ''",
        };
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT device_id, module_id, twin FROM twins WHERE (device_id, module_id) > (?1, ?2) AND {filter} ORDER BY device_id, module_id LIMIT ?3"
            ))
            .map_err(|error| self.storage(&error))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement
            .query_map(params![device, module, limit], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .map_err(|error| self.storage(&error))?;
        let mut twins = Vec::new();
        for row in rows {
            let (device_id, module_id, text) = row.map_err(|error| self.storage(&error))?;
            let id = TwinId {
                device_id,
                module_id: (module_id != DEVICE_ROW).then_some(module_id),
            };
            twins.push(Twin {
                json: self.parse(&id, &text)?,
                device_id: id.device_id,
                module_id: id.module_id,
            });
        }
        Ok(twins)
    }

    /// Appends up to `limit` twins after `after` (device id, module id; `""`
    /// for a device twin) to `out`, one JSON text per line, in (device,
    /// module) order; returns the key of the last, `None` when there were
    /// none.
    ///
    /// # Errors
    /// [`HubError::Storage`] when SQLite fails.
    pub fn rows(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
        out: &mut String,
    ) -> Result<Option<(String, String)>, HubError> {
        let (device, module) = after.unwrap_or(("", ""));
        let connection = self.lock()?;
        let mut statement = connection
            .prepare_cached(
                "SELECT device_id, module_id, twin FROM twins WHERE (device_id, module_id) > (?1, ?2) ORDER BY device_id, module_id LIMIT ?3",
            )
            .map_err(|error| self.storage(&error))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = statement
            .query(params![device, module, limit])
            .map_err(|error| self.storage(&error))?;
        let mut last = None;
        while let Some(row) = rows.next().map_err(|error| self.storage(&error))? {
            let text = row
                .get_ref(2)
                .and_then(|value| value.as_str().map_err(Into::into))
                .map_err(|error| self.storage(&error))?;
            out.push_str(text);
            out.push('\n');
            last = Some((
                row.get(0).map_err(|error| self.storage(&error))?,
                row.get(1).map_err(|error| self.storage(&error))?,
            ));
        }
        Ok(last)
    }

    /// The file, as messages show it.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A `meta` value by key, stored first as `value` when absent; returns
    /// the stored value (the emulator keeps its access keys here).
    ///
    /// # Errors
    /// [`HubError::Storage`] when SQLite fails.
    pub fn meta_or_insert(&self, key: &str, value: &str) -> Result<String, HubError> {
        let connection = self.lock()?;
        connection
            .execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .and_then(|_| {
                connection.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                    row.get(0)
                })
            })
            .map_err(|error| self.storage(&error))
    }

    /// A merge patch on one twin (see [`Hub::patch`]), done now.
    ///
    /// # Errors
    /// As [`Hub::patch`].
    pub fn patch_twin(
        &self,
        id: &TwinId,
        patch: &Value,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError> {
        self.patch_twin_text(id, patch, if_match)
            .map(|(twin, _)| twin.into_twin(id))
    }

    /// [`LocalHub::patch_twin`], with the twin's JSON text as stored: what
    /// the emulator sends back, without writing it out a second time.
    ///
    /// # Errors
    /// As [`Hub::patch`].
    pub fn patch_twin_text(
        &self,
        id: &TwinId,
        patch: &Value,
        if_match: Option<&str>,
    ) -> Result<(StoredTwin, String), HubError> {
        self.write(id, if_match, |twin, now| twin.patched(id, patch, now))
    }

    /// A replacement of one twin (see [`Hub::replace`]), done now.
    ///
    /// # Errors
    /// As [`Hub::replace`].
    pub fn replace_twin(
        &self,
        id: &TwinId,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError> {
        self.replace_twin_text(id, body, if_match)
            .map(|(twin, _)| twin.into_twin(id))
    }

    /// [`LocalHub::replace_twin`], with the twin's JSON text as stored.
    ///
    /// # Errors
    /// As [`Hub::replace`].
    pub fn replace_twin_text(
        &self,
        id: &TwinId,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<(StoredTwin, String), HubError> {
        self.write(id, if_match, |stored, now| stored.replaced(id, body, now))
    }

    /// One twin, read now.
    ///
    /// # Errors
    /// [`HubError::DeviceNotFound`], [`HubError::ModuleNotFound`], or
    /// [`HubError::Storage`].
    pub fn read_twin(&self, id: &TwinId) -> Result<Twin, HubError> {
        self.read_twin_text(id).map(|(twin, _)| twin.into_twin(id))
    }

    /// [`LocalHub::read_twin`], with the twin's JSON text as stored.
    ///
    /// # Errors
    /// As [`LocalHub::read_twin`].
    pub fn read_twin_text(&self, id: &TwinId) -> Result<(StoredTwin, String), HubError> {
        self.load(id).map(|(twin, text, _)| (twin, text))
    }

    /// One write: the twin is read, checked against `if_match` and changed
    /// by `change` (given the time) with no lock held, then stored in one
    /// `IMMEDIATE` transaction only if its row still holds the text and the
    /// tag-write count it was read with; a twin written in between (by
    /// another thread or process) is read and changed again. A write the
    /// model finds nothing to write in stores nothing.
    fn write(
        &self,
        id: &TwinId,
        if_match: Option<&str>,
        change: impl Fn(StoredTwin, &str) -> Result<Written, HubError>,
    ) -> Result<(StoredTwin, String), HubError> {
        loop {
            let (current, text, read_tag_writes) = self.load(id)?;
            model::check_if_match(id, if_match, current.etag())?;
            let next = match change(current, &now())? {
                Written::Changed(next) => next,
                Written::Unchanged(current) => return Ok((current, text)),
            };
            let written = self.serialize(id, &next)?;
            let tag_writes = self.tag_writes_column(id, next.tag_writes)?;
            let mut connection = self.lock()?;
            let transaction = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|error| self.storage(&error))?;
            let stored = transaction
                .prepare_cached(
                    "UPDATE twins SET tag_writes = ?3, twin = ?4 \
                     WHERE device_id = ?1 AND module_id = ?2 AND twin = ?5 AND tag_writes = ?6",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        id.device_id,
                        id.module_id.as_deref().unwrap_or(DEVICE_ROW),
                        tag_writes,
                        written,
                        text,
                        read_tag_writes
                    ])
                })
                .map_err(|error| self.storage(&error))?;
            if stored == 1 {
                transaction.commit().map_err(|error| self.storage(&error))?;
                return Ok((next, written));
            }
            // Dropping the transaction rolls it back; the twin is read again.
        }
    }

    /// Adds module `module_id` to device `device_id`, in one transaction.
    /// Creates a module identity now (see [`Hub::create_module`]).
    ///
    /// # Errors
    /// As [`Hub::create_module`].
    pub fn add_module(&self, device_id: &str, module_id: &str) -> Result<Twin, HubError> {
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

    /// The row of twin `id`: its tag-write count and JSON text, or which of
    /// device and module is missing.
    fn stored_row(&self, connection: &Connection, id: &TwinId) -> Result<(i64, String), HubError> {
        let module_id = match id.module_id.as_deref() {
            // The empty id is the device twin's row, never a module.
            Some(DEVICE_ROW) => return Err(self.missing(connection, id)),
            Some(module_id) => module_id,
            None => DEVICE_ROW,
        };
        connection
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
            .map_err(|error| self.storage(&error))?
            .ok_or_else(|| self.missing(connection, id))
    }

    /// Twin `id`, its JSON text and its `tag_writes` column as stored: the
    /// row is read under the lock ([`LocalHub::stored_row`]) and parsed
    /// after it is released.
    fn load(&self, id: &TwinId) -> Result<(StoredTwin, String, i64), HubError> {
        let (tag_writes, text) = {
            let connection = self.lock()?;
            self.stored_row(&connection, id)?
        };
        let Value::Object(json) = self.parse(id, &text)? else {
            return Err(self.storage(&format!("twin `{}` is not a JSON object", id.display())));
        };
        let count = u64::try_from(tag_writes).map_err(|_| {
            self.storage(&format!(
                "twin `{}` has a negative tag write count",
                id.display()
            ))
        })?;
        let twin = StoredTwin {
            json,
            tag_writes: count,
        };
        Ok((twin, text, tag_writes))
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
    async fn fleet(&self) -> Result<Fleet, HubError> {
        let mut devices = Vec::new();
        let mut continuation = None;
        loop {
            let page = self.page(continuation.as_deref(), PAGE_SIZE)?;
            devices.extend(page.devices);
            match page.continuation {
                Some(next) => continuation = Some(next),
                None => break,
            }
        }
        Ok(Fleet { devices })
    }

    async fn twin(&self, id: &TwinId) -> Result<Twin, HubError> {
        self.read_twin(id)
    }

    async fn patch(
        &self,
        id: &TwinId,
        patch: &Value,
        if_match: Option<&str>,
    ) -> Result<String, HubError> {
        self.patch_twin_text(id, patch, if_match)
            .map(|(twin, _)| twin.etag().to_owned())
    }

    async fn replace(
        &self,
        id: &TwinId,
        twin: &Value,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError> {
        self.replace_twin(id, twin, if_match)
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
            .map_err(|error| {
                // Another application's `meta` table, with other columns: the
                // query does not compile (rusqlite reports `SqlInputError`,
                // whose `sqlite_error_code` is `None`).
                let foreign = matches!(error, rusqlite::Error::SqlInputError { .. })
                    || error.sqlite_error_code() == Some(ErrorCode::Unknown);
                if foreign {
                    not_a_hub(shown, "it is an SQLite database of another application")
                } else {
                    classify(shown, &error)
                }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::{Value, json};

    use super::{LocalHub, MAX_MODULES_PER_DEVICE};
    use crate::fleet::{Device, Fleet, Twin};
    use crate::hub::lines::SnapshotLines;
    use crate::hub::local::TwinKind;
    use crate::hub::model::etag_for;
    use crate::hub::{Hub, HubError, TwinId, snapshot};

    const DEMO_FLEET: &str = include_str!("../../examples/demo-fleet.ndjson");

    /// A database path under the temp dir, removed (with its WAL files) on drop.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(name: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let unique = format!(
                "twinops-local-{name}-{}-{}-{}.db",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            );
            Self(std::env::temp_dir().join(unique))
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut path = self.0.clone().into_os_string();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
    }

    fn device_id(device: &str) -> TwinId {
        TwinId {
            device_id: device.to_owned(),
            module_id: None,
        }
    }

    fn module_id(device: &str, module: &str) -> TwinId {
        TwinId {
            device_id: device.to_owned(),
            module_id: Some(module.to_owned()),
        }
    }

    /// `devices` devices `dev-0000`…, device `i` with `i % 3` modules.
    fn generated_fleet(devices: usize) -> Fleet {
        let mut text = String::new();
        for at in 0..devices {
            let device = format!("dev-{at:04}");
            text.push_str(&json!({ "deviceId": device, "tags": { "n": at } }).to_string());
            text.push('\n');
            for module in 0..at % 3 {
                let line = json!({
                    "deviceId": device,
                    "moduleId": format!("m{module}"),
                    "properties": { "desired": { "k": module }, "reported": { "$version": 1 } },
                });
                text.push_str(&line.to_string());
                text.push('\n');
            }
        }
        snapshot::parse("generated.ndjson", &text).unwrap()
    }

    fn exported(hub: &LocalHub) -> String {
        let mut out = Vec::new();
        hub.export(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn hub_with(temp: &TempPath, fleet: &Fleet) -> LocalHub {
        let hub = LocalHub::open(temp.path()).unwrap();
        hub.import(fleet).unwrap();
        hub
    }

    #[test]
    fn creates_a_hub_and_reopens_it_with_the_same_id() {
        let temp = TempPath::new("reopen");
        let hub = LocalHub::open(temp.path()).unwrap();
        let identity = hub.identity();
        assert_eq!(identity.kind, "local");
        assert!(uuid::Uuid::parse_str(&identity.id).is_ok(), "{identity:?}");
        assert!(hub.is_empty().unwrap());
        drop(hub);
        let again = LocalHub::open(temp.path()).unwrap();
        assert_eq!(again.identity(), identity);
        let other = TempPath::new("reopen-other");
        assert_ne!(LocalHub::open(other.path()).unwrap().identity(), identity);
    }

    #[test]
    fn an_empty_file_becomes_a_hub() {
        let temp = TempPath::new("empty");
        std::fs::write(temp.path(), b"").unwrap();
        assert!(LocalHub::open(temp.path()).unwrap().is_empty().unwrap());
    }

    fn refusal(path: &Path) -> String {
        match LocalHub::open(path) {
            Err(HubError::NotAHub { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn files_that_are_not_hubs_are_refused_and_left_unchanged() {
        let text = TempPath::new("text");
        std::fs::write(text.path(), "deviceId,etag\n".repeat(200)).unwrap();
        let plain = TempPath::new("plain");
        let foreign = TempPath::new("foreign");
        {
            let connection = rusqlite::Connection::open(plain.path()).unwrap();
            connection
                .execute_batch(
                    "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me');",
                )
                .unwrap();
            let connection = rusqlite::Connection::open(foreign.path()).unwrap();
            connection
                .execute_batch("CREATE TABLE meta (key TEXT, value TEXT); INSERT INTO meta VALUES ('format', 'other-app');")
                .unwrap();
        }
        let cases = [
            (&text, "it is not an SQLite database"),
            (&plain, "it is an SQLite database without twinops' tables"),
            (&foreign, "it is an SQLite database of another application"),
        ];
        for (temp, expected) in cases {
            let before = std::fs::read(temp.path()).unwrap();
            assert_eq!(refusal(temp.path()), expected);
            assert_eq!(std::fs::read(temp.path()).unwrap(), before, "{expected}");
        }
        assert_eq!(refusal(&std::env::temp_dir()), "it is a directory");
    }

    #[test]
    fn a_hub_from_a_newer_twinops_is_refused() {
        let temp = TempPath::new("newer");
        drop(LocalHub::open(temp.path()).unwrap());
        {
            let connection = rusqlite::Connection::open(temp.path()).unwrap();
            connection
                .execute(
                    "UPDATE meta SET value = '2' WHERE key = 'schema_version'",
                    [],
                )
                .unwrap();
        }
        assert_eq!(
            refusal(temp.path()),
            "it was made by a newer twinops (schema version `2`; this one reads `1`)"
        );
    }

    #[tokio::test]
    async fn import_is_all_or_nothing_and_never_replaces() {
        let temp = TempPath::new("import");
        let hub = LocalHub::open(temp.path()).unwrap();
        let fleet = generated_fleet(6);
        // A fleet built in code can give a twin twice: the duplicate comes
        // after other twins were inserted, and none of them stays.
        let mut twice = fleet.clone();
        twice.devices.push(fleet.devices[2].clone());
        let Err(HubError::TwinExists { twin }) = hub.import(&twice) else {
            panic!("expected a duplicate twin");
        };
        assert_eq!(twin, "dev-0002");
        assert!(hub.is_empty().unwrap());

        let mut over_limit = fleet.clone();
        over_limit.devices[4].twin.json["tags"] = json!({ "bad key": 1 });
        assert!(matches!(
            hub.import(&over_limit),
            Err(HubError::InvalidTwin { .. })
        ));
        assert!(hub.is_empty().unwrap());

        assert_eq!(hub.import(&fleet).unwrap(), 6 + (1 + 2) * 2);
        let before = exported(&hub);
        let mut again = generated_fleet(8);
        again.devices.drain(..5);
        assert_eq!(again.devices[0].id(), "dev-0005");
        let Err(HubError::TwinExists { twin }) = hub.import(&again) else {
            panic!("expected an existing twin");
        };
        assert_eq!(twin, "dev-0005");
        assert_eq!(exported(&hub), before);
    }

    #[test]
    fn importing_lines_stores_what_importing_the_fleet_does() {
        let fleet = generated_fleet(40);
        let mut text = Vec::new();
        snapshot::write(&fleet, &mut text).unwrap();
        // Any order will do: reversed lines put modules before their devices.
        let reversed: String = String::from_utf8(text.clone())
            .unwrap()
            .lines()
            .rev()
            .fold(String::new(), |text, line| text + line + "\n");
        let whole = TempPath::new("import-whole");
        let expected = exported(&hub_with(&whole, &fleet));
        for (name, source) in [("sorted", text), ("reversed", reversed.into_bytes())] {
            let temp = TempPath::new(&format!("import-lines-{name}"));
            let hub = LocalHub::open(temp.path()).unwrap();
            let mut lines = SnapshotLines::with_batch(source.as_slice(), "f.ndjson", 100);
            assert_eq!(hub.import_lines(&mut lines).unwrap(), 40 + 39);
            assert_eq!(exported(&hub), expected, "{name}");
        }
    }

    #[test]
    fn importing_lines_is_all_or_nothing() {
        let temp = TempPath::new("import-lines-refused");
        let hub = LocalHub::open(temp.path()).unwrap();
        let import = |text: &str| {
            hub.import_lines(&mut SnapshotLines::with_batch(
                text.as_bytes(),
                "f.ndjson",
                7,
            ))
        };
        let device = |id: &str| format!("{{\"deviceId\":\"{id}\"}}\n");
        let module =
            |id: &str, m: usize| format!("{{\"deviceId\":\"{id}\",\"moduleId\":\"m{m:02}\"}}\n");

        let Err(HubError::InvalidSnapshot { count, lines, .. }) =
            import(&format!("{}nope\n{}[]\n", device("a"), device("b")))
        else {
            panic!("bad lines are listed");
        };
        assert_eq!((count, lines[0].line, lines[1].line), (2, 2, 4));

        let Err(HubError::TwinExists { twin }) =
            import(&format!("{}{}{}", device("a"), device("b"), device("a")))
        else {
            panic!("a twin given twice is refused");
        };
        assert_eq!(twin, "a");

        let Err(HubError::InvalidTwin { twin, reason }) =
            import(&format!("{}{}", device("a"), module("z", 1)))
        else {
            panic!("a module needs its device");
        };
        assert_eq!(twin, "z/m01");
        assert!(reason.contains("no device twin `z`"), "{reason}");

        let crowded: String = std::iter::once(device("c"))
            .chain((0..=MAX_MODULES_PER_DEVICE).map(|m| module("c", m)))
            .collect();
        let Err(HubError::InvalidTwin { twin, reason }) = import(&crowded) else {
            panic!("too many modules are refused");
        };
        assert_eq!(twin, "c");
        assert!(reason.contains("over IoT Hub's limit"), "{reason}");
        assert!(hub.is_empty().unwrap());
    }

    #[tokio::test]
    async fn import_computes_missing_etags_and_keeps_given_ones() {
        let temp = TempPath::new("import-etags");
        let fleet = snapshot::parse("demo-fleet.ndjson", DEMO_FLEET).unwrap();
        let hub = hub_with(&temp, &fleet);
        let gateway = hub.twin(&device_id("gateway-ams1-0001")).await.unwrap();
        assert_eq!(gateway.json, fleet.devices[0].twin.json);
        // Its etag 3 = desired 1 + 2 tag writes: the next tag write makes 4.
        let patched = hub
            .patch_twin(
                &device_id("gateway-ams1-0001"),
                &json!({ "tags": { "ring": "broad" } }),
                None,
            )
            .unwrap();
        assert_eq!(patched.json["etag"], json!(etag_for(4)));
        assert_eq!(patched.json["version"], json!(6));

        let bare = TempPath::new("import-bare");
        let hub = hub_with(&bare, &generated_fleet(2));
        let twin = hub.twin(&device_id("dev-0001")).await.unwrap();
        assert_eq!(twin.json["etag"], json!("AAAAAAAAAAE="));
        assert_eq!(twin.json["version"], json!(2));
    }

    #[tokio::test]
    async fn export_round_trips_through_the_snapshot_reader() {
        let temp = TempPath::new("export");
        let fleet = snapshot::parse("demo-fleet.ndjson", DEMO_FLEET).unwrap();
        let hub = hub_with(&temp, &fleet);
        let text = exported(&hub);
        assert_eq!(snapshot::parse("export.ndjson", &text).unwrap(), fleet);
        assert_eq!(
            text.lines().count(),
            DEMO_FLEET.lines().filter(|l| !l.trim().is_empty()).count()
        );
        let keys: Vec<(String, Option<String>)> = text
            .lines()
            .map(|line| {
                let twin: Value = serde_json::from_str(line).unwrap();
                let module = twin
                    .get("moduleId")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                (twin["deviceId"].as_str().unwrap().to_owned(), module)
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(hub.fleet().await.unwrap(), fleet);
    }

    #[tokio::test]
    async fn pages_cover_every_device_once_with_its_modules() {
        let temp = TempPath::new("pages");
        let hub = hub_with(&temp, &generated_fleet(25));
        // As stored: with the etags and versions the import computed.
        let fleet = snapshot::parse("export.ndjson", &exported(&hub)).unwrap();
        for size in [1, 2, 1000] {
            let mut devices: Vec<Device> = Vec::new();
            let mut continuation = None;
            let mut pages = 0;
            loop {
                let page = hub.page(continuation.as_deref(), size).unwrap();
                assert!(page.devices.len() <= size);
                pages += 1;
                devices.extend(page.devices);
                match page.continuation {
                    Some(next) => continuation = Some(next),
                    None => break,
                }
            }
            assert_eq!(devices, fleet.devices, "page size {size}");
            assert_eq!(pages, 25_usize.div_ceil(size), "page size {size}");
        }
        assert_eq!(hub.fleet().await.unwrap(), fleet);
        let modules = hub.twins(TwinKind::Module, None, 1000).unwrap();
        let expected: Vec<&Twin> = fleet
            .devices
            .iter()
            .flat_map(|device| device.modules.values())
            .collect();
        assert_eq!(modules.iter().collect::<Vec<_>>(), expected);
        let after = TwinId::from(&modules[0]);
        let rest = hub.twins(TwinKind::Module, Some(&after), 1000).unwrap();
        assert_eq!(rest.len(), modules.len() - 1);
        let devices = hub.twins(TwinKind::Device, Some(&after), 1000).unwrap();
        // The first module is `dev-0001/m0`; the next device is `dev-0002`.
        assert_eq!(
            devices[0].device_id,
            fleet.devices[2].id(),
            "devices after a module's device"
        );
        let empty = TempPath::new("pages-empty");
        let page = LocalHub::open(empty.path())
            .unwrap()
            .page(None, 10)
            .unwrap();
        assert!(page.devices.is_empty() && page.continuation.is_none());
    }

    #[tokio::test]
    async fn patches_honour_if_match() {
        let temp = TempPath::new("if-match");
        let hub = hub_with(&temp, &generated_fleet(3));
        let id = device_id("dev-0001");
        let first = hub.twin(&id).await.unwrap();
        let first_etag = first.json["etag"].as_str().unwrap().to_owned();
        let desired = |value: i64| json!({ "properties": { "desired": { "level": value } } });

        let second = hub
            .patch_twin(&id, &desired(1), Some(&format!("\"{first_etag}\"")))
            .unwrap();
        let second_etag = second.json["etag"].as_str().unwrap().to_owned();
        assert_ne!(second_etag, first_etag);
        assert_eq!(hub.twin(&id).await.unwrap(), second);

        match hub.patch_twin(&id, &desired(2), Some(&format!("\"{first_etag}\""))) {
            Err(HubError::PreconditionFailed {
                twin,
                expected,
                actual,
            }) => {
                assert_eq!(
                    (twin.as_str(), expected, actual),
                    ("dev-0001", first_etag.clone(), second_etag.clone())
                );
            }
            other => panic!("expected a failed precondition, got {other:?}"),
        }
        assert_eq!(
            hub.twin(&id).await.unwrap(),
            second,
            "a stale patch writes nothing"
        );
        assert!(
            hub.patch_twin(&id, &desired(2), Some(&first_etag)).is_err(),
            "unquoted etags are compared too"
        );

        let third = hub.patch_twin(&id, &desired(3), None).unwrap();
        let fourth = hub.patch_twin(&id, &desired(4), Some("\"*\"")).unwrap();
        let fifth = hub
            .patch_twin(
                &id,
                &desired(5),
                Some(fourth.json["etag"].as_str().unwrap()),
            )
            .unwrap();
        assert_eq!(third.json["properties"]["desired"]["$version"], json!(3));
        assert_eq!(fifth.json["properties"]["desired"]["level"], json!(5));
        assert_eq!(fifth.json["etag"], json!(etag_for(5)));
        // Through `Hub`, a patch answers with the etag it stored.
        let sixth = hub.patch(&id, &desired(6), None).await.unwrap();
        assert_eq!(sixth, etag_for(6));
        assert_eq!(hub.twin(&id).await.unwrap().json["etag"], json!(sixth));
    }

    #[tokio::test]
    async fn tags_and_desired_bump_their_counters_and_survive_reopening() {
        let temp = TempPath::new("counters");
        let hub = hub_with(&temp, &generated_fleet(1));
        let module = hub.create_module("dev-0000", "agent").await.unwrap();
        assert_eq!(
            (&module.json["etag"], &module.json["version"]),
            (&json!(etag_for(1)), &json!(2))
        );
        let id = module_id("dev-0000", "agent");
        let mixed = hub
            .patch_twin(
                &id,
                &json!({ "tags": { "t": 1 }, "properties": { "desired": { "d": 1 } } }),
                None,
            )
            .unwrap();
        assert_eq!(mixed.json["properties"]["desired"]["$version"], json!(2));
        assert_eq!(
            (&mixed.json["etag"], &mixed.json["version"]),
            (&json!(etag_for(3)), &json!(4))
        );
        assert_eq!(
            mixed.json["properties"]["desired"]["$metadata"]["d"]["$lastUpdatedVersion"],
            json!(2)
        );
        drop(hub);

        // The tag-write count lives in the database, not the JSON.
        let hub = LocalHub::open(temp.path()).unwrap();
        assert_eq!(hub.twin(&id).await.unwrap(), mixed);
        let tags = hub
            .patch_twin(&id, &json!({ "tags": { "t": 2 } }), None)
            .unwrap();
        assert_eq!(
            (&tags.json["etag"], &tags.json["version"]),
            (&json!(etag_for(4)), &json!(5))
        );
    }

    #[tokio::test]
    async fn replace_swaps_tags_and_desired_properties() {
        let temp = TempPath::new("replace");
        let hub = hub_with(&temp, &generated_fleet(3));
        let id = module_id("dev-0002", "m1");
        let twin = hub.twin(&id).await.unwrap();
        let mut body = twin.json.clone();
        body["tags"] = json!({ "owner": "ops" });
        body["properties"]["desired"] = json!({ "fresh": true });
        let stale = twin.json["etag"].as_str().unwrap().to_owned();
        let replaced = hub.replace(&id, &body, Some(&stale)).await.unwrap();
        assert_eq!(replaced.json["tags"], json!({ "owner": "ops" }));
        assert_eq!(replaced.json["properties"]["desired"]["fresh"], json!(true));
        assert!(replaced.json["properties"]["desired"].get("k").is_none());
        assert_eq!(hub.twin(&id).await.unwrap(), replaced);
        assert!(matches!(
            hub.replace(&id, &body, Some(&stale)).await,
            Err(HubError::PreconditionFailed { .. })
        ));
        assert_eq!(hub.twin(&id).await.unwrap(), replaced);
    }

    #[tokio::test]
    async fn create_module_checks_the_device_the_module_and_the_limit() {
        let temp = TempPath::new("modules");
        let hub = hub_with(&temp, &generated_fleet(3));
        let created = hub.create_module("dev-0001", "security").await.unwrap();
        assert_eq!(created.module_id.as_deref(), Some("security"));
        assert_eq!(
            hub.twin(&module_id("dev-0001", "security")).await.unwrap(),
            created
        );
        assert!(matches!(
            hub.create_module("dev-0001", "security").await,
            Err(HubError::ModuleExists { device, module }) if device == "dev-0001" && module == "security"
        ));
        assert!(matches!(
            hub.create_module("nope", "security").await,
            Err(HubError::DeviceNotFound { device }) if device == "nope"
        ));
        assert!(matches!(
            hub.create_module("dev-0001", "").await,
            Err(HubError::InvalidTwin { .. })
        ));
        // dev-0001 has m0 and security; fill it up to 50.
        for at in 0..48 {
            hub.create_module("dev-0001", &format!("extra{at}"))
                .await
                .unwrap();
        }
        match hub.create_module("dev-0001", "one-too-many").await {
            Err(HubError::InvalidTwin { reason, .. }) => {
                assert!(reason.contains("50 modules"), "{reason}");
            }
            other => panic!("expected the module limit, got {other:?}"),
        }
        let page = hub.page(None, 10).unwrap();
        assert_eq!(page.devices[1].modules.len(), 50);
    }

    #[tokio::test]
    async fn missing_devices_and_modules_are_404s() {
        let temp = TempPath::new("missing");
        let hub = hub_with(&temp, &generated_fleet(2));
        let patch = json!({ "tags": { "x": 1 } });
        let device_missing = |result: Result<Twin, HubError>| matches!(result, Err(HubError::DeviceNotFound { device }) if device == "nope");
        let module_missing = |result: Result<Twin, HubError>| matches!(result, Err(HubError::ModuleNotFound { device, .. }) if device == "dev-0000");
        assert!(device_missing(hub.twin(&device_id("nope")).await));
        assert!(device_missing(hub.twin(&module_id("nope", "m0")).await));
        assert!(device_missing(hub.patch_twin(
            &device_id("nope"),
            &patch,
            None
        )));
        assert!(device_missing(
            hub.replace(&module_id("nope", "m"), &patch, None).await
        ));
        assert!(module_missing(hub.twin(&module_id("dev-0000", "m0")).await));
        assert!(module_missing(hub.patch_twin(
            &module_id("dev-0000", "m0"),
            &patch,
            None
        )));
        assert!(module_missing(
            hub.replace(&module_id("dev-0000", "m0"), &patch, None)
                .await
        ));
        // The empty module id is the device twin's row, never a module.
        assert!(module_missing(hub.twin(&module_id("dev-0000", "")).await));
    }

    #[tokio::test]
    async fn a_write_at_the_counters_ceiling_is_stored() {
        // The etag cannot move past u64::MAX; the write still happens.
        let line = json!({
            "deviceId": "dev-max",
            "properties": { "desired": { "$version": u64::MAX, "k": 1 } },
        });
        let fleet = snapshot::parse("max.ndjson", &format!("{line}\n")).unwrap();
        let temp = TempPath::new("ceiling");
        let hub = hub_with(&temp, &fleet);
        let id = device_id("dev-max");
        let patch = json!({ "tags": { "t": 1 }, "properties": { "desired": { "k": 2 } } });
        hub.patch(&id, &patch, None).await.unwrap();
        let twin = hub.twin(&id).await.unwrap();
        assert_eq!(twin.json["properties"]["desired"]["k"], json!(2));
        assert_eq!(twin.json["tags"]["t"], json!(1));
    }

    #[tokio::test]
    async fn writes_that_break_twin_rules_store_nothing() {
        let temp = TempPath::new("limits");
        let hub = hub_with(&temp, &generated_fleet(2));
        let id = device_id("dev-0001");
        let before = hub.twin(&id).await.unwrap();
        let invalid =
            |result: Result<Twin, HubError>| matches!(result, Err(HubError::InvalidTwin { .. }));
        for patch in [
            json!({ "properties": { "desired": { "a.b": 1 } } }),
            json!({ "properties": { "desired": { "ok": 1, "list": [null] } } }),
            json!({ "tags": { "ok": 1, "big": "x".repeat(8200) } }),
            json!({ "properties": { "desired": { "$version": 9 } } }),
            json!({ "status": "disabled" }),
        ] {
            assert!(invalid(hub.patch_twin(&id, &patch, None)), "{patch}");
        }
        for body in [
            json!({ "properties": { "desired": { "a.b": 1 } } }),
            json!({ "tags": { "big": "x".repeat(8200) } }),
            json!({ "tags": { "list": [null] } }),
        ] {
            assert!(invalid(hub.replace(&id, &body, None).await), "{body}");
        }
        assert_eq!(hub.twin(&id).await.unwrap(), before);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn handles_on_one_file_shared_by_threads_lose_no_write() {
        let temp = TempPath::new("concurrent");
        drop(hub_with(&temp, &generated_fleet(1)));
        // Two handles (as two processes would have), each used by two
        // threads at once.
        let handles = [(); 2].map(|()| std::sync::Arc::new(LocalHub::open(temp.path()).unwrap()));
        let mut tasks = Vec::new();
        for writer in 0..4 {
            let hub = std::sync::Arc::clone(&handles[writer % 2]);
            tasks.push(tokio::spawn(async move {
                for at in 0..25 {
                    let patch = json!({ "tags": { format!("w{writer}"): at } });
                    hub.patch(&device_id("dev-0000"), &patch, None)
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let hub = LocalHub::open(temp.path()).unwrap();
        let twin = hub.twin(&device_id("dev-0000")).await.unwrap();
        // The import's twin had etag 1 (desired 1, no tag writes); 100 tag writes since.
        assert_eq!(twin.json["etag"], json!(etag_for(101)));
        let tags: BTreeMap<String, Value> =
            serde_json::from_value(twin.json["tags"].clone()).unwrap();
        assert_eq!(tags.len(), 5);
    }
}
