//! Benchmark: compile a generated fleet, against the cost of merely parsing
//! its snapshot into generic JSON, in the same process.
//!
//! `cargo bench --bench compile -- [DEVICES] [POLICIES]` (default 100000 50).
//! Prints the median of five runs of each step and its ratio to the
//! baseline, with the core count, so figures compare across noisy machines.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark prints its figures and fails loudly"
)]

#[allow(dead_code, reason = "fleet states serve the plan benchmark")]
mod fleetgen;
mod measure;

use std::time::Duration;

use twinops::compile;
use twinops::diag::Diagnostics;
use twinops::hub::snapshot;

use measure::median;

const RUNS: usize = 5;

fn main() {
    let (devices, policy_count) = measure::sizes();
    let text = fleetgen::fleet(devices, 42);
    let yaml = fleetgen::policies(policy_count, devices, 42);

    let (_, schemas, policies) = measure::policies(yaml);
    assert_eq!(policies.policies.len(), policy_count);
    let baseline = measure::parse_baseline(RUNS, &text);
    let floor = measure::parse_floor(RUNS, &text);
    let (parse, fleet) = median(RUNS, || snapshot::parse("bench.ndjson", &text).unwrap());
    let (compiled, desired) = median(RUNS, || {
        let mut diags = Diagnostics::new();
        let desired = compile::fleet(&policies, &schemas, &fleet, &mut diags);
        assert!(!diags.has_errors(), "{:?}", diags.into_sorted());
        desired
    });

    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let ratio = |d: Duration| d.as_secs_f64() / baseline.as_secs_f64();
    println!(
        "machine: {cores} cores; fleet: {devices} devices, {} lines, {} MB; {policy_count} policies",
        text.lines().count(),
        text.len() / 1_000_000
    );
    println!(
        "result: {} twins targeted, {} distinct configurations",
        desired.twins.len(),
        desired.configurations.len()
    );
    println!("median of {RUNS} runs:");
    println!(
        "  baseline: serde_json::Value per line  {:>8.3} s  1.00x",
        baseline.as_secs_f64()
    );
    println!(
        "  floor: syntax only (IgnoredAny) per line  {:>8.3} s  {:.2}x",
        floor.as_secs_f64(),
        ratio(floor)
    );
    println!(
        "  snapshot::parse (fleet)              {:>8.3} s  {:.2}x",
        parse.as_secs_f64(),
        ratio(parse)
    );
    println!(
        "  compile::fleet                       {:>8.3} s  {:.2}x",
        compiled.as_secs_f64(),
        ratio(compiled)
    );
    println!("reproduce: cargo bench --bench compile -- {devices} {policy_count}");
}
