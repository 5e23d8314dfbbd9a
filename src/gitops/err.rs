//! Errors of the git side: a repository, a revision or a file that cannot
//! be read.

use miette::Diagnostic;
use thiserror::Error;

/// Git could not give what was asked.
#[derive(Debug, Error, Diagnostic)]
pub enum GitError {
    /// No repository around the project.
    #[error("`{path}` is not in a git repository")]
    #[diagnostic(
        code(twinops::git::no_repository),
        help(
            "`--rev`, `--base` and the audit commands read policies from git: run them inside a clone"
        )
    )]
    NoRepository {
        /// The project directory.
        path: String,
    },
    /// A revision that does not name a commit.
    #[error("unknown revision `{revision}`: {reason}")]
    #[diagnostic(
        code(twinops::git::unknown_revision),
        help("name a commit, a branch, a tag or an expression such as `HEAD~2` or `origin/main`")
    )]
    UnknownRevision {
        /// As given.
        revision: String,
        /// What git said.
        reason: String,
    },
    /// The project lies outside the repository's work tree.
    #[error("the project `{path}` is not inside the repository's work tree")]
    #[diagnostic(code(twinops::git::outside))]
    Outside {
        /// The project directory.
        path: String,
    },
    /// Anything else git reported.
    #[error("git: {action}: {reason}")]
    #[diagnostic(code(twinops::git::failed))]
    Failed {
        /// What was being done.
        action: String,
        /// What git said.
        reason: String,
    },
}

impl GitError {
    /// A git failure while doing `action`.
    pub(crate) fn failed(action: impl Into<String>, error: &git2::Error) -> Self {
        Self::Failed {
            action: action.into(),
            reason: error.message().to_owned(),
        }
    }
}
