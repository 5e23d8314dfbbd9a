//! Errors of the compile stage: problems that exist only on the merged,
//! per-device value, never in one policy alone.

use miette::Diagnostic;
use thiserror::Error;

/// A problem with what some devices would receive.
#[derive(Debug, Error, Diagnostic)]
pub enum CompileError {
    /// Two policies of one priority set a leaf to different values.
    #[error(
        "policies `{first}` and `{second}` (both priority {priority}) set `{path}` differently on device `{device}`"
    )]
    #[diagnostic(code(twinops::compile::conflict))]
    Conflict {
        /// One policy.
        first: String,
        /// The other.
        second: String,
        /// Their shared priority.
        priority: i64,
        /// The desired path.
        path: String,
        /// An example device.
        device: String,
        /// What to do, and how many other devices are affected.
        #[help]
        help: String,
    },
    /// The merged value breaks its schema.
    #[error("{twin}: {reason}")]
    #[diagnostic(code(twinops::compile::merged_value))]
    MergedValue {
        /// ``device `d`, module `m` ``.
        twin: String,
        /// The schema's complaint.
        reason: String,
        /// What to do.
        #[help]
        help: Option<String>,
    },
    /// The merged value breaks a cross-field rule of its schema.
    #[error("{twin}: {message}")]
    #[diagnostic(code(twinops::compile::rule))]
    Rule {
        /// ``device `d`, module `m` ``.
        twin: String,
        /// The rule's message.
        message: String,
        /// The rule's help.
        #[help]
        help: Option<String>,
    },
    /// The merged desired properties break an IoT Hub twin limit.
    #[error("{twin}: {reason}")]
    #[diagnostic(code(twinops::compile::twin_limit))]
    TwinLimit {
        /// ``device `d`, module `m` ``.
        twin: String,
        /// Which limit.
        reason: String,
        /// What to do.
        #[help]
        help: Option<String>,
    },
}
