//! Apply pacing and emulator throughput, over TLS on loopback, in one process.
//!
//! `cargo bench --bench emulator -- DEVICES` generates a fleet, imports it
//! into a local hub, serves it with the emulator (no server-side throttle),
//! and measures:
//! - a real apply (`apply::execute` of a compiled plan through the REST
//!   client) paced at S1 (50 twin updates/s) and at S3 with 2 units
//!   (500/s): twins per second achieved, divided by the pace;
//! - the emulator unpaced: twin reads and twin patches per second from 32
//!   concurrent requests, against the same reads and patches made on the
//!   local hub directly in this process (the baseline).

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    missing_docs,
    reason = "a benchmark prints its figures and fails loudly"
)]

#[allow(dead_code, reason = "fleet states serve the plan benchmark")]
mod fleetgen;
#[allow(dead_code, reason = "the medians serve the other benchmarks")]
mod measure;

use std::time::{Duration, Instant};

use futures_util::{StreamExt as _, stream};
use serde_json::json;
use twinops::apply;
use twinops::compile;
use twinops::diag::Diagnostics;
use twinops::emulator::cert::Identity;
use twinops::emulator::{self, Options};
use twinops::hub::local::LocalHub;
use twinops::hub::rest::{RestHub, Retry, Scheme, Settings};
use twinops::hub::throttle::Tier;
use twinops::hub::{Hub, TwinId, snapshot};
use twinops::plan::{self, Context, Origin};

/// Requests in flight at once.
const CONCURRENCY: usize = 32;

fn main() {
    let (devices, policy_count) = measure::sizes();
    let text = fleetgen::fleet(devices, 42);
    let (sources, schemas, policies) =
        measure::policies(fleetgen::policies(policy_count, devices, 42));
    let fleet = snapshot::parse("bench.ndjson", &text).unwrap();
    let directory =
        std::env::temp_dir().join(format!("twinops-bench-emulator-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let identity = Identity::in_directory(&directory.join("tls")).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "machine: {cores} cores; fleet: {devices} devices, {} twins",
        text.lines().count()
    );

    for (tier, units, pace, twins) in [(Tier::S1, 1, 50.0, 500), (Tier::S3, 2, 500.0, 3000)] {
        let database = directory.join(format!("paced-{units}.db"));
        let hub = LocalHub::open(&database).unwrap();
        hub.import(&fleet).unwrap();
        let live = runtime.block_on(hub.fleet()).unwrap();
        let mut diags = Diagnostics::new();
        let desired = compile::fleet(&policies, &schemas, &live, &mut diags);
        let context = Context {
            origin: Origin {
                hub: None,
                policy_set: plan::policy_set_digest(&policies, &schemas),
                commit: None,
            },
            create_modules: false,
        };
        let mut plan = plan::diff(&desired, &live, &policies, &schemas, &sources, &context);
        plan.changes.truncate(twins);
        let count = plan.changes.len();
        let running = serve(&runtime, hub, &identity);
        let client = client(&running, &identity, tier, units);
        let started = Instant::now();
        let report = runtime.block_on(apply::execute(&plan, &client, 16, &mut |_| {}));
        let elapsed = started.elapsed();
        assert!(report.succeeded(), "every twin applied");
        let achieved = count as f64 / elapsed.as_secs_f64();
        println!(
            "apply paced at {pace:>5.0} twin updates/s ({tier}, {units} unit(s)): {count} twins in {:.2} s = {achieved:.1}/s, {:.3} of the pace",
            elapsed.as_secs_f64(),
            achieved / pace
        );
        runtime.block_on(running.stop());
    }

    unpaced(&runtime, &fleet, &identity, &directory);
    std::fs::remove_dir_all(&directory).unwrap();
    println!("reproduce: cargo bench --bench emulator -- {devices} {policy_count}");
}

/// Twin reads and patches over REST, unpaced, against the local hub directly.
fn unpaced(
    runtime: &tokio::runtime::Runtime,
    fleet: &twinops::fleet::Fleet,
    identity: &Identity,
    directory: &std::path::Path,
) {
    let database = directory.join("unpaced.db");
    let hub = LocalHub::open(&database).unwrap();
    hub.import(fleet).unwrap();
    let ids: Vec<TwinId> = fleet
        .devices
        .iter()
        .map(|device| TwinId {
            device_id: device.id().to_owned(),
            module_id: None,
        })
        .collect();
    let requests = ids.len().min(5000);
    let direct = LocalHub::open(&database).unwrap();
    let read_direct = timed(|| {
        for id in ids.iter().cycle().take(requests) {
            direct.read_twin(id).unwrap();
        }
    });
    let patch_direct = timed(|| {
        for (at, id) in ids.iter().cycle().take(requests).enumerate() {
            direct
                .patch_twin(id, &json!({"tags": {"bench": {"direct": at}}}), None)
                .unwrap();
        }
    });
    drop(direct);
    let running = serve(runtime, hub, identity);
    // S3 with 1,000 units paces at 500,000 reads/s: unpaced for this purpose.
    let client = client(&running, identity, Tier::S3, 1000);
    let read_rest = timed(|| {
        runtime.block_on(
            stream::iter(ids.iter().cycle().take(requests)).for_each_concurrent(
                CONCURRENCY,
                |id| {
                    let client = &client;
                    async move {
                        client.twin(id).await.unwrap();
                    }
                },
            ),
        );
    });
    let patch_rest = timed(|| {
        runtime.block_on(
            stream::iter(ids.iter().cycle().take(requests).enumerate()).for_each_concurrent(
                CONCURRENCY,
                |(at, id)| {
                    let client = &client;
                    async move {
                        let patch = json!({"tags": {"bench": {"rest": at}}});
                        client.patch(id, &patch, None).await.unwrap();
                    }
                },
            ),
        );
    });
    runtime.block_on(running.stop());
    let rate = |elapsed: Duration| requests as f64 / elapsed.as_secs_f64();
    println!(
        "emulator unpaced, {requests} requests each, {CONCURRENCY} in flight, TLS on loopback:"
    );
    println!(
        "  twin reads:   {:>8.0}/s over REST; {:>8.0}/s on the local hub directly ({:.2}x of direct)",
        rate(read_rest),
        rate(read_direct),
        rate(read_rest) / rate(read_direct)
    );
    println!(
        "  twin patches: {:>8.0}/s over REST; {:>8.0}/s on the local hub directly ({:.2}x of direct)",
        rate(patch_rest),
        rate(patch_direct),
        rate(patch_rest) / rate(patch_direct)
    );
}

fn timed(work: impl FnOnce()) -> Duration {
    let started = Instant::now();
    work();
    started.elapsed()
}

fn serve(
    runtime: &tokio::runtime::Runtime,
    hub: LocalHub,
    identity: &Identity,
) -> emulator::Running {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let _context = runtime.enter();
    emulator::start(
        hub,
        listener,
        Some(identity.server_config().unwrap()),
        Options::default(),
    )
    .unwrap()
}

fn client(running: &emulator::Running, identity: &Identity, tier: Tier, units: u32) -> RestHub {
    RestHub::connect(&Settings {
        connection: running.connection_string().expose().parse().unwrap(),
        tier,
        units,
        ca_file: Some(identity.ca_file.clone()),
        scheme: Scheme::Https,
        retry: Retry::default(),
        timeout: Duration::from_secs(30),
    })
    .unwrap()
}
