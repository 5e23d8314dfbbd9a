//! The repository around a project, read through git2: files at a
//! revision, merge bases, uncommitted changes, history, blame and notes.
//!
//! Paths given in and shown out are the project's own: absolute, or
//! relative to the project directory, which may sit below the
//! repository's root.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::diag::SourceFile;
use crate::gitops::GitError;

/// Where apply reports are kept, one note per commit.
pub const NOTES_REF: &str = "refs/notes/twinops";

/// A commit, as the audit shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CommitInfo {
    /// The full id.
    pub id: String,
    /// The first 12 hex digits.
    pub short: String,
    /// Author name.
    pub author: String,
    /// Author email.
    pub email: String,
    /// Author time, Unix seconds.
    pub time: i64,
    /// Author date, `YYYY-MM-DD` (UTC).
    pub date: String,
    /// The first line of the message.
    pub summary: String,
}

impl CommitInfo {
    fn of(commit: &git2::Commit<'_>) -> Self {
        let id = commit.id().to_string();
        let author = commit.author();
        let time = author.when().seconds();
        Self {
            short: id.chars().take(12).collect(),
            id,
            author: author.name().unwrap_or("?").to_owned(),
            email: author.email().unwrap_or("").to_owned(),
            time,
            date: date_of(time),
            summary: commit.summary().ok().flatten().unwrap_or("").to_owned(),
        }
    }
}

/// `YYYY-MM-DD` of a Unix time (UTC); times before 1970 show as its first day.
fn date_of(seconds: i64) -> String {
    let days = u64::try_from(seconds.div_euclid(86_400)).unwrap_or(0);
    let (year, month, day) = crate::hub::model::civil_date(days);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A git repository and the project directory inside it.
pub struct Repository {
    repo: git2::Repository,
    /// The project directory, absolute.
    root: PathBuf,
    /// The project directory relative to the work tree (empty at its root).
    prefix: PathBuf,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("root", &self.root)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Repository {
    /// The repository holding the project at `root`.
    ///
    /// # Errors
    /// [`GitError::NoRepository`] outside a repository (or in a bare one),
    /// [`GitError::Outside`] when the project is not in its work tree.
    pub fn discover(root: &Path) -> Result<Self, GitError> {
        let shown = root.display().to_string();
        let repo = git2::Repository::discover(root).map_err(|_| GitError::NoRepository {
            path: shown.clone(),
        })?;
        let canonical = |path: &Path| {
            path.canonicalize().map_err(|_| GitError::Outside {
                path: shown.clone(),
            })
        };
        let root = canonical(root)?;
        // A bare repository (the runner's clone) holds the project at its root.
        let prefix = match repo.workdir() {
            Some(workdir) => root
                .strip_prefix(canonical(workdir)?)
                .map_err(|_| GitError::Outside {
                    path: shown.clone(),
                })?
                .to_path_buf(),
            None => PathBuf::new(),
        };
        Ok(Self { repo, root, prefix })
    }

    /// The runner's own bare clone of `url` at `path`: opened when it
    /// exists, cloned otherwise. Works over https, ssh, `file://` and plain
    /// paths.
    ///
    /// # Errors
    /// When the clone cannot be made or opened.
    pub fn clone_or_open(url: &str, path: &Path) -> Result<Self, GitError> {
        let repo = if path.join("HEAD").is_file() {
            git2::Repository::open_bare(path)
                .map_err(|error| GitError::failed(format!("open `{}`", path.display()), &error))?
        } else {
            let mut fetch = git2::FetchOptions::new();
            fetch.remote_callbacks(credentials(None));
            git2::build::RepoBuilder::new()
                .bare(true)
                .fetch_options(fetch)
                .clone(url, path)
                .map_err(|error| GitError::Failed {
                    action: format!("clone `{}`", shown_url(url)),
                    reason: error.message().replace(url, &shown_url(url)),
                })?
        };
        let root = path.canonicalize().map_err(|_| GitError::Outside {
            path: path.display().to_string(),
        })?;
        Ok(Self {
            repo,
            root,
            prefix: PathBuf::new(),
        })
    }

    /// Fetches `branch` from `origin` (forced, so a rewritten history is
    /// seen as it is) and returns its tip.
    ///
    /// # Errors
    /// When the fetch fails or the branch does not exist there.
    pub fn fetch(&self, branch: &str) -> Result<CommitInfo, GitError> {
        let mut remote = self
            .repo
            .find_remote("origin")
            .map_err(|error| GitError::failed("find remote `origin`", &error))?;
        let mut options = git2::FetchOptions::new();
        options.remote_callbacks(credentials(self.repo.config().ok()));
        let tracking = format!("refs/remotes/origin/{branch}");
        remote
            .fetch(
                &[format!("+refs/heads/{branch}:{tracking}")],
                Some(&mut options),
                None,
            )
            .map_err(|error| GitError::failed(format!("fetch `{branch}`"), &error))?;
        self.commit(&tracking)
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors.
    ///
    /// # Errors
    /// When either revision is unknown.
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool, GitError> {
        let (ancestor, descendant) = (self.find(ancestor)?.id(), self.find(descendant)?.id());
        if ancestor == descendant {
            return Ok(true);
        }
        self.repo
            .graph_descendant_of(descendant, ancestor)
            .map_err(|error| GitError::failed("compare histories", &error))
    }

    /// The project directory, absolute.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn find(&self, revision: &str) -> Result<git2::Commit<'_>, GitError> {
        self.repo
            .revparse_single(revision)
            .and_then(|object| object.peel_to_commit())
            .map_err(|error| GitError::UnknownRevision {
                revision: revision.to_owned(),
                reason: error.message().to_owned(),
            })
    }

    /// The commit `revision` names.
    ///
    /// # Errors
    /// [`GitError::UnknownRevision`].
    pub fn commit(&self, revision: &str) -> Result<CommitInfo, GitError> {
        Ok(CommitInfo::of(&self.find(revision)?))
    }

    /// The best common ancestor of two revisions.
    ///
    /// # Errors
    /// When either is unknown or they share no history.
    pub fn merge_base(&self, one: &str, other: &str) -> Result<CommitInfo, GitError> {
        let (one, other) = (self.find(one)?.id(), self.find(other)?.id());
        let base = self
            .repo
            .merge_base(one, other)
            .map_err(|error| GitError::failed("find the merge base", &error))?;
        let commit = self
            .repo
            .find_commit(base)
            .map_err(|error| GitError::failed("read the merge base", &error))?;
        Ok(CommitInfo::of(&commit))
    }

    /// `path` (absolute, or relative to the project) as a path in the
    /// repository's trees.
    fn tree_path(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix(&self.root).unwrap_or(path);
        let mut joined = self.prefix.clone();
        for component in relative.components() {
            match component {
                Component::Normal(part) => joined.push(part),
                Component::ParentDir => {
                    joined.pop();
                }
                _ => {}
            }
        }
        joined
    }

    /// A tree path as the project shows it (relative to the project).
    fn shown(&self, tree_path: &Path) -> String {
        tree_path
            .strip_prefix(&self.prefix)
            .unwrap_or(tree_path)
            .to_string_lossy()
            .replace('\\', "/")
    }

    /// The file at `path` in `revision`, or `None` where it does not exist.
    ///
    /// # Errors
    /// When the revision is unknown or git fails.
    pub fn read_file(&self, revision: &str, path: &Path) -> Result<Option<SourceFile>, GitError> {
        let commit = self.find(revision)?;
        let tree = commit
            .tree()
            .map_err(|error| GitError::failed("read a commit's tree", &error))?;
        let tree_path = self.tree_path(path);
        let Ok(entry) = tree.get_path(&tree_path) else {
            return Ok(None);
        };
        let object = entry
            .to_object(&self.repo)
            .map_err(|error| GitError::failed("read a file", &error))?;
        Ok(object
            .as_blob()
            .map(|blob| SourceFile::from_bytes(self.shown(&tree_path), blob.content())))
    }

    /// Every file under `dir` in `revision` whose name ends with one of
    /// `extensions`, sorted by path (a `dir` that is a file is read alone);
    /// `None` when `dir` does not exist there.
    ///
    /// # Errors
    /// When the revision is unknown or git fails.
    pub fn read_dir(
        &self,
        revision: &str,
        dir: &Path,
        extensions: &[&str],
    ) -> Result<Option<Vec<SourceFile>>, GitError> {
        let commit = self.find(revision)?;
        let tree = commit
            .tree()
            .map_err(|error| GitError::failed("read a commit's tree", &error))?;
        let tree_path = self.tree_path(dir);
        let subtree = if tree_path.as_os_str().is_empty() {
            tree
        } else {
            let Ok(entry) = tree.get_path(&tree_path) else {
                return Ok(None);
            };
            let object = entry
                .to_object(&self.repo)
                .map_err(|error| GitError::failed("read a directory", &error))?;
            if let Some(blob) = object.as_blob() {
                return Ok(Some(vec![SourceFile::from_bytes(
                    self.shown(&tree_path),
                    blob.content(),
                )]));
            }
            object.into_tree().map_err(|_| GitError::Failed {
                action: format!("read `{}`", self.shown(&tree_path)),
                reason: "neither a file nor a directory".to_owned(),
            })?
        };
        let mut found: BTreeMap<PathBuf, git2::Oid> = BTreeMap::new();
        subtree
            .walk(git2::TreeWalkMode::PreOrder, |parent, entry| {
                let name = entry.name().unwrap_or_default();
                if entry.kind() == Some(git2::ObjectType::Blob)
                    && extensions.iter().any(|extension| name.ends_with(extension))
                {
                    found.insert(tree_path.join(parent).join(name), entry.id());
                }
                git2::TreeWalkResult::Ok
            })
            .map_err(|error| GitError::failed("walk a tree", &error))?;
        found
            .into_iter()
            .map(|(path, id)| {
                let blob = self
                    .repo
                    .find_blob(id)
                    .map_err(|error| GitError::failed("read a file", &error))?;
                Ok(SourceFile::from_bytes(self.shown(&path), blob.content()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Changes under `paths` that are not committed (staged, unstaged or
    /// untracked), as project paths.
    ///
    /// # Errors
    /// When git cannot read the work tree.
    pub fn uncommitted(&self, paths: &[&Path]) -> Result<Vec<String>, GitError> {
        let mut options = git2::StatusOptions::new();
        options
            .include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false);
        for path in paths {
            options.pathspec(self.tree_path(path));
        }
        let statuses = self
            .repo
            .statuses(Some(&mut options))
            .map_err(|error| GitError::failed("read the work tree's status", &error))?;
        let mut changed: Vec<String> = statuses
            .iter()
            .filter(|entry| entry.status() != git2::Status::CURRENT)
            .filter_map(|entry| entry.path().ok().map(|path| self.shown(Path::new(path))))
            .collect();
        changed.sort();
        Ok(changed)
    }

    /// Commits reachable from `from` (first parents, newest first) back to,
    /// not including, `until`, that changed anything under `paths`.
    ///
    /// # Errors
    /// When a revision is unknown or git fails.
    pub fn log(
        &self,
        from: &str,
        until: Option<&str>,
        paths: &[&Path],
    ) -> Result<Vec<CommitInfo>, GitError> {
        let stop = until
            .map(|until| self.find(until).map(|c| c.id()))
            .transpose()?;
        let tree_paths: Vec<PathBuf> = paths.iter().map(|path| self.tree_path(path)).collect();
        let mut commits = Vec::new();
        let mut current = Some(self.find(from)?);
        while let Some(commit) = current {
            if Some(commit.id()) == stop {
                break;
            }
            let parent = commit.parents().next();
            if touches(&commit, parent.as_ref(), &tree_paths)? {
                commits.push(CommitInfo::of(&commit));
            }
            current = parent;
        }
        Ok(commits)
    }

    /// Per line of `file` (a project path) at `revision`, from 1, the
    /// commit that last changed it.
    ///
    /// # Errors
    /// When the revision is unknown or git cannot blame the file.
    pub fn blame(&self, revision: &str, file: &str) -> Result<Vec<CommitInfo>, GitError> {
        let newest = self.find(revision)?.id();
        let mut options = git2::BlameOptions::new();
        options.newest_commit(newest);
        let tree_path = self.tree_path(Path::new(file));
        let blame = self
            .repo
            .blame_file(&tree_path, Some(&mut options))
            .map_err(|error| GitError::failed(format!("blame `{file}`"), &error))?;
        let mut lines = Vec::new();
        let mut cache: BTreeMap<git2::Oid, CommitInfo> = BTreeMap::new();
        for hunk in blame.iter() {
            let id = hunk.final_commit_id();
            let info = if let Some(info) = cache.get(&id) {
                info.clone()
            } else {
                let commit = self
                    .repo
                    .find_commit(id)
                    .map_err(|error| GitError::failed("read a blamed commit", &error))?;
                let info = CommitInfo::of(&commit);
                cache.insert(id, info.clone());
                info
            };
            lines.extend(std::iter::repeat_n(info, hunk.lines_in_hunk()));
        }
        Ok(lines)
    }

    /// Appends `text` to the note of `revision` under [`NOTES_REF`].
    ///
    /// # Errors
    /// When git cannot write the note.
    pub fn add_note(&self, revision: &str, text: &str) -> Result<(), GitError> {
        let id = self.find(revision)?.id();
        let existing = self.note(revision)?;
        let signature = self
            .repo
            .signature()
            .or_else(|_| git2::Signature::now("twinops", "twinops@localhost"))
            .map_err(|error| GitError::failed("sign a note", &error))?;
        let message = match existing {
            Some(existing) => format!("{}\n{text}\n", existing.trim_end()),
            None => format!("{text}\n"),
        };
        self.repo
            .note(&signature, &signature, Some(NOTES_REF), id, &message, true)
            .map_err(|error| GitError::failed("write a note", &error))?;
        Ok(())
    }

    /// The note of `revision` under [`NOTES_REF`], if any.
    ///
    /// # Errors
    /// When the revision is unknown.
    pub fn note(&self, revision: &str) -> Result<Option<String>, GitError> {
        let id = self.find(revision)?.id();
        Ok(self
            .repo
            .find_note(Some(NOTES_REF), id)
            .ok()
            .and_then(|note| note.message().ok().map(str::to_owned)))
    }

    /// Who is at the keyboard, as git's configuration says (`name <email>`).
    #[must_use]
    pub fn who(&self) -> String {
        self.repo.signature().map_or_else(
            |_| "unknown (no git user.name configured)".to_owned(),
            |signature| {
                format!(
                    "{} <{}>",
                    signature.name().unwrap_or("?"),
                    signature.email().unwrap_or("?")
                )
            },
        )
    }

    /// Brings the local notes up to `remote`'s before a note is added, so
    /// that pushing them afterwards is a fast-forward: fetches the remote's
    /// notes and moves the local ref there when it is absent or behind.
    ///
    /// # Errors
    /// When the fetch fails, or local and remote notes have diverged.
    pub fn sync_notes(&self, remote: &str) -> Result<(), GitError> {
        let action = format!("fetch notes from `{remote}`");
        let mut found = self
            .repo
            .find_remote(remote)
            .map_err(|error| GitError::failed(format!("find remote `{remote}`"), &error))?;
        let mirror = format!("refs/twinops/remote-notes/{remote}");
        let mut options = git2::FetchOptions::new();
        options.remote_callbacks(credentials(self.repo.config().ok()));
        if let Err(error) = found.fetch(
            &[format!("+{NOTES_REF}:{mirror}")],
            Some(&mut options),
            None,
        ) {
            // A remote without notes yet has nothing to fetch.
            if error.code() != git2::ErrorCode::NotFound {
                return Err(GitError::failed(action, &error));
            }
        }
        let Ok(theirs) = self.repo.refname_to_id(&mirror) else {
            return Ok(());
        };
        let ours = self.repo.refname_to_id(NOTES_REF).ok();
        let behind = match ours {
            None => true,
            Some(ours) if ours == theirs => false,
            Some(ours) => self
                .repo
                .graph_descendant_of(theirs, ours)
                .map_err(|error| GitError::failed(action.clone(), &error))?,
        };
        if behind {
            self.repo
                .reference(NOTES_REF, theirs, true, "twinops: notes from the remote")
                .map_err(|error| GitError::failed(action, &error))?;
            return Ok(());
        }
        let ahead =
            ours.is_some_and(|ours| self.repo.graph_descendant_of(ours, theirs).unwrap_or(false));
        if ahead {
            Ok(())
        } else {
            Err(GitError::Failed {
                action,
                reason: format!(
                    "the notes here and on `{remote}` have diverged; merge them with `git notes --ref twinops merge` first"
                ),
            })
        }
    }

    /// Pushes [`NOTES_REF`] to `remote`.
    ///
    /// # Errors
    /// When the remote is unknown or refuses the push.
    pub fn push_notes(&self, remote: &str) -> Result<(), GitError> {
        let mut found = self
            .repo
            .find_remote(remote)
            .map_err(|error| GitError::failed(format!("find remote `{remote}`"), &error))?;
        let refused = std::rc::Rc::new(std::cell::RefCell::new(None::<String>));
        let mut callbacks = credentials(self.repo.config().ok());
        let seen = std::rc::Rc::clone(&refused);
        // A remote that refuses a ref (a hook, a protected ref) says so here,
        // not in the push's result.
        callbacks.push_update_reference(move |_, status| {
            if let Some(status) = status {
                *seen.borrow_mut() = Some(status.to_owned());
            }
            Ok(())
        });
        let mut options = git2::PushOptions::new();
        options.remote_callbacks(callbacks);
        found
            .push(&[format!("{NOTES_REF}:{NOTES_REF}")], Some(&mut options))
            .map_err(|error| GitError::failed(format!("push notes to `{remote}`"), &error))?;
        let refusal = refused.borrow().clone();
        match refusal {
            Some(reason) => Err(GitError::Failed {
                action: format!("push notes to `{remote}`"),
                reason: format!("the remote refused `{NOTES_REF}`: {reason}"),
            }),
            None => Ok(()),
        }
    }
}

/// `url` without any user name or password in it, for messages
/// (`https://x-access-token:TOKEN@github.com/o/r` → `https://github.com/o/r`).
#[must_use]
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Whether `commit` changed anything under `paths` against `parent`.
fn touches(
    commit: &git2::Commit<'_>,
    parent: Option<&git2::Commit<'_>>,
    paths: &[PathBuf],
) -> Result<bool, GitError> {
    let failed = |error: git2::Error| GitError::failed("compare two commits", &error);
    let tree = commit.tree().map_err(failed)?;
    let parent_tree = parent.map(git2::Commit::tree).transpose().map_err(failed)?;
    let entry_id = |tree: Option<&git2::Tree<'_>>, path: &Path| {
        tree.and_then(|tree| {
            if path.as_os_str().is_empty() {
                Some(tree.id())
            } else {
                tree.get_path(path).ok().map(|entry| entry.id())
            }
        })
    };
    Ok(paths
        .iter()
        .any(|path| entry_id(Some(&tree), path) != entry_id(parent_tree.as_ref(), path)))
}

/// Credentials for remotes: an SSH agent, or git's credential helpers.
fn credentials(config: Option<git2::Config>) -> git2::RemoteCallbacks<'static> {
    let config = config.or_else(|| git2::Config::open_default().ok());
    let mut callbacks = git2::RemoteCallbacks::new();
    let mut attempts = 0;
    callbacks.credentials(move |url, username, allowed| {
        // libgit2 asks again after every refusal: give up after a few.
        attempts += 1;
        if attempts > 3 {
            return Err(git2::Error::from_str(
                "the remote refused every credential offered",
            ));
        }
        if allowed.contains(git2::CredentialType::USERNAME) {
            git2::Cred::username(username.unwrap_or("git"))
        } else if allowed.contains(git2::CredentialType::SSH_KEY) {
            git2::Cred::ssh_key_from_agent(username.unwrap_or("git"))
        } else if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
            match &config {
                Some(config) => git2::Cred::credential_helper(config, url, username),
                None => git2::Cred::default(),
            }
        } else {
            git2::Cred::default()
        }
    });
    callbacks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            shown_url("https://x-access-token:s3cret@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(shown_url("ssh://git@host/r"), "ssh://host/r");
        assert_eq!(shown_url("file:///tmp/r"), "file:///tmp/r");
        assert_eq!(shown_url("/tmp/r"), "/tmp/r");
        assert_eq!(shown_url("https://host/a@b"), "https://host/a@b");
    }

    #[test]
    fn dates_are_civil_utc_days() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(951_782_400), "2000-02-29");
        assert_eq!(date_of(1_700_000_000), "2023-11-14");
        assert_eq!(date_of(-86_400), "1970-01-01", "clamped");
    }
}
