//! Errors of saved plans: a plan file that cannot be applied as it is.

use miette::Diagnostic;
use thiserror::Error;

/// Why a saved plan is refused.
#[derive(Debug, Error, Diagnostic, PartialEq, Eq)]
pub enum PlanFileError {
    /// Not JSON, or cut short.
    #[error("`{path}` is not a twinops plan: {reason}")]
    #[diagnostic(
        code(twinops::plan::unreadable),
        help("make a new plan with `twinops plan --out FILE`")
    )]
    Unreadable {
        /// The file.
        path: String,
        /// The parser's words.
        reason: String,
    },
    /// Written by another version of twinops.
    #[error("`{path}` has plan format version {found}; this twinops reads version {expected}")]
    #[diagnostic(
        code(twinops::plan::version),
        help("make a new plan with this version of twinops")
    )]
    Version {
        /// The file.
        path: String,
        /// Its version.
        found: u64,
        /// Ours.
        expected: u64,
    },
    /// The content does not match its checksum: edited after it was made.
    #[error("`{path}` was changed after it was made (checksum mismatch)")]
    #[diagnostic(
        code(twinops::plan::edited),
        help("a saved plan is applied exactly as planned; make a new plan instead of editing one")
    )]
    Edited {
        /// The file.
        path: String,
    },
    /// Made against a different hub.
    #[error("`{path}` was planned against {planned}, not {target}")]
    #[diagnostic(
        code(twinops::plan::other_hub),
        help("apply it with the environment it was planned for, or make a new plan for this one")
    )]
    OtherHub {
        /// The file.
        path: String,
        /// The hub it names.
        planned: String,
        /// The hub of the chosen environment.
        target: String,
    },
    /// Made from a snapshot file, which has no hub to apply to.
    #[error("`{path}` was planned from a fleet snapshot, not from a hub")]
    #[diagnostic(
        code(twinops::plan::no_hub),
        help("plan against an environment (`twinops plan --env NAME --out FILE`) to apply")
    )]
    FromSnapshot {
        /// The file.
        path: String,
    },
}
