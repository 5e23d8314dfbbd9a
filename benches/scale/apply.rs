//! Section `apply`: applies through the emulator over TLS on loopback, in
//! this process (a generated fleet imported into a fresh local hub per run,
//! served with no server-side throttle, planned, applied by the REST
//! client):
//! - paced at S1 (50 twin updates/s) and at S3 with 2 units (500/s): twins
//!   per second achieved, divided by the pace;
//! - unpaced: twins per second end to end, and the emulator's twin reads and
//!   patches per second against the same made on the local hub directly.

use std::path::Path;
use std::time::Duration;

use futures_util::{StreamExt as _, stream};
use serde_json::json;
use twinops::apply;
use twinops::emulator::cert::Identity;
use twinops::emulator::{self, Options};
use twinops::fleet::Fleet;
use twinops::hub::local::LocalHub;
use twinops::hub::rest::{RestHub, Retry, Scheme, Settings};
use twinops::hub::throttle::Tier;
use twinops::hub::{Hub, TwinId, snapshot};
use twinops::plan::Plan;

use crate::fleetgen;
use crate::measure::{self, Policies};
use crate::report::{self, Bound, Figure, Report, Unit};
use crate::{Section, Suite};

/// Requests in flight at once: the environments' default concurrency.
const CONCURRENCY: usize = 16;
/// The policy count of the plans applied.
const POLICIES: usize = 10;
/// The target of a paced apply, as a share of the pace.
const PACE_KEPT: f64 = 0.95;
/// The target of an unpaced apply, in twins per second.
const UNPACED_RATE: f64 = 3000.0;
/// S3 with 1,000 units paces at 500,000 updates/s: unpaced for this purpose.
const UNPACED_UNITS: u32 = 1000;

/// A pace to apply at.
struct Pace {
    tier: Tier,
    units: u32,
    /// Twin updates per second the tier and units allow.
    per_second: f64,
    /// How long an apply at this pace lasts, unless the sizes say otherwise.
    pub(crate) seconds: f64,
}

impl Pace {
    /// Twins to apply at this pace, for `seconds` (default: its own).
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a small positive count of twins"
    )]
    fn twins(&self, seconds: Option<f64>) -> usize {
        (self.per_second * seconds.unwrap_or(self.seconds)).round() as usize
    }
}

/// The paces: S1 with 1 unit, S3 with 2 units.
const PACES: [Pace; 2] = [
    Pace {
        tier: Tier::S1,
        units: 1,
        per_second: 50.0,
        seconds: 10.0,
    },
    Pace {
        tier: Tier::S3,
        units: 2,
        per_second: 500.0,
        seconds: 6.0,
    },
];

/// What a run of the section needs.
struct Bench<'a> {
    runtime: tokio::runtime::Runtime,
    identity: Identity,
    directory: &'a Path,
    fleet: Fleet,
    policies: Policies,
}

pub(crate) fn run(suite: &Suite, report: &mut Report) {
    report::section(
        "apply through the emulator, TLS on loopback, in process",
        suite.runs,
    );
    let rerun = suite.rerun(Section::Apply);
    let sizes = &suite.sizes;
    let paced_twins = PACES
        .iter()
        .map(|pace| pace.twins(sizes.paced_seconds))
        .max()
        .unwrap_or(0);
    // One device in twenty has no module twin to change.
    let devices = paced_twins.max(sizes.unpaced_twins) * 21 / 20 + 50;
    let directory = suite.work.join("apply");
    std::fs::create_dir_all(&directory).expect("the apply directory is created");
    let bench = Bench {
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the runtime starts"),
        identity: Identity::in_directory(&directory.join("tls")).expect("a TLS identity"),
        directory: &directory,
        fleet: snapshot::parse("apply.ndjson", &fleetgen::fleet(0..devices, suite.seed))
            .expect("generated snapshot"),
        policies: Policies::load(fleetgen::policies(POLICIES, devices, suite.seed)),
    };
    println!("  fleet: {devices} devices, {POLICIES} policies, {CONCURRENCY} updates in flight");
    for pace in &PACES {
        let twins = pace.twins(sizes.paced_seconds);
        let achieved = measure::median_of(suite.runs, || {
            bench.applied_per_second(pace.tier, pace.units, twins)
        });
        report.figure(
            Figure::new(
                format!(
                    "apply {twins} twins paced at {:.0}/s ({}, {} unit(s))",
                    pace.per_second, pace.tier, pace.units
                ),
                Some(achieved),
                Unit::PerSecond,
            )
            .ratio(pace.per_second, "the pace")
            .ratio_target(Bound::AtLeast, PACE_KEPT),
            &rerun,
        );
    }
    let achieved = measure::median_of(suite.runs, || {
        bench.applied_per_second(Tier::S3, UNPACED_UNITS, sizes.unpaced_twins)
    });
    report.figure(
        Figure::new(
            format!("apply {} twins unpaced", sizes.unpaced_twins),
            Some(achieved),
            Unit::PerSecond,
        )
        .target(Bound::AtLeast, UNPACED_RATE),
        &rerun,
    );
    bench.requests(suite, report, &rerun);
    std::fs::remove_dir_all(&directory).expect("the apply directory is removed");
}

#[expect(clippy::cast_precision_loss, reason = "a rate needs no exact count")]
fn rate(count: usize, seconds: f64) -> f64 {
    count as f64 / seconds
}

impl Bench<'_> {
    /// A fresh local hub holding the fleet, in a new database file.
    fn hub(&self, name: &str) -> LocalHub {
        let database = self.directory.join(format!("{name}.db"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(self.directory.join(format!("{name}.db{suffix}")));
        }
        let hub = LocalHub::open(&database).expect("the local hub opens");
        hub.import(&self.fleet).expect("the fleet imports");
        hub
    }

    /// The plan of the policies against `hub`, cut to `twins` changes.
    fn plan(&self, hub: &LocalHub, twins: usize) -> Plan {
        let live = self.runtime.block_on(hub.fleet()).expect("the hub reads");
        let mut plan = self.policies.plan(&live);
        assert!(
            plan.changes.len() >= twins,
            "the fleet has {} twins to change, not {twins}",
            plan.changes.len()
        );
        plan.changes.truncate(twins);
        plan
    }

    /// Applies `twins` changes on a fresh hub paced at `tier` and `units`:
    /// twins per second, end to end.
    fn applied_per_second(&self, tier: Tier, units: u32, twins: usize) -> f64 {
        let hub = self.hub("apply");
        let plan = self.plan(&hub, twins);
        let running = self.serve(hub);
        let client = self.client(&running, tier, units);
        let mut succeeded = false;
        let seconds = measure::seconds(|| {
            let report =
                self.runtime
                    .block_on(apply::execute(&plan, &client, CONCURRENCY, &mut |_| {}));
            succeeded = report.succeeded();
        });
        assert!(succeeded, "every twin applied");
        self.runtime.block_on(running.stop());
        rate(twins, seconds)
    }

    /// Twin reads and patches over REST, unpaced, against the same on the
    /// local hub directly.
    fn requests(&self, suite: &Suite, report: &mut Report, rerun: &str) {
        let requests = suite.sizes.unpaced_twins;
        let ids: Vec<TwinId> = self
            .fleet
            .devices
            .iter()
            .map(|device| TwinId {
                device_id: device.id().to_owned(),
                module_id: None,
            })
            .collect();
        let each = || ids.iter().cycle().take(requests).enumerate();
        let patch = |source: &str, at: usize| json!({"tags": {"bench": {source: at}}});
        let (mut reads, mut patches) = (Vec::new(), Vec::new());
        for _ in 0..suite.runs.max(1) {
            let direct = self.hub("requests");
            let read_direct = measure::seconds(|| {
                for (_, id) in each() {
                    direct.read_twin(id).expect("a direct read");
                }
            });
            let patch_direct = measure::seconds(|| {
                for (at, id) in each() {
                    direct
                        .patch_twin(id, &patch("direct", at), None)
                        .expect("a direct patch");
                }
            });
            let running = self.serve(direct);
            let client = &self.client(&running, Tier::S3, UNPACED_UNITS);
            let read_rest = self.concurrently(&ids, requests, move |_, id| async move {
                client.twin(id).await.expect("a REST read");
            });
            let patch_rest = self.concurrently(&ids, requests, move |at, id| async move {
                let body = patch("rest", at);
                client.patch(id, &body, None).await.expect("a REST patch");
            });
            self.runtime.block_on(running.stop());
            reads.push((rate(requests, read_rest), rate(requests, read_direct)));
            patches.push((rate(requests, patch_rest), rate(requests, patch_direct)));
        }
        for (what, rates) in [("reads", reads), ("patches", patches)] {
            let rest = measure::median(rates.iter().map(|(rest, _)| *rest).collect());
            let direct = measure::median(rates.iter().map(|(_, direct)| *direct).collect());
            report.figure(
                Figure::new(
                    format!("twin {what} over REST, unpaced"),
                    Some(rest),
                    Unit::PerSecond,
                )
                .ratio(direct, "the local hub directly"),
                rerun,
            );
        }
    }

    /// Seconds `requests` calls of `work` take over `ids`, in turn and
    /// [`CONCURRENCY`] at a time.
    fn concurrently<'a, Request: Future<Output = ()>>(
        &self,
        ids: &'a [TwinId],
        requests: usize,
        work: impl Fn(usize, &'a TwinId) -> Request,
    ) -> f64 {
        measure::seconds(|| {
            self.runtime.block_on(
                stream::iter(ids.iter().cycle().take(requests).enumerate())
                    .for_each_concurrent(CONCURRENCY, |(at, id)| work(at, id)),
            );
        })
    }

    fn serve(&self, hub: LocalHub) -> emulator::Running {
        let listener = self
            .runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback port");
        let _context = self.runtime.enter();
        emulator::start(
            hub,
            listener,
            Some(self.identity.server_config().expect("a TLS config")),
            Options::default(),
        )
        .expect("the emulator starts")
    }

    fn client(&self, running: &emulator::Running, tier: Tier, units: u32) -> RestHub {
        RestHub::connect(&Settings {
            connection: running
                .connection_string()
                .expose()
                .parse()
                .expect("the emulator's connection string"),
            tier,
            units,
            ca_file: Some(self.identity.ca_file.clone()),
            scheme: Scheme::Https,
            retry: Retry::default(),
            timeout: Duration::from_secs(30),
        })
        .expect("the client connects")
    }
}
