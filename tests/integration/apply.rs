//! `twinops apply` end to end, through the binary, on throwaway projects with
//! a local hub: killed mid-run, stale saved plans, properties twinops does
//! not own, refused plan files, databases that are not hubs, idempotence and
//! the confirmation prompt. Every check is one a user could make: exit codes,
//! what is printed, and the twins `twinops snapshot` exports.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Instant, SystemTime};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use twinops::hub::{Hub, TwinId, local::LocalHub};

/// `twinops.toml` of every scratch project: device twin policies, a local
/// hub `hub.db` seeded from `fleet.ndjson`.
pub(crate) const PROJECT_TOML: &str = r#"policies = "policies"
allow_unschematized = true

[environments.local]
kind = "local"
database = "hub.db"
seed = "fleet.ndjson"
"#;

/// A throwaway project directory, removed when dropped.
pub(crate) struct Project {
    dir: PathBuf,
}

impl Project {
    /// An empty directory (with `policies/`) for the test `name`.
    pub(crate) fn empty(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("twinops-apply-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policies")).unwrap();
        Self { dir }
    }

    /// A project whose hub is seeded from `fleet` on first use.
    pub(crate) fn with_fleet(name: &str, fleet: &str, policies: &str) -> Self {
        let project = Self::empty(name);
        project.write("twinops.toml", PROJECT_TOML);
        project.write("fleet.ndjson", fleet);
        project.write("policies/p.yaml", policies);
        project
    }

    pub(crate) fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    pub(crate) fn write(&self, relative: &str, text: &str) {
        std::fs::write(self.path(relative), text).unwrap();
    }

    /// `twinops ARGS` in the project, without colour or a terminal.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_twinops"));
        command
            .args(args)
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    /// [`Self::run`] with diagnostics as JSON, so that messages are not
    /// wrapped to a terminal's width.
    pub(crate) fn run_for_errors(&self, args: &[&str]) -> Run {
        let mut all = vec!["--error-format", "json"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// `twinops snapshot` as text: one twin per line, in device order.
    pub(crate) fn snapshot(&self) -> String {
        let out = self.path("exported.ndjson");
        let run = self.run(&["snapshot", "--out", out.to_str().unwrap()]);
        assert_eq!(run.code, Some(0), "the hub must open and export: {run}");
        std::fs::read_to_string(out).unwrap()
    }

    /// Every device twin of the hub, by device id.
    pub(crate) fn twins(&self) -> BTreeMap<String, Value> {
        self.snapshot()
            .lines()
            .map(|line| {
                let twin: Value = serde_json::from_str(line).unwrap();
                (twin["deviceId"].as_str().unwrap().to_owned(), twin)
            })
            .collect()
    }

    /// `plan --detailed-exitcode` says there is nothing left to do.
    pub(crate) fn assert_converged(&self) {
        let plan = self.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(plan.code, Some(0), "expected no changes: {plan}");
        assert!(plan.stdout.contains("No changes."), "{plan}");
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a finished `twinops` run left: exit code and both streams.
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// The messages of the diagnostics a `--error-format json` run printed.
    pub(crate) fn messages(&self) -> Vec<String> {
        let start = self.stderr.find("\n{").map_or(0, |newline| newline + 1);
        let json: Value = serde_json::from_str(&self.stderr[start..])
            .unwrap_or_else(|error| panic!("stderr is no JSON diagnostics ({error}): {self}"));
        json["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|diagnostic| diagnostic["message"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Whether one diagnostic message contains `text`.
    pub(crate) fn has_error(&self, text: &str) -> bool {
        self.messages().iter().any(|message| message.contains(text))
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// One snapshot line: a device twin with `tags.environment` and `desired`.
pub(crate) fn twin_line(device: &str, environment: &str, desired: &Value) -> String {
    json!({
        "deviceId": device,
        "tags": {"environment": environment},
        "properties": {"desired": desired, "reported": {}},
    })
    .to_string()
}

/// `count` devices `dev-0000`…; every third one in production, the rest in the lab.
pub(crate) fn generated_fleet(count: usize) -> String {
    (0..count)
        .map(|i| {
            let environment = if i % 3 == 0 { "production" } else { "lab" };
            twin_line(&format!("dev-{i:04}"), environment, &json!({})) + "\n"
        })
        .collect()
}

/// A `*` policy setting `telemetry` with `interval`, and a production
/// overlay adding a channel.
pub(crate) fn telemetry_policies(interval: u64) -> String {
    format!(
        "apiVersion: twinops/v1
kind: Policy
name: telemetry
priority: 0
target: \"*\"
desired:
  telemetry:
    intervalSeconds: {interval}
    channels: [temperature]
---
apiVersion: twinops/v1
kind: Policy
name: telemetry-production
priority: 10
target: tags.environment = 'production'
desired:
  telemetry:
    channels: [temperature, humidity]
"
    )
}

/// What [`telemetry_policies`] gives a device of `environment`.
fn expected_telemetry(environment: &str, interval: u64) -> Value {
    if environment == "production" {
        json!({"intervalSeconds": interval, "channels": ["temperature", "humidity"]})
    } else {
        json!({"intervalSeconds": interval, "channels": ["temperature"]})
    }
}

/// The digest ownership records: sha256 of the compact JSON with sorted
/// keys, first 8 bytes in lowercase hex. Computed here independently of
/// twinops' own code.
fn digest(value: &Value) -> String {
    let hash = Sha256::digest(canonical_json(value).as_bytes());
    hash[..8].iter().fold(String::new(), |mut hex, byte| {
        write!(hex, "{byte:02x}").unwrap();
        hex
    })
}

fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            let members: Vec<String> = sorted
                .into_iter()
                .map(|(key, value)| {
                    format!("{}:{}", Value::from(key.as_str()), canonical_json(value))
                })
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        scalar => scalar.to_string(),
    }
}

fn desired<'t>(twin: &'t Value, property: &str) -> Option<&'t Value> {
    twin.pointer(&format!("/properties/desired/{property}"))
}

fn managed_digest<'t>(twin: &'t Value, property: &str) -> Option<&'t str> {
    twin.pointer(&format!("/tags/twinops/managed/{property}"))
        .and_then(Value::as_str)
}

fn policy_set(twin: &Value) -> Option<&str> {
    twin.pointer("/tags/twinops/policySet")
        .and_then(Value::as_str)
}

/// Patches one device twin directly in the hub file, behind twinops' back.
fn patch_twin_behind_twinops(database: &Path, device: &str, patch: &Value) {
    let hub = LocalHub::open(database).unwrap();
    let id = TwinId {
        device_id: device.to_owned(),
        module_id: None,
    };
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(hub.patch(&id, patch, None))
        .unwrap();
}

// ---------------------------------------------------------------------------
// 1. Killed mid-apply

/// Devices in the kill test's fleet.
const KILL_FLEET: usize = 300;
/// Applies killed, each after a policy change that touches every twin.
const KILLS: u64 = 24;

/// A deterministic stream of numbers in `0..1000` (a 64-bit LCG).
struct Permille(u64);

impl Permille {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        u32::try_from((self.0 >> 33) % 1000).unwrap()
    }
}

/// `apply --auto-approve`, running, with its stdout piped.
fn spawn_apply(project: &Project) -> Child {
    project
        .command(&["apply", "--auto-approve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the child's stdout up to the plan's summary line, printed just
/// before the first twin is written.
fn wait_for_plan_line(child: &mut Child) {
    let stdout = child.stdout.as_mut().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("Plan:") => return,
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                let mut stderr = String::new();
                let _ = child.stderr.as_mut().unwrap().read_to_string(&mut stderr);
                panic!("apply ended before it planned:\n{stderr}");
            }
        }
    }
}

/// The length and modification time of the hub's write-ahead log, if any.
fn write_ahead_log(project: &Project) -> Option<(u64, SystemTime)> {
    let metadata = std::fs::metadata(project.path("hub.db-wal")).ok()?;
    Some((metadata.len(), metadata.modified().unwrap()))
}

/// Spins until the apply writes its first twin (the hub's write-ahead log
/// grows past `before`), or ends.
fn wait_for_first_write(project: &Project, child: &mut Child, before: Option<(u64, SystemTime)>) {
    loop {
        match write_ahead_log(project) {
            Some(now) if now.0 > 0 && Some(now) != before => return,
            _ if child.try_wait().unwrap().is_some() => return,
            _ => std::thread::yield_now(),
        }
    }
}

/// Kills `child` (SIGKILL) and reaps it.
fn kill(mut child: Child) {
    let _ = child.kill();
    child.wait().unwrap();
}

/// Checks every twin after a killed apply that targeted `interval`: it is
/// exactly as `before`, or it holds the new value with the new tag; and on
/// every twin the recorded digest is the digest of the live value. Returns
/// how many twins the killed apply wrote.
fn assert_each_twin_before_or_after(
    before: &BTreeMap<String, Value>,
    after: &BTreeMap<String, Value>,
    interval: u64,
    round: u64,
) -> usize {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "round {round}: the killed apply lost or added twins"
    );
    let mut written_policy_sets = BTreeSet::new();
    let mut written = 0;
    for (device, twin) in after {
        let telemetry = desired(twin, "telemetry")
            .unwrap_or_else(|| panic!("round {round}: twin `{device}` lost its telemetry: {twin}"));
        assert_eq!(
            managed_digest(twin, "telemetry"),
            Some(digest(telemetry).as_str()),
            "round {round}: twin `{device}` is torn: its ownership tag does not match its desired telemetry: {twin}"
        );
        if *twin == before[device] {
            continue;
        }
        written += 1;
        let environment = twin["tags"]["environment"].as_str().unwrap();
        assert_eq!(
            *telemetry,
            expected_telemetry(environment, interval),
            "round {round}: twin `{device}` changed but holds neither its old nor its new telemetry"
        );
        assert_ne!(
            policy_set(twin),
            policy_set(&before[device]),
            "round {round}: twin `{device}` has new telemetry under its old policy set tag"
        );
        written_policy_sets.insert(policy_set(twin).map(str::to_owned));
    }
    assert!(
        written_policy_sets.len() <= 1,
        "round {round}: twins written by one apply name different policy sets: {written_policy_sets:?}"
    );
    written
}

#[test]
fn a_killed_apply_leaves_every_twin_wholly_before_or_after_its_patch() {
    let project = Project::with_fleet(
        "killed",
        &generated_fleet(KILL_FLEET),
        &telemetry_policies(1),
    );

    // Round 0 runs to the end: it manages every twin and times an apply of
    // the whole fleet on this machine, so the kills below scale with it.
    let mut child = spawn_apply(&project);
    let spawned = Instant::now();
    wait_for_plan_line(&mut child);
    let to_plan = spawned.elapsed();
    let planned = Instant::now();
    let output = child.wait_with_output().unwrap();
    let to_finish = planned.elapsed();
    assert!(output.status.success(), "{}", Run::from(output));
    let mut before = project.twins();
    for (device, twin) in &before {
        let environment = twin["tags"]["environment"].as_str().unwrap();
        assert_eq!(
            desired(twin, "telemetry"),
            Some(&expected_telemetry(environment, 1)),
            "{device}"
        );
    }

    let mut permille = Permille(0x0074_7769_6e6f_7073);
    let mut partial = 0;
    let mut writes = Vec::new();
    // How long a whole apply writes; shortened whenever one finished before
    // its kill, so that kills keep landing while twins are written.
    let mut writing = to_finish;
    for round in 1..=KILLS {
        let interval = round + 1;
        project.write("policies/p.yaml", &telemetry_policies(interval));
        let log = write_ahead_log(&project);
        let mut child = spawn_apply(&project);
        match round % 4 {
            // While it starts, opens the hub and plans.
            0 => std::thread::sleep(to_plan * permille.next() / 1000),
            // Right as the first twin is written.
            1 => wait_for_first_write(&project, &mut child, log),
            // Somewhere while it writes.
            _ => {
                wait_for_plan_line(&mut child);
                std::thread::sleep(writing * permille.next() / 1000);
            }
        }
        kill(child);
        let after = project.twins();
        let written = assert_each_twin_before_or_after(&before, &after, interval, round);
        if 0 < written && written < KILL_FLEET {
            partial += 1;
        }
        if written == KILL_FLEET {
            writing = writing * 2 / 3;
        }
        writes.push(written);
        before = after;
    }
    assert!(
        partial > 0,
        "no kill landed while apply was writing (twins written per round: {writes:?}); the test proves nothing"
    );

    let last = project.run(&["apply", "--auto-approve"]);
    assert_eq!(last.code, Some(0), "{last}");
    project.assert_converged();
    for (device, twin) in project.twins() {
        let environment = twin["tags"]["environment"].as_str().unwrap();
        assert_eq!(
            desired(&twin, "telemetry"),
            Some(&expected_telemetry(environment, KILLS + 1)),
            "{device}"
        );
    }
}

#[test]
fn a_first_run_killed_while_seeding_the_hub_seeds_it_on_the_next_run() {
    let devices = 5000;
    let project = Project::with_fleet(
        "seed-killed",
        &generated_fleet(devices),
        &telemetry_policies(60),
    );
    let mut child = project
        .command(&["apply", "--auto-approve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The write-ahead log appears once the new hub's tables exist, before
    // the seed file is read and imported.
    while !project.path("hub.db-wal").exists() && child.try_wait().unwrap().is_none() {
        std::thread::yield_now();
    }
    kill(child);

    let twins = project.twins();
    assert_eq!(
        twins.len(),
        devices,
        "a first run killed while seeding leaves an empty hub that is never seeded again \
         (`plan` then reports no changes on an empty fleet)"
    );
}

// ---------------------------------------------------------------------------
// 2. Stale saved plan

#[test]
fn a_saved_plan_leaves_a_twin_changed_since_alone_and_applies_the_rest() {
    let fleet: String = ["d1", "d2", "d3", "d4"]
        .iter()
        .map(|device| twin_line(device, "lab", &json!({})) + "\n")
        .collect();
    let project = Project::with_fleet("stale", &fleet, &telemetry_policies(60));
    let first = project.run(&["apply", "--auto-approve"]);
    assert_eq!(first.code, Some(0), "{first}");

    project.write("policies/p.yaml", &telemetry_policies(30));
    let plan = project.run(&["plan", "--out", "plan.json"]);
    assert_eq!(plan.code, Some(0), "{plan}");
    patch_twin_behind_twinops(
        &project.path("hub.db"),
        "d2",
        &json!({"properties": {"desired": {"telemetry": {"intervalSeconds": 99}}}}),
    );
    let behind_our_back = project.twins()["d2"].clone();

    let apply = project.run(&["apply", "plan.json"]);
    assert_eq!(apply.code, Some(1), "a stale twin fails the apply: {apply}");
    assert!(
        apply
            .stdout
            .contains("stale: d2 changed since the plan; left untouched"),
        "{apply}"
    );
    assert!(
        apply
            .stdout
            .contains("/telemetry/intervalSeconds: planned from 60, now 99"),
        "the report names the leaf that changed and its new value: {apply}"
    );
    assert!(
        apply
            .stdout
            .contains("Apply complete: 3 twins changed, 1 stale, 0 failed."),
        "{apply}"
    );
    let twins = project.twins();
    assert_eq!(twins["d2"], behind_our_back, "the stale twin is untouched");
    assert_eq!(
        desired(&twins["d2"], "telemetry"),
        Some(&json!({"intervalSeconds": 99, "channels": ["temperature"]}))
    );
    for device in ["d1", "d3", "d4"] {
        let telemetry = desired(&twins[device], "telemetry");
        assert_eq!(telemetry, Some(&expected_telemetry("lab", 30)), "{device}");
        assert_eq!(
            managed_digest(&twins[device], "telemetry"),
            Some(digest(telemetry.unwrap()).as_str()),
            "{device}"
        );
    }

    let again = project.run(&["apply", "--auto-approve"]);
    assert_eq!(again.code, Some(0), "{again}");
    project.assert_converged();
    assert_eq!(
        desired(&project.twins()["d2"], "telemetry"),
        Some(&expected_telemetry("lab", 30))
    );
}

// ---------------------------------------------------------------------------
// 3. A property no policy sets

/// Telemetry for every device, and `logging` on production devices when
/// `with_logging`; `targets` replaces both targets (`None` keeps them).
fn firmware_test_policies(with_logging: bool, targets: Option<&str>) -> String {
    let everyone = targets.unwrap_or("\"*\"");
    let production = targets.unwrap_or("tags.environment = 'production'");
    let logging = if with_logging {
        "  logging:\n    level: debug\n"
    } else {
        ""
    };
    format!(
        "apiVersion: twinops/v1
kind: Policy
name: telemetry
priority: 0
target: {everyone}
desired:
  telemetry:
    intervalSeconds: 60
---
apiVersion: twinops/v1
kind: Policy
name: production
priority: 10
target: {production}
desired:
  telemetry:
    channels: [temperature]
{logging}"
    )
}

#[test]
fn a_property_no_policy_sets_survives_apply_prune_and_release() {
    let firmware = json!({"version": "1.2.3"});
    let fleet = twin_line("d1", "production", &json!({"firmware": firmware}))
        + "\n"
        + &twin_line("d2", "lab", &json!({}))
        + "\n";
    let project = Project::with_fleet("foreign", &fleet, &firmware_test_policies(true, None));
    let assert_firmware_kept = |step: &str| -> Value {
        let twin = project.twins()["d1"].clone();
        assert_eq!(
            desired(&twin, "firmware"),
            Some(&firmware),
            "after {step}, `firmware` is exactly as it was: {twin}"
        );
        twin
    };

    let apply = project.run(&["apply", "--auto-approve"]);
    assert_eq!(apply.code, Some(0), "{apply}");
    let twin = assert_firmware_kept("the first apply");
    assert_eq!(desired(&twin, "logging"), Some(&json!({"level": "debug"})));
    assert_eq!(managed_digest(&twin, "firmware"), None, "{twin}");
    project.assert_converged();

    project.write("policies/p.yaml", &firmware_test_policies(false, None));
    let prune = project.run(&["apply", "--auto-approve"]);
    assert_eq!(prune.code, Some(0), "{prune}");
    let twin = assert_firmware_kept("pruning `logging`");
    assert_eq!(
        desired(&twin, "logging"),
        None,
        "`logging` is pruned: {twin}"
    );
    assert_eq!(managed_digest(&twin, "logging"), None, "{twin}");
    assert!(managed_digest(&twin, "telemetry").is_some(), "{twin}");
    project.assert_converged();

    project.write(
        "policies/p.yaml",
        &firmware_test_policies(false, Some("tags.environment = 'lab'")),
    );
    let release = project.run(&["apply", "--auto-approve"]);
    assert_eq!(release.code, Some(0), "{release}");
    let twin = assert_firmware_kept("releasing the twin");
    assert_eq!(desired(&twin, "telemetry"), None, "{twin}");
    assert_eq!(
        twin.pointer("/tags/twinops"),
        None,
        "the tag is gone: {twin}"
    );
    assert_eq!(twin["tags"]["environment"], "production", "{twin}");
    let lab = &project.twins()["d2"];
    assert!(managed_digest(lab, "telemetry").is_some(), "{lab}");
    project.assert_converged();
}

// ---------------------------------------------------------------------------
// 4. Saved plans that are refused

/// Applies `plan` in `project` and checks the refusal: exit 1, an error
/// saying `message`, no twin changed.
fn assert_plan_refused(project: &Project, plan: &Path, message: &str) {
    let before = project.snapshot();
    let apply = project.run_for_errors(&["apply", plan.to_str().unwrap()]);
    assert_eq!(apply.code, Some(1), "{apply}");
    assert!(apply.has_error(message), "expected `{message}`: {apply}");
    assert_eq!(project.snapshot(), before, "a refused plan changes no twin");
}

fn planned_hub_id(plan: &Path) -> String {
    let text = std::fs::read_to_string(plan).unwrap();
    let document: Value = serde_json::from_str(&text).unwrap();
    document["plan"]["origin"]["hub"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn saved_plans_for_another_hub_edited_truncated_or_from_a_snapshot_are_refused() {
    let fleet = twin_line("d1", "production", &json!({}))
        + "\n"
        + &twin_line("d2", "lab", &json!({}))
        + "\n";
    let here = Project::with_fleet("refused-here", &fleet, &telemetry_policies(60));
    let there = Project::with_fleet("refused-there", &fleet, &telemetry_policies(60));
    let plan = here.path("plan.json");
    let made = here.run(&["plan", "--out", "plan.json"]);
    assert_eq!(made.code, Some(0), "{made}");
    let made = there.run(&["plan", "--out", "plan.json"]);
    assert_eq!(made.code, Some(0), "{made}");
    let here_id = planned_hub_id(&plan);
    let there_id = planned_hub_id(&there.path("plan.json"));
    assert_ne!(here_id, there_id, "two hubs, two ids");

    assert_plan_refused(
        &there,
        &plan,
        &format!("was planned against local hub `{here_id}`, not local hub `{there_id}`"),
    );

    let text = std::fs::read_to_string(&plan).unwrap();
    let edited = text.replacen("\"intervalSeconds\":60", "\"intervalSeconds\":61", 1);
    assert_ne!(edited, text);
    here.write("edited.json", &edited);
    assert_plan_refused(
        &here,
        &here.path("edited.json"),
        "was changed after it was made",
    );

    here.write("truncated.json", &text[..text.len() / 2]);
    assert_plan_refused(&here, &here.path("truncated.json"), "is not a twinops plan");

    let from_fleet = here.run(&[
        "plan",
        "--fleet",
        "fleet.ndjson",
        "--out",
        "fleet-plan.json",
    ]);
    assert_eq!(from_fleet.code, Some(0), "{from_fleet}");
    assert_plan_refused(
        &here,
        &here.path("fleet-plan.json"),
        "was planned from a fleet snapshot",
    );

    // The untouched plan still applies where it was made.
    let apply = here.run(&["apply", "plan.json"]);
    assert_eq!(apply.code, Some(0), "{apply}");
    here.assert_converged();
}

#[test]
fn a_refused_plan_outside_the_project_is_named_by_its_path() {
    let project = Project::with_fleet(
        "plan-path",
        &(twin_line("d1", "lab", &json!({})) + "\n"),
        &telemetry_policies(60),
    );
    let outside = Project::empty("plan-path-outside");
    let plan = outside.path("cut.json");
    std::fs::write(&plan, "{\"format_version\": 1, \"pl").unwrap();
    let apply = project.run_for_errors(&["apply", plan.to_str().unwrap()]);
    assert_eq!(apply.code, Some(1), "{apply}");
    assert!(
        apply.has_error(&format!("`{}` is not a twinops plan", plan.display())),
        "an absolute path outside the project is shown with a doubled leading slash: {apply}"
    );
}

// ---------------------------------------------------------------------------
// 5. A database that is not a hub

/// A project whose hub database is a file `make` writes first.
fn project_with_database(name: &str, make: impl FnOnce(&Path)) -> Project {
    let project = Project::with_fleet(
        name,
        &(twin_line("d1", "lab", &json!({})) + "\n"),
        &telemetry_policies(60),
    );
    make(&project.path("hub.db"));
    project
}

/// `plan` refuses the database: exit 1, "is not a twinops local hub"
/// saying `why`, and the file is left exactly as it was.
fn assert_not_a_hub(project: &Project, why: &str) {
    let database = project.path("hub.db");
    let bytes = std::fs::read(&database).unwrap();
    let plan = project.run_for_errors(&["plan"]);
    assert_eq!(
        std::fs::read(&database).unwrap(),
        bytes,
        "the file is left exactly as it was"
    );
    assert_eq!(plan.code, Some(1), "{plan}");
    assert!(plan.has_error("is not a twinops local hub"), "{plan}");
    assert!(plan.has_error(why), "expected `{why}`: {plan}");
}

/// An SQLite database made by running `sql`.
fn sqlite_database(sql: &str) -> impl FnOnce(&Path) {
    move |path| {
        rusqlite::Connection::open(path)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    }
}

#[test]
fn a_text_file_as_the_hub_is_refused_and_left_alone() {
    let project = project_with_database("not-hub-text", |path| {
        std::fs::write(path, "these are my notes, not a database\n".repeat(200)).unwrap();
    });
    assert_not_a_hub(&project, "it is not an SQLite database");
}

#[test]
fn another_applications_sqlite_database_is_refused_and_left_alone() {
    let project = project_with_database(
        "not-hub-sqlite",
        sqlite_database(
            "CREATE TABLE readings (device TEXT, value REAL);
             INSERT INTO readings VALUES ('d1', 21.5);",
        ),
    );
    assert_not_a_hub(&project, "without twinops' tables");
}

#[test]
fn an_sqlite_database_with_a_meta_table_of_other_columns_is_refused_and_left_alone() {
    let project = project_with_database(
        "not-hub-sqlite-meta",
        sqlite_database(
            "CREATE TABLE meta (name TEXT, created INTEGER);
             INSERT INTO meta VALUES ('inventory', 1700000000);",
        ),
    );
    let database = project.path("hub.db");
    let bytes = std::fs::read(&database).unwrap();
    let plan = project.run_for_errors(&["plan"]);
    assert_eq!(std::fs::read(&database).unwrap(), bytes);
    assert_eq!(plan.code, Some(1), "{plan}");
    assert!(
        plan.has_error("is not a twinops local hub"),
        "another application's `meta` table (other columns) is reported as a storage \
         failure of the local hub instead of \"not a twinops local hub\": {plan}"
    );
}

#[test]
fn an_sqlite_database_with_another_format_in_meta_is_refused_and_left_alone() {
    let project = project_with_database(
        "not-hub-sqlite-format",
        sqlite_database(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta VALUES ('format', 'inventory');",
        ),
    );
    assert_not_a_hub(&project, "of another application");
}

// ---------------------------------------------------------------------------
// 6. Idempotence on the repository's example

/// A copy of the repository's example project: config, policies, schemas
/// and the demo fleet; the hub is made on first use.
fn example_project(name: &str) -> Project {
    let project = Project::empty(name);
    let repository = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        repository.join("twinops.toml"),
        project.path("twinops.toml"),
    )
    .unwrap();
    for directory in ["policies", "schemas", "examples"] {
        std::fs::create_dir_all(project.path(directory)).unwrap();
        for entry in std::fs::read_dir(repository.join(directory)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(
                    entry.path(),
                    project.path(directory).join(entry.file_name()),
                )
                .unwrap();
            }
        }
    }
    project
}

#[test]
fn applying_the_example_twice_changes_nothing_the_second_time() {
    let project = example_project("idempotent");
    let first = project.run(&["apply", "--auto-approve"]);
    assert_eq!(first.code, Some(0), "{first}");
    assert!(first.stdout.contains("Apply complete:"), "{first}");
    let applied = project.snapshot();

    let second = project.run(&["apply", "--auto-approve"]);
    assert_eq!(second.code, Some(0), "{second}");
    assert!(second.stdout.contains("No changes."), "{second}");
    assert!(!second.stdout.contains("Apply complete:"), "{second}");
    assert_eq!(
        project.snapshot(),
        applied,
        "the second apply wrote nothing"
    );

    let status = project.run(&["status", "--format", "json"]);
    assert_eq!(status.code, Some(0), "{status}");
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    let drifted = status["classes"]
        .get("drifted")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    assert_eq!(drifted, 0, "no twin drifted: {status}");
    assert!(
        status["classes"]
            .as_object()
            .unwrap()
            .iter()
            .any(|(class, twins)| class != "unmanaged" && !twins.as_array().unwrap().is_empty()),
        "the apply manages twins: {status}"
    );
}

// ---------------------------------------------------------------------------
// 7. No terminal, no confirmation

#[test]
fn apply_without_a_terminal_or_auto_approve_is_refused_and_changes_nothing() {
    let project = Project::with_fleet(
        "no-terminal",
        &(twin_line("d1", "production", &json!({})) + "\n"),
        &telemetry_policies(60),
    );
    let before = project.snapshot();
    let apply = project.run_for_errors(&["apply"]);
    assert_eq!(apply.code, Some(1), "{apply}");
    assert!(
        apply.has_error("refusing to apply without confirmation"),
        "{apply}"
    );
    assert!(
        !apply.stdout.contains("Apply complete"),
        "nothing is applied: {apply}"
    );
    assert_eq!(project.snapshot(), before, "nothing was applied");
}
