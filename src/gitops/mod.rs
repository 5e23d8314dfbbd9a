//! GitOps: policies as they are in git, read straight from git objects.
//!
//! [`Repository`] opens the repository around a project and reads its
//! files at any revision without a checkout ([`Repository::read_dir`],
//! [`Repository::read_file`]), finds merge bases, tells whether the work
//! tree has uncommitted policy changes, blames policy lines and keeps apply
//! reports as notes under [`NOTES_REF`]. [`preview`] says what a change of
//! policies does, for pull requests; [`audit`] what each commit did and who
//! set each value; [`runner`] holds the runner's webhooks, metrics and lock. Built on git2; never runs the `git`
//! binary.

pub mod audit;
mod err;
pub mod preview;
mod repository;
pub mod runner;

pub use err::GitError;

use serde::{Deserialize, Serialize};

use crate::hub::HubIdentity;

/// One apply of a commit, as its note records it: one JSON object per line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyNote {
    /// The environment applied to.
    pub environment: String,
    /// Its hub.
    pub hub: HubIdentity,
    /// Who applied (git's `user.name <user.email>`).
    pub by: String,
    /// When, UTC.
    pub at: String,
    /// Twins written.
    pub changed: usize,
    /// Twins changed since the plan, left alone.
    pub stale: usize,
    /// Twins the hub refused.
    pub failed: usize,
}

impl ApplyNote {
    /// The note's line: compact JSON.
    #[must_use]
    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
pub use repository::{CommitInfo, NOTES_REF, Repository, shown_url};
