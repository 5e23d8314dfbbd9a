//! The REST backend end to end: the emulator runs in this process on
//! `127.0.0.1:0` with TLS, over the project's local hub file, and the real
//! `twinops` binary (or the library's REST client) talks to it through an
//! `iothub` environment. Plans through REST match plans against the file,
//! stale plans are refused per twin, an apply under injected faults
//! converges without writing any twin twice, bad signatures are refused
//! clearly, paging returns every twin once, and no secret is ever printed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use twinops::emulator::cert::Identity;
use twinops::emulator::faults::{Fault, Faults};
use twinops::emulator::{self, Options, Running};
use twinops::hub::local::LocalHub;
use twinops::hub::rest::{RestHub, Retry, Scheme, Settings};
use twinops::hub::sas::{self, ConnectionString, Secret};
use twinops::hub::throttle::{Rate, Throttles, Tier};
use twinops::hub::{Hub, HubError, TwinId};

use crate::apply::{PROJECT_TOML, Project, Run, generated_fleet, telemetry_policies};

/// The variable the `emu` environment reads its connection string from.
pub(crate) const CONNECTION_VARIABLE: &str = "TWINOPS_TEST_EMULATOR";

/// An emulator serving a project's `hub.db`, on its own runtime.
pub(crate) struct Emulator {
    pub(crate) runtime: tokio::runtime::Runtime,
    running: Option<Running>,
    pub(crate) connection: Secret,
    pub(crate) ca_file: PathBuf,
}

impl Emulator {
    /// Seeds the project's hub (through the binary), then serves it with
    /// `options`, and adds an `emu` environment to the project.
    pub(crate) fn start(project: &Project, options: Options) -> Self {
        let _ = project.snapshot();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let identity = Identity::in_directory(&project.path("tls")).unwrap();
        let hub = LocalHub::open(&project.path("hub.db")).unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let running = {
            let _context = runtime.enter();
            emulator::start(
                hub,
                listener,
                Some(identity.server_config().unwrap()),
                options,
            )
            .unwrap()
        };
        project.write(
            "twinops.toml",
            &format!(
                "{PROJECT_TOML}
[environments.emu]
kind = \"iothub\"
connection_string_env = \"{CONNECTION_VARIABLE}\"
ca_file = \"tls/ca.pem\"
tier = \"S3\"
units = 10
"
            ),
        );
        Self {
            connection: running.connection_string(),
            runtime,
            running: Some(running),
            ca_file: identity.ca_file,
        }
    }

    /// The host its clients name (`localhost:PORT`).
    pub(crate) fn host(&self) -> String {
        self.running.as_ref().unwrap().host()
    }

    /// `twinops ARGS` in `project` with the emulator's connection string.
    fn run(&self, project: &Project, args: &[&str]) -> Run {
        run_with(project, args, self.connection.expose())
    }

    /// A library REST client for the emulator.
    fn client(&self) -> RestHub {
        RestHub::connect(&self.settings(self.connection.expose())).unwrap()
    }

    fn settings(&self, connection: &str) -> Settings {
        Settings {
            connection: connection.parse::<ConnectionString>().unwrap(),
            tier: Tier::S3,
            units: 10,
            ca_file: Some(self.ca_file.clone()),
            scheme: Scheme::Https,
            retry: Retry::default(),
            timeout: Duration::from_secs(30),
        }
    }

    fn key(&self) -> String {
        let connection: ConnectionString = self.connection.expose().parse().unwrap();
        connection.key.expose().to_owned()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            self.runtime.block_on(running.stop());
        }
    }
}

/// `twinops ARGS` in `project` with `connection` as the `emu` environment's
/// connection string.
fn run_with(project: &Project, args: &[&str], connection: &str) -> Run {
    Run::from(
        project
            .command(args)
            .env(CONNECTION_VARIABLE, connection)
            .env_remove("TWINOPS_LOG")
            .output()
            .unwrap(),
    )
}

/// `count` devices, every other one with modules `agent` and `azureiotsecurity`.
fn fleet_with_modules(count: usize) -> String {
    let mut text = String::new();
    for at in 0..count {
        let device = format!("dev-{at:04}");
        text.push_str(&json!({"deviceId": device, "tags": {"n": at}}).to_string());
        text.push('\n');
        if at % 2 == 0 {
            for module in ["agent", "azureiotsecurity"] {
                let line = json!({"deviceId": device, "moduleId": module, "properties": {"desired": {}, "reported": {}}});
                text.push_str(&line.to_string());
                text.push('\n');
            }
        }
    }
    text
}

/// The `version` of every twin of the local hub file: a patch of tags and
/// desired properties adds 2 (§5.3), so a twin written twice shows 4.
pub(crate) fn versions(project: &Project) -> BTreeMap<String, u64> {
    project
        .twins()
        .into_iter()
        .map(|(id, twin)| (id, twin["version"].as_u64().unwrap()))
        .collect()
}

#[test]
fn plans_and_applies_through_rest_match_the_local_hub() {
    let project = Project::with_fleet("rest-same", &generated_fleet(60), &telemetry_policies(30));
    let emulator = Emulator::start(
        &project,
        Options {
            page_size: 7,
            ..Options::default()
        },
    );
    let local = project.run(&["plan"]);
    let rest = emulator.run(&project, &["plan", "--env", "emu"]);
    assert_eq!(rest.code, Some(0), "{rest}");
    assert_eq!(rest.stdout, local.stdout, "the same plan through REST");
    assert!(rest.stdout.contains("Plan: 60 twins to change"), "{rest}");

    let applied = emulator.run(&project, &["apply", "--env", "emu", "--auto-approve"]);
    assert_eq!(applied.code, Some(0), "{applied}");
    assert!(
        applied
            .stdout
            .contains("60 twins changed, 0 stale, 0 failed"),
        "{applied}"
    );
    project.assert_converged();
    let again = emulator.run(&project, &["plan", "--env", "emu", "--detailed-exitcode"]);
    assert_eq!(again.code, Some(0), "{again}");
}

#[test]
fn paging_returns_every_twin_exactly_once() {
    let project = Project::with_fleet("rest-paging", &fleet_with_modules(45), "");
    let emulator = Emulator::start(
        &project,
        Options {
            page_size: 4,
            ..Options::default()
        },
    );
    let client = emulator.client();
    let local = LocalHub::open(&project.path("hub.db")).unwrap();
    emulator.runtime.block_on(async {
        let through_rest = client.fleet().await.unwrap();
        assert_eq!(through_rest, local.fleet().await.unwrap());

        let devices = client.query("SELECT * FROM devices").await.unwrap();
        let ids: Vec<&str> = devices
            .iter()
            .map(|twin| twin["deviceId"].as_str().unwrap())
            .collect();
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(
            (ids.len(), unique.len()),
            (45, 45),
            "12 pages, no twin twice"
        );

        let modules = client
            .query("SELECT * FROM devices.modules WHERE moduleId = 'azureiotsecurity'")
            .await
            .unwrap();
        assert_eq!(modules.len(), 23);
        assert!(
            modules
                .iter()
                .all(|twin| twin["moduleId"] == "azureiotsecurity")
        );

        let top = client.query("SELECT TOP 9 * FROM devices").await.unwrap();
        assert_eq!(top.len(), 9, "TOP across pages of 4");
        let count = client
            .query("SELECT COUNT() AS total FROM devices.modules")
            .await
            .unwrap();
        assert_eq!(count, vec![json!({"total": 46})]);
        let projected = client
            .query("SELECT deviceId, tags.n AS n FROM devices WHERE tags.n < 2")
            .await
            .unwrap();
        assert_eq!(
            projected,
            vec![
                json!({"deviceId": "dev-0000", "n": 0}),
                json!({"deviceId": "dev-0001", "n": 1})
            ]
        );
        match client.query("SELECT * FROM devices GROUP BY status").await {
            Err(HubError::Service {
                status, message, ..
            }) => {
                assert!(status.starts_with("400 (400004"), "{status}");
                assert!(message.contains("GROUP BY"), "{message}");
            }
            other => panic!("expected a 400, got {other:?}"),
        }
    });
}

#[test]
fn a_stale_saved_plan_leaves_the_changed_twin_alone() {
    let project = Project::with_fleet("rest-stale", &generated_fleet(6), &telemetry_policies(30));
    let emulator = Emulator::start(&project, Options::default());
    let planned = emulator.run(&project, &["plan", "--env", "emu", "--out", "plan.json"]);
    assert_eq!(planned.code, Some(0), "{planned}");
    // Someone changes a twin through the REST API after the plan.
    let client = emulator.client();
    let id = TwinId {
        device_id: "dev-0001".to_owned(),
        module_id: None,
    };
    let patch = json!({"properties": {"desired": {"telemetry": {"intervalSeconds": 999}}}});
    let etag = emulator
        .runtime
        .block_on(client.patch(&id, &patch, None))
        .unwrap();
    let now = emulator.runtime.block_on(client.twin(&id)).unwrap();
    assert_eq!(
        now.json["etag"],
        json!(etag),
        "a patch answers with the new etag"
    );

    let applied = emulator.run(&project, &["apply", "plan.json", "--env", "emu"]);
    assert_eq!(applied.code, Some(1), "one twin is stale: {applied}");
    assert!(
        applied
            .stdout
            .contains("5 twins changed, 1 stale, 0 failed"),
        "{applied}"
    );
    assert!(applied.stdout.contains("dev-0001"), "{applied}");
    let twin = &project.twins()["dev-0001"];
    assert_eq!(
        twin["properties"]["desired"]["telemetry"]["intervalSeconds"], 999,
        "the stale twin is not overwritten"
    );
}

#[test]
fn an_apply_under_injected_faults_converges_without_writing_a_twin_twice() {
    let project = Project::with_fleet(
        "rest-faults",
        &generated_fleet(150),
        &telemetry_policies(30),
    );
    let faults: Faults = "429=0.04,503=0.03,drop=0.03".parse().unwrap();
    let emulator = Emulator::start(
        &project,
        Options {
            faults: faults.seeded(11),
            ..Options::default()
        },
    );
    let before = versions(&project);
    let applied = emulator.run(&project, &["-v", "apply", "--env", "emu", "--auto-approve"]);
    assert_eq!(applied.code, Some(0), "{applied}");
    assert!(
        applied
            .stdout
            .contains("150 twins changed, 0 stale, 0 failed"),
        "{applied}"
    );
    assert!(
        applied.stderr.contains("retrying"),
        "faults were met and retried: {applied}"
    );
    project.assert_converged();
    let after = versions(&project);
    for (device, version) in &before {
        assert_eq!(
            after[device],
            version + 2,
            "`{device}` written exactly once"
        );
    }
}

#[test]
fn a_used_up_daily_quota_is_reported_at_once_and_not_retried() {
    let project = Project::with_fleet("rest-quota", &generated_fleet(3), &telemetry_policies(30));
    let emulator = Emulator::start(
        &project,
        Options {
            faults: Faults::scripted([Fault::QuotaExceeded]),
            ..Options::default()
        },
    );
    let client = emulator.client();
    let id = TwinId {
        device_id: "dev-0000".to_owned(),
        module_id: None,
    };
    match emulator.runtime.block_on(client.twin(&id)) {
        Err(HubError::QuotaExceeded { host }) => assert!(host.starts_with("localhost:")),
        other => panic!("expected the quota error, got {other:?}"),
    }
    // Not retried: the next request is served normally.
    let twin = emulator.runtime.block_on(client.twin(&id)).unwrap();
    assert_eq!(twin.device_id, "dev-0000");
    let refused = emulator.run(&project, &["plan", "--env", "emu"]);
    assert_eq!(refused.code, Some(0), "one fault only: {refused}");
}

#[test]
fn bad_signatures_are_refused_with_a_clear_error() {
    let project = Project::with_fleet("rest-sas", &generated_fleet(3), &telemetry_policies(30));
    let emulator = Emulator::start(&project, Options::default());
    let host = emulator.running.as_ref().unwrap().host();

    let other_key = "dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleTEyMzQ=";
    let wrong =
        format!("HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={other_key}");
    let refused = run_with(&project, &["plan", "--env", "emu"], &wrong);
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(
        refused.stderr.contains("refused the credentials")
            && refused.stderr.contains("signature does not match"),
        "{refused}"
    );
    assert!(!refused.stderr.contains(other_key), "{refused}");

    let url = format!("https://{host}/twins/dev-0000?api-version=2021-04-12");
    let http = raw_client(&emulator);
    let key = Secret::new(emulator.key());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let cases = [
        (
            Some(sas::sign(&sas::resource_for(&host), now - 3600, "iothubowner", &key).unwrap()),
            "token expired",
            "IotHubUnauthorizedAccess",
        ),
        (
            Some(sas::sign("otherhub.azure-devices.net", now + 600, "iothubowner", &key).unwrap()),
            "another hub",
            "IotHubUnauthorizedAccess",
        ),
        (
            Some(sas::sign(&sas::resource_for(&host), now + 600, "nosuchpolicy", &key).unwrap()),
            "unknown shared access policy",
            "IotHubUnauthorizedAccess",
        ),
        (None, "Authorization header missing", "IotHubUnauthorized"),
    ];
    emulator.runtime.block_on(async {
        for (token, says, code) in cases {
            let mut request = http.get(&url);
            if let Some(token) = &token {
                request = request.header("authorization", token.expose());
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{says}");
            assert_eq!(response.headers()["iothub-errorcode"], code, "{says}");
            let body = body(response).await;
            let message = body["Message"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("ErrorCode:{code};")) && message.contains(says),
                "{message}"
            );
        }
    });
}

#[test]
fn no_secret_reaches_any_output_at_maximum_logging() {
    let project = Project::with_fleet("rest-secrets", &generated_fleet(8), &telemetry_policies(30));
    let emulator = Emulator::start(&project, Options::default());
    let key = emulator.key();
    let host = emulator.running.as_ref().unwrap().host();
    let mut outputs = Vec::new();
    let mut run = |args: &[&str], connection: &str| {
        let mut all = vec!["-vvv"];
        all.extend_from_slice(args);
        let run = run_with(&project, &all, connection);
        outputs.push((args.join(" "), run.stdout, run.stderr));
    };
    let good = emulator.connection.expose().to_owned();
    run(&["validate"], &good);
    run(&["plan", "--env", "emu"], &good);
    run(
        &[
            "plan",
            "--env",
            "emu",
            "--format",
            "json",
            "--out",
            "plan.json",
        ],
        &good,
    );
    run(&["plan", "--env", "emu", "--format", "markdown"], &good);
    run(
        &[
            "apply",
            "plan.json",
            "--env",
            "emu",
            "--report",
            "report.json",
        ],
        &good,
    );
    run(&["apply", "--env", "emu", "--auto-approve"], &good);
    run(&["status", "--env", "emu"], &good);
    run(
        &["snapshot", "--env", "emu", "--out", "snapshot.ndjson"],
        &good,
    );
    run(&["--error-format", "json", "plan", "--env", "emu"], &good);
    // Failures: a wrong key, a key that is not base64, a malformed string.
    let wrong_key = "d3Jvbmd3cm9uZ3dyb25nd3Jvbmd3cm9uZ3dyb25nMTI=";
    run(
        &["plan", "--env", "emu"],
        &format!("HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey={wrong_key}"),
    );
    run(
        &["plan", "--env", "emu"],
        &format!("HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey=not*base64{key}"),
    );
    run(
        &["plan", "--env", "emu"],
        &format!("SharedAccessKey={key};HostName"),
    );
    let files: Vec<(String, String)> = ["plan.json", "report.json", "snapshot.ndjson"]
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(project.path(file))
                .unwrap_or_else(|error| panic!("`{file}` was written: {error}"));
            ((*file).to_owned(), text)
        })
        .collect();
    assert!(
        outputs
            .iter()
            .any(|(_, _, stderr)| stderr.contains("TRACE")),
        "the runs logged at trace level"
    );
    let secrets = [key.as_str(), wrong_key, "SharedAccessSignature sr=", "sig="];
    for (what, stdout, stderr) in &outputs {
        for secret in secrets {
            assert!(
                !stdout.contains(secret),
                "`{what}` printed `{secret}`:\n{stdout}"
            );
            assert!(
                !stderr.contains(secret),
                "`{what}` logged `{secret}`:\n{stderr}"
            );
        }
    }
    for (file, text) in &files {
        for secret in secrets {
            assert!(!text.contains(secret), "`{file}` holds `{secret}`");
        }
    }
}

#[test]
fn module_identities_are_created_and_registry_reads_answer_as_iot_hub_does() {
    let project = Project::with_fleet("rest-registry", &fleet_with_modules(4), "");
    let emulator = Emulator::start(&project, Options::default());
    let client = emulator.client();
    let host = emulator.running.as_ref().unwrap().host();
    let http = raw_client(&emulator);
    let token = owner_token(&emulator, &host);
    emulator.runtime.block_on(async {
        let created = client
            .create_module("dev-0001", "azureiotsecurity")
            .await
            .unwrap();
        assert_eq!(created.json["moduleId"], "azureiotsecurity");
        assert!(created.json["etag"].is_string());
        match client.create_module("dev-0001", "azureiotsecurity").await {
            Err(HubError::ModuleExists { device, module }) => {
                assert_eq!(
                    (device.as_str(), module.as_str()),
                    ("dev-0001", "azureiotsecurity")
                );
            }
            other => panic!("expected a 409, got {other:?}"),
        }
        match client.create_module("no-such-device", "m").await {
            Err(HubError::DeviceNotFound { device }) => assert_eq!(device, "no-such-device"),
            other => panic!("expected a device 404, got {other:?}"),
        }
        let missing = TwinId {
            device_id: "dev-0003".to_owned(),
            module_id: Some("agent".to_owned()),
        };
        assert!(matches!(
            client.twin(&missing).await,
            Err(HubError::ModuleNotFound { .. })
        ));

        let get = |path: &str| {
            http.get(format!("https://{host}{path}"))
                .header("authorization", token.expose())
                .send()
        };
        let devices: Value =
            body(get("/devices?top=2&api-version=2021-04-12").await.unwrap()).await;
        assert_eq!(devices.as_array().unwrap().len(), 2);
        assert_eq!(devices[0]["deviceId"], "dev-0000");
        assert_eq!(devices[0]["authentication"]["type"], "sas");
        let modules: Value = body(
            get("/devices/dev-0001/modules?api-version=2021-04-12")
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(modules[0]["moduleId"], "azureiotsecurity");
        let absent = get("/devices/nobody?api-version=2021-04-12").await.unwrap();
        assert_eq!(absent.status(), 404);
        assert_eq!(absent.headers()["iothub-errorcode"], "DeviceNotFound");
        let unversioned = get("/devices/dev-0000").await.unwrap();
        assert_eq!(unversioned.status(), 400);
        assert_eq!(
            unversioned.headers()["iothub-errorcode"],
            "InvalidProtocolVersion"
        );
        let twin = get("/twins/dev-0000?api-version=2021-04-12").await.unwrap();
        let etag = twin.headers()["etag"].to_str().unwrap().to_owned();
        let twin: Value = body(twin).await;
        assert_eq!(
            etag,
            format!("\"{}\"", twin["etag"].as_str().unwrap()),
            "ETag header quoted"
        );
    });
}

#[test]
fn the_emulator_throttles_past_its_rate_with_iot_hubs_429() {
    let project = Project::with_fleet("rest-throttle", &generated_fleet(3), "");
    // Five twin reads at once, then one every thousand seconds.
    let slow = Rate {
        per_second: 0.001,
        burst: 5,
    };
    let emulator = Emulator::start(
        &project,
        Options {
            throttles: Some(Throttles {
                twin_reads: slow,
                ..Throttles::for_hub(Tier::S1, 1)
            }),
            backlog: Duration::ZERO,
            ..Options::default()
        },
    );
    let host = emulator.running.as_ref().unwrap().host();
    let http = raw_client(&emulator);
    let token = owner_token(&emulator, &host);
    let statuses: Vec<(u16, String)> = emulator.runtime.block_on(async {
        let mut statuses = Vec::new();
        for _ in 0..8 {
            let response = http
                .get(format!(
                    "https://{host}/twins/dev-0000?api-version=2021-04-12"
                ))
                .header("authorization", token.expose())
                .send()
                .await
                .unwrap();
            let code = response
                .headers()
                .get("iothub-errorcode")
                .map(|code| code.to_str().unwrap().to_owned())
                .unwrap_or_default();
            statuses.push((response.status().as_u16(), code));
        }
        statuses
    });
    let expected: Vec<(u16, String)> = (0..8)
        .map(|at| {
            if at < 5 {
                (200, String::new())
            } else {
                (429, "ThrottlingBacklogTimeout".to_owned())
            }
        })
        .collect();
    assert_eq!(statuses, expected);
}

#[test]
fn a_patch_whose_answer_was_lost_is_retried_into_a_412_and_counted_applied() {
    let project = Project::with_fleet("rest-lost", &generated_fleet(1), &telemetry_policies(30));
    // Plan's two queries, then the patch: carried out, its answer dropped.
    let emulator = Emulator::start(
        &project,
        Options {
            faults: Faults::scripted([
                Fault::None,
                Fault::None,
                Fault::Drop {
                    after_serving: true,
                },
            ]),
            ..Options::default()
        },
    );
    let before = versions(&project);
    let applied = emulator.run(&project, &["-v", "apply", "--env", "emu", "--auto-approve"]);
    assert_eq!(applied.code, Some(0), "{applied}");
    assert!(
        applied.stdout.contains("1 twin changed, 0 stale, 0 failed"),
        "{applied}"
    );
    assert!(
        applied
            .stderr
            .contains("retrying request=PATCH /twins/dev-0000"),
        "{applied}"
    );
    assert_eq!(
        versions(&project)["dev-0000"],
        before["dev-0000"] + 2,
        "written once"
    );
    project.assert_converged();
}

/// A plain reqwest client that trusts the emulator's CA.
fn raw_client(emulator: &Emulator) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&emulator.ca_file).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

/// An `iothubowner` token for `host`, valid for ten minutes.
fn owner_token(emulator: &Emulator, host: &str) -> Secret {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    sas::sign(
        &sas::resource_for(host),
        now + 600,
        "iothubowner",
        &Secret::new(emulator.key()),
    )
    .unwrap()
}

async fn body(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}
