//! GitOps: policies as they are in git, read straight from git objects.
//!
//! [`Repository`] opens the repository around a project and reads its
//! files at any revision without a checkout ([`Repository::read_dir`],
//! [`Repository::read_file`]), finds merge bases, tells whether the work
//! tree has uncommitted policy changes, blames policy lines and keeps apply
//! reports as notes under [`NOTES_REF`]. [`preview`] says what a change of
//! policies does, for pull requests. Built on git2; never runs the `git`
//! binary.

mod err;
pub mod preview;
mod repository;

pub use err::GitError;
pub use repository::{CommitInfo, NOTES_REF, Repository};
