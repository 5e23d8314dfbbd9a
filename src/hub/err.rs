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

/// A hub could not be read.
#[derive(Debug, Error, Diagnostic)]
pub enum HubError {
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
