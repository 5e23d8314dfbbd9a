//! Benchmark: plan a generated fleet held in a local hub (SQLite), against
//! the cost of merely parsing its snapshot into generic JSON, in one process.
//!
//! `cargo bench --bench plan -- [DEVICES] [POLICIES]` (default 100000 50).
//! Prints the median of three runs of each step, its ratio to the baseline,
//! and the core count.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark prints its figures and fails loudly"
)]

mod fleetgen;
mod measure;

use std::time::Duration;

use twinops::compile;
use twinops::diag::Diagnostics;
use twinops::hub::local::LocalHub;
use twinops::hub::{Hub, snapshot};
use twinops::plan::{self, Context, Origin};

use measure::median;

const RUNS: usize = 3;

fn main() {
    let (devices, policy_count) = measure::sizes();
    let yaml = fleetgen::policies(policy_count, devices, 42);
    let (sources, schemas, policies) = measure::policies(yaml);
    // A fleet under twinops: most twins configured, a few drifted or lagging.
    let generated = snapshot::parse("bench.ndjson", &fleetgen::fleet(devices, 42)).unwrap();
    let states = fleetgen::States {
        configured: 0.8,
        drifted: 0.02,
        lagging: 0.05,
    };
    let fleet = fleetgen::in_states(&generated, (&sources, &schemas, &policies), &states, 42);
    let mut bytes = Vec::new();
    snapshot::write(&fleet, &mut bytes).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let baseline = measure::parse_baseline(RUNS, &text);
    let floor = measure::parse_floor(RUNS, &text);
    let directory = std::env::temp_dir().join(format!("twinops-bench-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let (import, hub) = median(RUNS, || {
        let path = directory.join(format!("hub-{}.db", uuid_free_counter()));
        let hub = LocalHub::open(&path).unwrap();
        hub.import(&fleet).unwrap();
        hub
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (read, live) = median(RUNS, || runtime.block_on(hub.fleet()).unwrap());
    let (planned, plan) = median(RUNS, || {
        let mut diags = Diagnostics::new();
        let desired = compile::fleet(&policies, &schemas, &live, &mut diags);
        let context = Context {
            origin: Origin {
                hub: Some(hub.identity()),
                policy_set: plan::policy_set_digest(&policies, &schemas),
                commit: None,
            },
            create_modules: false,
        };
        plan::diff(&desired, &live, &policies, &schemas, &sources, &context)
    });
    std::fs::remove_dir_all(&directory).unwrap();

    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let ratio = |d: Duration| d.as_secs_f64() / baseline.as_secs_f64();
    println!(
        "machine: {cores} cores; fleet: {devices} devices, {} twins; {policy_count} policies",
        text.lines().count()
    );
    println!(
        "result: {} twins to change, {} unchanged",
        plan.changes.len(),
        plan.unchanged
    );
    println!("median of {RUNS} runs:");
    println!(
        "  baseline: serde_json::Value per snapshot line  {:>8.3} s  1.00x",
        baseline.as_secs_f64()
    );
    println!(
        "  floor: syntax only (IgnoredAny) per line  {:>8.3} s  {:.2}x",
        floor.as_secs_f64(),
        ratio(floor)
    );
    println!(
        "  local hub import (one transaction)            {:>8.3} s  {:.2}x",
        import.as_secs_f64(),
        ratio(import)
    );
    println!(
        "  read every twin from the local hub            {:>8.3} s  {:.2}x",
        read.as_secs_f64(),
        ratio(read)
    );
    println!(
        "  compile + plan                                {:>8.3} s  {:.2}x",
        planned.as_secs_f64(),
        ratio(planned)
    );
    println!(
        "  plan from the local hub (read + compile + plan) {:>7.3} s  {:.2}x",
        (read + planned).as_secs_f64(),
        ratio(read + planned)
    );
    println!("reproduce: cargo bench --bench plan -- {devices} {policy_count}");
}

/// A counter so each import gets a fresh database file.
fn uuid_free_counter() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
