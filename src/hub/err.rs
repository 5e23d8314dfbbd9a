//! Errors of the hub boundary: reading twins from where they live.

use miette::Diagnostic;
use thiserror::Error;

/// One bad line of a fleet snapshot.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq, Eq)]
#[error("{path}:{line}: {reason}")]
#[diagnostic(code(twinops::hub::snapshot_line))]
pub struct SnapshotLineError {
    /// The snapshot file.
    pub path: String,
    /// Line number, from 1.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// A hub could not be read or written.
#[derive(Debug, Error, Diagnostic)]
pub enum HubError {
    /// No device with that id (IoT Hub 404001).
    #[error("device `{device}` not found")]
    #[diagnostic(code(twinops::hub::device_not_found))]
    DeviceNotFound {
        /// The device id.
        device: String,
    },
    /// The device has no such module (IoT Hub 404010).
    #[error("module `{module}` not found on device `{device}`")]
    #[diagnostic(code(twinops::hub::module_not_found))]
    ModuleNotFound {
        /// The device id.
        device: String,
        /// The module id.
        module: String,
    },
    /// The module identity exists already (IoT Hub 409301).
    #[error("module `{module}` already exists on device `{device}`")]
    #[diagnostic(code(twinops::hub::module_exists))]
    ModuleExists {
        /// The device id.
        device: String,
        /// The module id.
        module: String,
    },
    /// `If-Match` did not match (IoT Hub 412001): the twin changed.
    #[error("twin `{twin}` changed: expected etag `{expected}`, found `{actual}`")]
    #[diagnostic(code(twinops::hub::precondition_failed))]
    PreconditionFailed {
        /// The twin.
        twin: String,
        /// The etag sent.
        expected: String,
        /// The twin's etag now.
        actual: String,
    },
    /// The write breaks IoT Hub's twin rules (IoT Hub 400004); nothing was written.
    #[error("twin `{twin}`: {reason}")]
    #[diagnostic(code(twinops::hub::invalid_twin))]
    InvalidTwin {
        /// The twin.
        twin: String,
        /// Which rule.
        reason: String,
    },
    /// An import met a twin the hub already holds (or the fleet gives twice);
    /// nothing was imported.
    #[error("twin `{twin}` already exists in the local hub; nothing was imported")]
    #[diagnostic(
        code(twinops::hub::twin_exists),
        help(
            "an import only adds twins: import into a new hub file, or remove the twin from the snapshot"
        )
    )]
    TwinExists {
        /// The twin.
        twin: String,
    },
    /// A fleet snapshot could not be written.
    #[error("cannot write fleet snapshot: {reason}")]
    #[diagnostic(code(twinops::hub::export))]
    Export {
        /// What the OS said.
        reason: String,
    },
    /// The database file is not a twinops local hub.
    #[error("`{path}` is not a twinops local hub: {reason}")]
    #[diagnostic(
        code(twinops::hub::not_a_hub),
        help(
            "point the environment's `database` at a twinops hub file, or at a path that does not exist yet"
        )
    )]
    NotAHub {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The storage failed (SQLite, disk).
    #[error("local hub `{path}`: {reason}")]
    #[diagnostic(code(twinops::hub::storage))]
    Storage {
        /// The database file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The hub refused the credentials (IoT Hub 401).
    #[error("IoT Hub `{host}` refused the credentials: {reason}")]
    #[diagnostic(
        code(twinops::hub::unauthorized),
        help(
            "check the environment's connection string: its host, its shared access policy name and key, and the machine's clock"
        )
    )]
    Unauthorized {
        /// The hub's host.
        host: String,
        /// What the hub said (never the token).
        reason: String,
    },
    /// The hub's daily message quota is used up (IoT Hub 403002); retrying
    /// today is pointless.
    #[error("IoT Hub `{host}` has used up its daily message quota")]
    #[diagnostic(
        code(twinops::hub::quota_exceeded),
        help("wait for the quota to reset (midnight UTC), or add units to the hub")
    )]
    QuotaExceeded {
        /// The hub's host.
        host: String,
    },
    /// The hub kept throttling (IoT Hub 429) or failing (5xx) until the
    /// retries ran out.
    #[error("IoT Hub `{host}`: {request} still failed after {attempts} attempts: {reason}")]
    #[diagnostic(
        code(twinops::hub::unavailable),
        help(
            "the hub is throttling or unavailable; lower the environment's pace (tier, units) or try again later"
        )
    )]
    Unavailable {
        /// The hub's host.
        host: String,
        /// Method and path.
        request: String,
        /// How many times it was sent.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The hub answered with an error that no retry can fix.
    #[error("IoT Hub `{host}`: {request} failed with {status}: {message}")]
    #[diagnostic(code(twinops::hub::service))]
    Service {
        /// The hub's host.
        host: String,
        /// Method and path.
        request: String,
        /// HTTP status and IoT Hub error code, e.g. `400 (400004 ArgumentInvalid)`.
        status: String,
        /// The hub's message.
        message: String,
    },
    /// The hub's answer is not what the protocol says.
    #[error("IoT Hub `{host}`: {request} returned an unexpected response: {reason}")]
    #[diagnostic(code(twinops::hub::protocol))]
    Protocol {
        /// The hub's host.
        host: String,
        /// Method and path.
        request: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be set up (TLS roots, CA file).
    #[error("cannot set up the connection to IoT Hub: {reason}")]
    #[diagnostic(code(twinops::hub::client))]
    Client {
        /// What failed.
        reason: String,
    },
    /// The snapshot file could not be read.
    #[error("cannot read fleet snapshot `{path}`: {reason}")]
    #[diagnostic(code(twinops::hub::io))]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        reason: String,
    },
    /// The snapshot has bad lines; nothing was read.
    #[error("fleet snapshot `{path}` has {count} invalid line(s); nothing was read")]
    #[diagnostic(
        code(twinops::hub::snapshot_invalid),
        help(
            "each line is one twin as IoT Hub returns it, with `deviceId` (and `moduleId` for module twins)"
        )
    )]
    InvalidSnapshot {
        /// The file.
        path: String,
        /// How many lines are bad.
        count: usize,
        /// The first bad lines.
        #[related]
        lines: Vec<SnapshotLineError>,
    },
}

/// A connection string or shared access signature that cannot be used. No
/// variant holds a key, a token or a signature.
#[derive(Debug, Clone, Error, Diagnostic, PartialEq, Eq)]
pub enum AuthError {
    /// The connection string is malformed.
    #[error("invalid IoT Hub connection string: {reason}")]
    #[diagnostic(
        code(twinops::hub::connection_string),
        help(
            "a service connection string reads `HostName=NAME.azure-devices.net;SharedAccessKeyName=POLICY;SharedAccessKey=KEY`"
        )
    )]
    ConnectionString {
        /// Which part is wrong.
        reason: String,
    },
    /// No `Authorization` header (IoT Hub 401003).
    #[error("authorization header missing")]
    #[diagnostic(code(twinops::hub::unauthorized))]
    Missing,
    /// The token is not valid for this hub now (IoT Hub 401002).
    #[error("unauthorized: {reason}")]
    #[diagnostic(code(twinops::hub::unauthorized))]
    Unauthorized {
        /// Which check failed.
        reason: String,
    },
}
