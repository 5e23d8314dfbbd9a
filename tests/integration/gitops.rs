//! The git side end to end, on throwaway repositories made with git2 (fixed
//! authors and times, so commit ids and outputs repeat): policies read at a
//! revision, and the pull-request preview of `plan --base`.

use crate::apply::{Project, Run, generated_fleet, telemetry_policies};

/// `twinops.toml` of the scripted repositories: device twin policies, the
/// fleet snapshot for offline compiles, a local hub seeded from it.
const TOML: &str = r#"policies = "policies"
allow_unschematized = true

[fleet]
snapshot = "fleet.ndjson"

[environments.local]
kind = "local"
database = "hub.db"
seed = "fleet.ndjson"
"#;

/// A policy file that breaks a rule IoT Hub enforces: a key with a space.
const BAD_POLICY: &str = "apiVersion: twinops/v1
kind: Policy
name: broken
priority: 5
target: tags.environment = 'lab'
desired:
  telemetry:
    bad key: 1
";

/// A repository in a project directory, committing as fixed authors.
pub(crate) struct Scripted {
    pub(crate) project: Project,
    pub(crate) repo: git2::Repository,
    /// Seconds since the epoch of the next commit.
    clock: i64,
}

impl Scripted {
    pub(crate) fn new(name: &str) -> Self {
        let project = Project::empty(name);
        let repo = git2::Repository::init_opts(
            project.path(""),
            git2::RepositoryInitOptions::new().initial_head("main"),
        )
        .unwrap();
        project.write(".gitignore", "hub.db*\n");
        Self {
            project,
            repo,
            clock: 1_780_000_000,
        }
    }

    /// Writes `files` and commits every change as `author`.
    pub(crate) fn commit(&mut self, author: &str, message: &str, files: &[(&str, &str)]) -> String {
        for (path, text) in files {
            let full = self.project.path(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        let mut index = self.repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.update_all(["*"], None).unwrap();
        index.write().unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        self.clock += 3600;
        let email = format!("{}@example.com", author.to_lowercase());
        let signature =
            git2::Signature::new(author, &email, &git2::Time::new(self.clock, 0)).unwrap();
        let parent = self
            .repo
            .head()
            .ok()
            .and_then(|head| head.peel_to_commit().ok());
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        self.repo
            .commit(
                Some("HEAD"),
                &signature,
                &signature,
                message,
                &tree,
                &parents,
            )
            .unwrap()
            .to_string()
    }

    /// Creates branch `name` at HEAD and checks it out.
    pub(crate) fn branch(&self, name: &str) {
        let head = self.repo.head().unwrap().peel_to_commit().unwrap();
        self.repo.branch(name, &head, false).unwrap();
        self.repo.set_head(&format!("refs/heads/{name}")).unwrap();
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        self.project.run(args)
    }

    pub(crate) fn path(&self, relative: &str) -> std::path::PathBuf {
        self.project.path(relative)
    }
}

/// main: a baseline (interval 30); feature: interval 15, a broken lab policy.
fn pull_request(name: &str) -> Scripted {
    let mut repo = Scripted::new(name);
    repo.commit(
        "Ada",
        "Baseline telemetry",
        &[
            ("twinops.toml", TOML),
            ("fleet.ndjson", &generated_fleet(9)),
            ("policies/telemetry.yaml", &telemetry_policies(30)),
        ],
    );
    repo.branch("feature");
    repo.commit(
        "Bob",
        "Report every 15 seconds",
        &[("policies/telemetry.yaml", &telemetry_policies(15))],
    );
    repo
}

#[test]
fn policies_are_read_at_any_revision_without_the_work_tree() {
    let mut repo = pull_request("git-rev");
    // An uncommitted edit in the work tree is not what `--rev` reads.
    std::fs::write(repo.path("policies/telemetry.yaml"), "not: [valid").unwrap();
    let at_main = repo.run(&["--rev", "main", "compile", "--device", "dev-0001"]);
    assert_eq!(at_main.code, Some(0), "{at_main}");
    assert!(at_main.stdout.contains("intervalSeconds = 30"), "{at_main}");
    let at_head = repo.run(&["--rev", "HEAD", "compile", "--device", "dev-0001"]);
    assert!(at_head.stdout.contains("intervalSeconds = 15"), "{at_head}");
    let unknown = repo.run(&["--rev", "nosuch", "validate"]);
    assert_eq!(unknown.code, Some(1), "{unknown}");
    assert!(
        unknown.stderr.contains("unknown revision `nosuch`"),
        "{unknown}"
    );
    repo.commit(
        "Ada",
        "Restore",
        &[("policies/telemetry.yaml", &telemetry_policies(15))],
    );
    let outside = Project::empty("git-none");
    outside.write("twinops.toml", TOML);
    let none = outside.run(&["--rev", "HEAD", "validate"]);
    assert!(none.stderr.contains("is not in a git repository"), "{none}");
}

#[test]
fn the_pull_request_preview_shows_changes_targets_and_errors() {
    let mut repo = pull_request("git-preview");
    let preview = repo.run(&["plan", "--base", "main", "--format", "markdown"]);
    assert_eq!(preview.code, Some(0), "{preview}");
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots/gitops");
    settings.set_prepend_module_to_snapshot(false);
    let _guard = settings.bind_to_scope();
    insta::assert_snapshot!("preview-markdown", preview.stdout);
    assert!(preview.stdout.len() <= 65_536);

    repo.commit(
        "Bob",
        "Add a lab policy",
        &[("policies/broken.yaml", BAD_POLICY)],
    );
    let broken = repo.run(&["--error-format", "json", "plan", "--base", "main"]);
    assert_eq!(broken.code, Some(3), "the head is invalid: {broken}");
    insta::assert_snapshot!("preview-human-new-error", broken.stdout);

    repo.commit(
        "Bob",
        "Fix the lab policy",
        &[(
            "policies/broken.yaml",
            &BAD_POLICY.replace("bad key", "goodKey"),
        )],
    );
    let fixed = repo.run(&["plan", "--base", "HEAD~1", "--format", "json"]);
    assert_eq!(fixed.code, Some(0), "{fixed}");
    let json: serde_json::Value = serde_json::from_str(&fixed.stdout).unwrap();
    assert_eq!(json["format_version"], 1);
    assert_eq!(
        json["resolvedErrors"].as_array().unwrap().len(),
        1,
        "{json}"
    );
    assert_eq!(json["newErrors"].as_array().unwrap().len(), 0, "{json}");
    assert!(
        json["targets"].as_array().unwrap().is_empty(),
        "same targets: {json}"
    );
    let leaves = &json["change"]["changes"][0]["changes"];
    let paths: Vec<&str> = leaves
        .as_array()
        .unwrap()
        .iter()
        .map(|leaf| leaf["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["/telemetry/bad key", "/telemetry/goodKey"],
        "{json}"
    );
    assert_eq!(json["live"]["state"], "planned");
}

#[test]
fn apply_at_a_revision_stamps_the_commit_and_records_a_pushed_note() {
    let repo = pull_request("git-apply");
    let main_id = repo.repo.revparse_single("main").unwrap().id().to_string();
    // A bare remote over file://, to push notes to.
    let remote_dir = repo.path("../git-apply-remote.git");
    let _ = std::fs::remove_dir_all(&remote_dir);
    git2::Repository::init_bare(&remote_dir).unwrap();
    repo.repo
        .remote("origin", &format!("file://{}", remote_dir.display()))
        .unwrap();

    std::fs::write(repo.path("policies/telemetry.yaml"), telemetry_policies(5)).unwrap();
    let dirty = repo
        .project
        .run_for_errors(&["--rev", "main", "apply", "--auto-approve"]);
    assert_eq!(dirty.code, Some(1), "{dirty}");
    assert!(
        dirty.has_error("uncommitted changes: policies/telemetry.yaml"),
        "{dirty}"
    );
    std::fs::write(repo.path("policies/telemetry.yaml"), telemetry_policies(15)).unwrap();

    let applied = repo.run(&["--rev", "main", "apply", "--auto-approve", "--push-notes"]);
    assert_eq!(applied.code, Some(0), "{applied}");
    assert!(applied.stdout.contains("9 twins changed"), "{applied}");
    assert!(
        applied
            .stderr
            .contains("Pushed `refs/notes/twinops` to `origin`"),
        "{applied}"
    );
    for (device, twin) in repo.project.twins() {
        assert_eq!(twin["tags"]["twinops"]["commit"], main_id, "{device}");
        assert_eq!(
            twin["properties"]["desired"]["telemetry"]["intervalSeconds"],
            30
        );
    }
    let remote = git2::Repository::open_bare(&remote_dir).unwrap();
    let note = remote
        .find_note(
            Some("refs/notes/twinops"),
            git2::Oid::from_str(&main_id).unwrap(),
        )
        .unwrap();
    let record: serde_json::Value = serde_json::from_str(note.message().unwrap()).unwrap();
    assert_eq!(record["environment"], "local");
    assert_eq!(record["hub"]["kind"], "local");
    assert_eq!(
        (record["changed"].as_u64(), record["stale"].as_u64()),
        (Some(9), Some(0))
    );

    // Applying the head changes the interval and moves the stamp; a second
    // apply of the head changes nothing and keeps it.
    let head = repo.run(&["--rev", "HEAD", "apply", "--auto-approve"]);
    assert!(head.stdout.contains("9 twins changed"), "{head}");
    let head_id = repo
        .repo
        .head()
        .unwrap()
        .peel_to_commit()
        .unwrap()
        .id()
        .to_string();
    let again = repo.run(&["--rev", "HEAD", "apply", "--auto-approve"]);
    assert!(again.stdout.contains("No changes."), "{again}");
    for (_, twin) in repo.project.twins() {
        assert_eq!(twin["tags"]["twinops"]["commit"], head_id);
    }
    let local_note = repo
        .repo
        .find_note(
            Some("refs/notes/twinops"),
            git2::Oid::from_str(&head_id).unwrap(),
        )
        .unwrap();
    let records: Vec<serde_json::Value> = local_note
        .message()
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let changed: Vec<u64> = records
        .iter()
        .map(|record| record["changed"].as_u64().unwrap())
        .collect();
    assert_eq!(
        changed,
        [9, 0],
        "both applies of the head are on the record"
    );
    let _ = std::fs::remove_dir_all(&remote_dir);
}

#[test]
fn history_and_blame_answer_who_changed_what_and_when() {
    let mut repo = pull_request("git-audit");
    repo.commit(
        "Cy",
        "Lab devices report humidity",
        &[(
            "policies/lab.yaml",
            "apiVersion: twinops/v1
kind: Policy
name: lab-humidity
priority: 20
target: tags.environment = 'lab'
desired:
  telemetry:
    channels: [temperature, humidity, pressure]
",
        )],
    );
    repo.commit("Cy", "Docs only", &[("README.md", "not a policy\n")]);
    let applied = repo.run(&["--rev", "HEAD", "apply", "--auto-approve"]);
    assert_eq!(applied.code, Some(0), "{applied}");

    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots/gitops");
    settings.set_prepend_module_to_snapshot(false);
    let _guard = settings.bind_to_scope();

    let history = repo.run(&["history"]);
    assert_eq!(history.code, Some(0), "{history}");
    assert!(!history.stdout.contains("Docs only"), "{history}");
    insta::assert_snapshot!("history", history.stdout);
    let device = repo.run(&["history", "--device", "dev-0003"]);
    assert!(
        !device.stdout.contains("humidity"),
        "dev-0003 is in production: {device}"
    );
    insta::assert_snapshot!("history-device", device.stdout);

    // Drift one value behind twinops' back, then ask who set it.
    let hub = twinops::hub::local::LocalHub::open(&repo.path("hub.db")).unwrap();
    let id = twinops::hub::TwinId {
        device_id: "dev-0001".to_owned(),
        module_id: None,
    };
    hub.patch_twin(
        &id,
        &serde_json::json!({"properties": {"desired": {"telemetry": {"intervalSeconds": 99}}}}),
        None,
    )
    .unwrap();
    let blame = repo.run(&["blame", "--device", "dev-0001"]);
    assert_eq!(blame.code, Some(0), "{blame}");
    insta::assert_snapshot!("blame", blame.stdout);
    let one = repo.run(&[
        "blame",
        "--device",
        "dev-0001",
        "--property",
        "telemetry.channels",
        "--format",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&one.stdout).unwrap();
    let lines = json["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{json}");
    assert_eq!(lines[0]["setter"], "lab-humidity");
    assert_eq!(lines[0]["overrode"][0], "telemetry");
    assert_eq!(lines[0]["commit"]["author"], "Cy");
    assert_eq!(lines[0]["liveMatches"], true);
}
