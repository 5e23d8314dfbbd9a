//! Section `preview`: the pull-request preview (`plan --base`) of a
//! 200-policy project in 20 files, over histories of growing length.
//!
//! Each repository is built with git2 straight from objects (fixed author
//! and times, so commit ids repeat): the project and a generated snapshot
//! committed as its `[fleet] snapshot`, then commits on `main` that each
//! change one setting of one policy, and a branch `pr` with one more.

use std::path::Path;

use crate::binary::{self, args};
use crate::fleetgen::{self, Policy};
use crate::generate;
use crate::measure;
use crate::report::{self, Figure, Report, Unit};
use crate::{Section, Suite};

/// Policies of the previewed project.
const POLICIES: usize = 200;
/// Files they are spread over.
const POLICY_FILES: usize = 20;
/// The setting each commit changes, in policies that set it.
const CHANGED_SETTING: &str = "highPriorityMessageFrequency";
/// Seconds since the epoch of the first commit.
const FIRST_COMMIT_TIME: i64 = 1_780_000_000;

pub(crate) fn run(suite: &Suite, report: &mut Report) {
    report::section(
        "pull-request preview: twinops --rev pr plan --base main",
        suite.runs,
    );
    let rerun = suite.rerun(Section::Preview);
    let directory = suite.work.join("preview");
    if directory.exists() {
        std::fs::remove_dir_all(&directory).expect("the old repositories are removed");
    }
    std::fs::create_dir_all(&directory).expect("the preview directory is created");
    let devices = fleetgen::devices_for(suite.sizes.preview_twins);
    let snapshot = directory.join("fleet.ndjson");
    let twins = generate::snapshot_file(&snapshot, devices, suite.seed);
    let policies = generate::policy_set(POLICIES, devices);
    println!("  project: {POLICIES} policies in {POLICY_FILES} files; snapshot: {twins} twins");
    let mut shortest: Option<(usize, f64)> = None;
    for &length in &suite.sizes.histories {
        let repository = directory.join(format!("history-{length}"));
        let built = measure::seconds(|| build(&repository, &snapshot, policies.clone(), length));
        println!(
            "  built {} ({length} commits on main, 1 on pr) in {built:.1} s",
            binary::arg(&repository)
        );
        // The live plan reads the local hub: made once, outside the timing.
        suite.twinops.run(
            Some(&repository),
            &args(&["--config", "twinops.toml", "hub", "import", "fleet.ndjson"]),
        );
        let preview_args = args(&[
            "--config",
            "twinops.toml",
            "--rev",
            "pr",
            "plan",
            "--base",
            "main",
            "--format",
            "markdown",
        ]);
        let preview = suite
            .twinops
            .measure(Some(&repository), &preview_args, suite.runs, || {});
        let mut figure = Figure::new(
            format!("preview, {length}-commit history"),
            Some(preview.seconds),
            Unit::Seconds,
        )
        .reproduce(&preview.command);
        match shortest {
            Some((first, seconds)) => {
                figure = figure.ratio(seconds, format!("the {first}-commit history"));
            }
            None => shortest = Some((length, preview.seconds)),
        }
        report.figure(figure, &rerun);
    }
}

/// A repository at `directory`: `length` commits on `main` (the project,
/// then one changed setting each), and `pr` one commit ahead; `main`
/// checked out.
fn build(directory: &Path, snapshot: &Path, mut policies: Vec<Policy>, length: usize) {
    let repository = git2::Repository::init_opts(
        directory,
        git2::RepositoryInitOptions::new().initial_head("main"),
    )
    .expect("the repository is created");
    let blob = |bytes: &[u8]| repository.blob(bytes).expect("a blob is written");
    let root_files = [
        (
            "twinops.toml",
            blob(generate::config_text(Some("fleet.ndjson")).as_bytes()),
        ),
        (".gitignore", blob(b"hub.db*\n")),
        (
            "fleet.ndjson",
            repository
                .blob_path(snapshot)
                .expect("the snapshot is stored"),
        ),
    ];
    let changeable: Vec<usize> = (0..policies.len())
        .filter(|&at| setting(&mut policies, at).is_some())
        .collect();
    let mut parent: Option<git2::Oid> = None;
    for number in 0..=length {
        let message = if number == 0 {
            "The project".to_owned()
        } else {
            let at = changeable
                .get(number % changeable.len())
                .copied()
                .expect("some policy sets the setting");
            change(&mut policies, at)
        };
        let branch = if number < length { "main" } else { "pr" };
        let tree = tree(&repository, &root_files, &policies);
        parent = Some(commit(&repository, branch, &tree, parent, number, &message));
    }
    repository
        .checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
        .expect("main is checked out");
}

/// The changed setting's value in policy `at`, if it sets it.
fn setting(policies: &mut [Policy], at: usize) -> Option<&mut String> {
    policies
        .get_mut(at)?
        .settings
        .iter_mut()
        .find(|(key, _)| *key == CHANGED_SETTING)
        .map(|(_, value)| value)
}

/// Changes the setting of policy `at` to another number of minutes (one to
/// five, all valid beside the other settings); returns the commit message.
fn change(policies: &mut [Policy], at: usize) -> String {
    let value = setting(policies, at).expect("the policy sets the setting");
    let now: u64 = value
        .trim_start_matches("PT")
        .trim_end_matches('M')
        .parse()
        .expect("a duration in minutes");
    *value = fleetgen::minutes(now % 5 + 1);
    let value = value.clone();
    let name = policies.get(at).map_or("", |policy| policy.name.as_str());
    format!("{name}: {CHANGED_SETTING} {value}")
}

/// The tree of the project: `root_files` and the policies in their files.
fn tree<'r>(
    repository: &'r git2::Repository,
    root_files: &[(&str, git2::Oid)],
    policies: &[Policy],
) -> git2::Tree<'r> {
    let per_file = policies.len().div_ceil(POLICY_FILES);
    let mut directory = repository.treebuilder(None).expect("a tree builder");
    for (number, file) in policies.chunks(per_file).enumerate() {
        let mut text = String::new();
        for policy in file {
            policy.write(&mut text);
        }
        let blob = repository.blob(text.as_bytes()).expect("a blob is written");
        directory
            .insert(format!("part-{number:02}.yaml"), blob, 0o100_644)
            .expect("a policy file is added");
    }
    let directory = directory.write().expect("the policies tree is written");
    let mut root = repository.treebuilder(None).expect("a tree builder");
    for (name, blob) in root_files {
        root.insert(name, *blob, 0o100_644)
            .expect("a file is added");
    }
    root.insert("policies", directory, 0o040_000)
        .expect("the policies are added");
    let root = root.write().expect("the tree is written");
    repository
        .find_tree(root)
        .expect("the tree was just written")
}

/// Commits `tree` on `branch` after `parent`, as a fixed author an hour
/// after the previous commit.
fn commit(
    repository: &git2::Repository,
    branch: &str,
    tree: &git2::Tree<'_>,
    parent: Option<git2::Oid>,
    number: usize,
    message: &str,
) -> git2::Oid {
    let seconds = FIRST_COMMIT_TIME + 3600 * i64::try_from(number).expect("a short history");
    let author = git2::Signature::new("Ada Ops", "ada@example.com", &git2::Time::new(seconds, 0))
        .expect("a signature");
    let parent = parent.map(|id| repository.find_commit(id).expect("the parent commit"));
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repository
        .commit(
            Some(&format!("refs/heads/{branch}")),
            &author,
            &author,
            message,
            tree,
            &parents,
        )
        .expect("the commit is written")
}
