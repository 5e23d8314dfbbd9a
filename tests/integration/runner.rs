//! `twinops run` end to end: a scripted repository pushed to a bare remote
//! over `file://`, the emulator in this process as the hub, and the real
//! binary as the runner. The test waits on the runner's own log lines (read
//! as they come) and its HTTP endpoints, never on sleeps.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::sync::atomic::AtomicBool;
use twinops::emulator::Options;

use twinops::emulator::faults::Faults;
use twinops::gitops::runner::{Lock, lock_path};

use crate::apply::{Project, generated_fleet, telemetry_policies};
use crate::gitops::Scripted;
use crate::rest::{CONNECTION_VARIABLE, Emulator, versions};

const SECRET: &str = "webhook-secret-for-tests";

/// A hub (the emulator over a project's `hub.db`), a source repository
/// whose `emu` environment points at it, and a bare remote.
struct Setup {
    hub: Project,
    emulator: Emulator,
    source: Scripted,
    remote: std::path::PathBuf,
}

impl Setup {
    fn new(name: &str, devices: usize, options: Options, concurrency: usize) -> Self {
        let hub = Project::with_fleet(&format!("{name}-hub"), &generated_fleet(devices), "");
        let emulator = Emulator::start(&hub, options);
        let mut source = Scripted::new(&format!("{name}-source"));
        let toml = format!(
            "policies = \"policies\"\nallow_unschematized = true\n\n[environments.emu]\nkind = \"iothub\"\nconnection_string_env = \"{CONNECTION_VARIABLE}\"\nca_file = \"{}\"\ntier = \"S3\"\nunits = 10\nconcurrency = {concurrency}\n",
            emulator.ca_file.display()
        );
        source.commit(
            "Ada",
            "Baseline telemetry",
            &[
                ("twinops.toml", &toml),
                ("policies/telemetry.yaml", &telemetry_policies(30)),
            ],
        );
        let remote = source.path("../").join(format!("{name}-remote.git"));
        let _ = std::fs::remove_dir_all(&remote);
        git2::Repository::init_bare(&remote).unwrap();
        source
            .repo
            .remote("origin", &format!("file://{}", remote.display()))
            .unwrap();
        let setup = Self {
            hub,
            emulator,
            source,
            remote,
        };
        setup.push(false);
        setup
    }

    /// A setup whose hub takes 50 ms per request, applied one twin at a
    /// time, so that an apply lasts long enough to be interrupted.
    fn slow(name: &str, devices: usize) -> Self {
        let faults: Faults = "delay=1.0:50".parse().unwrap();
        let options = Options {
            faults,
            ..Options::default()
        };
        Self::new(name, devices, options, 1)
    }

    fn push(&self, force: bool) {
        let refspec = if force {
            "+refs/heads/main:refs/heads/main"
        } else {
            "refs/heads/main:refs/heads/main"
        };
        self.source
            .repo
            .find_remote("origin")
            .unwrap()
            .push(&[refspec], None)
            .unwrap();
    }

    fn head(&self) -> String {
        let id = self
            .source
            .repo
            .head()
            .unwrap()
            .peel_to_commit()
            .unwrap()
            .id();
        id.to_string()[..12].to_owned()
    }

    /// A runner process on the remote's `main`.
    fn runner(&self, state: &str, extra: &[&str]) -> Runner {
        let mut command = Command::new(env!("CARGO_BIN_EXE_twinops"));
        command
            .args(["--env", "emu", "run", "--branch", "main", "--repo"])
            .arg(format!("file://{}", self.remote.display()))
            .arg("--state")
            .arg(self.hub.path(state))
            .arg("--lock-dir")
            .arg(self.hub.path("locks"))
            .args(extra)
            .current_dir(self.hub.path(""))
            .env(CONNECTION_VARIABLE, self.emulator.connection.expose())
            .env("RUNNER_SECRET", SECRET)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Runner {
            child,
            lines,
            seen: Vec::new(),
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.remote);
    }
}

/// A running runner and its log.
struct Runner {
    child: Child,
    lines: Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
}

impl Runner {
    /// Waits (up to a minute) for a log line containing `text`.
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) => {
                    self.seen.push((at, line.clone()));
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(error) => panic!(
                    "no line with `{text}` ({error}); the log so far:\n{}",
                    self.log()
                ),
            }
        }
    }

    fn log(&self) -> String {
        self.seen
            .iter()
            .map(|(_, line)| line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code.
    fn exit_code(&mut self) -> Option<i32> {
        let status = self.child.wait().unwrap();
        while let Ok((at, line)) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push((at, line));
        }
        status.code()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many twins moved by exactly one write (a patch of tags and desired
/// adds 2 to `version`).
fn written_once(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> usize {
    before
        .iter()
        .filter(|(device, version)| after.get(*device) == Some(&(*version + 2)))
        .count()
}

fn signature(body: &[u8], secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!("sha256={}", twinops::plan::ownership::hex(&bytes))
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one runner's life in order: pushes, webhooks, drift, a bad policy, a rewrite"
)]
fn the_runner_follows_a_branch_through_pushes_drift_bad_policies_and_forged_webhooks() {
    let mut setup = Setup::new("runner-follow", 9, Options::default(), 16);
    let mut runner = setup.runner(
        "state",
        &[
            "--interval",
            "2s",
            "--webhook",
            "127.0.0.1:0",
            "--webhook-secret-env",
            "RUNNER_SECRET",
        ],
    );
    let listening = runner.wait_for("Webhooks, /healthz and /metrics on http://");
    let base = listening.rsplit(' ').next().unwrap().to_owned();
    let first = setup.head();
    runner.wait_for(&format!("Applied {first}: 9 changed, 0 stale, 0 failed."));
    for (_, twin) in setup.hub.twins() {
        assert_eq!(
            twin["properties"]["desired"]["telemetry"]["intervalSeconds"],
            30
        );
    }

    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let post = |body: &'static str, signature: Option<String>| {
        let mut request = http
            .post(format!("{base}/webhook"))
            .header("x-github-event", "push")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        setup
            .emulator
            .runtime
            .block_on(request.send())
            .unwrap()
            .status()
            .as_u16()
    };

    // A push, announced by a signed webhook.
    setup.source.commit(
        "Bob",
        "Every 15 seconds",
        &[("policies/telemetry.yaml", &telemetry_policies(15))],
    );
    setup.push(false);
    let body = r#"{"ref":"refs/heads/main"}"#;
    let pushed = Instant::now();
    assert_eq!(post(body, Some(signature(body.as_bytes(), SECRET))), 202);
    let second = setup.head();
    runner.wait_for(&format!("Applying {second}"));
    // Measured, not asserted (the machines are shared): from the webhook to
    // the line logged just before the first patch is sent.
    let latency = runner.seen.last().unwrap().0.duration_since(pushed);
    eprintln!("webhook to first patch: {} ms", latency.as_millis());
    runner.wait_for(&format!("Applied {second}: 9 changed"));
    for (_, twin) in setup.hub.twins() {
        assert_eq!(
            twin["tags"]["twinops"]["commit"].as_str().unwrap()[..12],
            second
        );
    }

    // Forged and unsigned webhooks are refused and logged.
    assert_eq!(
        post(body, Some(signature(body.as_bytes(), "not the secret"))),
        401
    );
    runner.wait_for("Rejected a webhook: a signature that does not match the body.");
    assert_eq!(post(body, None), 401);
    runner.wait_for("Rejected a webhook: no X-Hub-Signature-256 header.");

    // Drift behind twinops' back is corrected at the next interval.
    let hub = twinops::hub::local::LocalHub::open(&setup.hub.path("hub.db")).unwrap();
    let id = twinops::hub::TwinId {
        device_id: "dev-0004".to_owned(),
        module_id: None,
    };
    hub.patch_twin(
        &id,
        &serde_json::json!({"properties": {"desired": {"telemetry": {"intervalSeconds": 99}}}}),
        None,
    )
    .unwrap();
    runner.wait_for(&format!("Drift at {second}: correcting 1 twin."));
    runner.wait_for(&format!("Applied {second}: 1 changed"));

    // A bad policy is reported and nothing is applied.
    setup.source.commit("Bob", "Broken", &[("policies/bad.yaml", "apiVersion: twinops/v1\nkind: Policy\nname: bad\npriority: 3\ntarget: \"*\"\ndesired:\n  telemetry:\n    bad key: 1\n")]);
    setup.push(false);
    assert_eq!(post(body, Some(signature(body.as_bytes(), SECRET))), 202);
    let third = setup.head();
    runner.wait_for(&format!(
        "Invalid policies at {third} (1 error): nothing applied."
    ));

    // A rewritten history is refused.
    {
        let first_commit = setup
            .source
            .repo
            .revparse_single(&first)
            .unwrap()
            .peel_to_commit()
            .unwrap();
        setup
            .source
            .repo
            .reset(first_commit.as_object(), git2::ResetType::Hard, None)
            .unwrap();
    }
    setup.source.commit(
        "Eve",
        "Rewritten",
        &[("policies/telemetry.yaml", &telemetry_policies(5))],
    );
    setup.push(true);
    assert_eq!(post(body, Some(signature(body.as_bytes(), SECRET))), 202);
    let rewritten = setup.head();
    runner.wait_for(&format!(
        "Refused {rewritten}: the history of `main` was rewritten"
    ));

    let metrics = setup
        .emulator
        .runtime
        .block_on(async {
            http.get(format!("{base}/metrics"))
                .send()
                .await?
                .text()
                .await
        })
        .unwrap();
    assert!(
        metrics.contains("twinops_runner_webhooks_rejected_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!("commit=\"{second}")), "{metrics}");
    assert!(
        !metrics.contains("twinops_runner_failures_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("twinops_runner_drift_found_total 1"),
        "{metrics}"
    );
    let health = setup
        .emulator
        .runtime
        .block_on(async {
            http.get(format!("{base}/healthz"))
                .send()
                .await?
                .text()
                .await
        })
        .unwrap();
    assert_eq!(health, "ok\n");
    for (_, twin) in setup.hub.twins() {
        assert_eq!(
            twin["properties"]["desired"]["telemetry"]["intervalSeconds"], 15,
            "still the second commit"
        );
    }
    runner.terminate();
    assert_eq!(runner.exit_code(), Some(0), "{}", runner.log());
    assert!(runner.log().ends_with("Stopped."), "{}", runner.log());
}

#[test]
fn sigterm_mid_apply_stops_after_the_twins_in_flight_and_a_rerun_converges() {
    // 40 twins take 2 s.
    let setup = Setup::slow("runner-term", 40);
    let before = versions(&setup.hub);
    let mut runner = setup.runner("state", &["--once"]);
    runner.wait_for("Applying");
    runner.terminate();
    assert_eq!(runner.exit_code(), Some(0), "{}", runner.log());
    let log = runner.log();
    assert!(
        log.contains("Stopping: the twins in flight finished"),
        "{log}"
    );
    let partial = written_once(&before, &versions(&setup.hub));
    assert!(partial < 40, "stopped before the end: {partial}");

    let mut again = setup.runner("state", &["--once"]);
    again.wait_for(&format!(
        "Applied {}: {} changed, 0 stale, 0 failed.",
        setup.head(),
        40 - partial
    ));
    assert_eq!(again.exit_code(), Some(0));
    let after = versions(&setup.hub);
    for (device, version) in &before {
        assert_eq!(after[device], version + 2, "each twin written once");
    }
}

#[test]
fn a_runner_waits_while_another_holds_the_hubs_lock() {
    let setup = Setup::new("runner-wait", 6, Options::default(), 4);
    let path = lock_path(
        &setup.hub.path("locks"),
        &setup.emulator.host().to_lowercase(),
    );
    let held = setup
        .emulator
        .runtime
        .block_on(Lock::acquire(&path, &AtomicBool::new(false), || {}))
        .unwrap();
    let mut runner = setup.runner("state", &["--once"]);
    runner.wait_for("Waiting for another runner to finish applying to this hub.");
    assert!(
        !runner.log().contains("Applying"),
        "nothing applied while the lock is held: {}",
        runner.log()
    );
    drop(held);
    runner.wait_for(&format!("Applied {}: 6 changed", setup.head()));
    assert_eq!(runner.exit_code(), Some(0));
}

#[test]
fn a_runner_killed_mid_apply_leaves_no_lock_behind_and_the_next_one_converges() {
    // 30 twins take 1.5 s.
    let setup = Setup::slow("runner-kill", 30);
    let before = versions(&setup.hub);
    let mut crashed = setup.runner("state-one", &["--once"]);
    crashed.wait_for("Applying");
    crashed.child.kill().unwrap();
    let _ = crashed.child.wait();
    let mut next = setup.runner("state-two", &["--once"]);
    next.wait_for("Applied");
    assert_eq!(next.exit_code(), Some(0), "{}", next.log());
    assert!(
        !next.log().contains("Waiting"),
        "the kernel freed the lock: {}",
        next.log()
    );
    let after = versions(&setup.hub);
    for (device, version) in &before {
        assert_eq!(after[device], version + 2, "each twin written once");
    }
}

#[test]
fn an_apply_waits_while_a_runner_holds_the_hubs_lock() {
    let project = Project::with_fleet(
        "runner-apply-lock",
        &generated_fleet(3),
        &telemetry_policies(30),
    );
    let _ = project.snapshot();
    let hub = twinops::hub::local::LocalHub::open(&project.path("hub.db")).unwrap();
    let id = twinops::hub::Hub::identity(&hub).id;
    drop(hub);
    let path = lock_path(&std::env::temp_dir().join("twinops-locks"), &id);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let held = runtime
        .block_on(Lock::acquire(&path, &AtomicBool::new(false), || {}))
        .unwrap();
    let mut apply = project
        .command(&["apply", "--auto-approve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(apply.stderr.take().unwrap()).lines();
    let waiting = stderr
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("Waiting for another apply to this hub to finish."));
    assert!(waiting.is_some(), "the apply waits for the lock");
    assert!(
        project
            .twins()
            .values()
            .all(|twin| twin["properties"]["desired"].get("telemetry").is_none()),
        "nothing written while the lock is held"
    );
    drop(held);
    let status = apply.wait().unwrap();
    assert!(status.success());
    project.assert_converged();
}
