//! Exit statuses: the only place their numbers appear.

use std::process::ExitCode;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Success; nothing to change.
    Success,
    /// The world failed: a file, the hub, the network.
    OperationalError,
    /// Changes are present (`--detailed-exitcode`).
    Changes,
    /// The policies are invalid.
    InvalidPolicies,
}

impl ExitStatus {
    /// The process exit code.
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::OperationalError => 1,
            Self::Changes => 2,
            Self::InvalidPolicies => 3,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status.code())
    }
}
