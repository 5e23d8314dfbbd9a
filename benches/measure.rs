//! What both benchmarks share: medians of repeated runs, and a policy set
//! loaded the way `twinops` loads one.

use std::time::{Duration, Instant};

use twinops::diag::{Diagnostics, SourceFile, SourceMap};
use twinops::load;
use twinops::schema::{PolicySchema, SchemaSet};
use twinops::validate::{self, PolicySet, Unschematized};

/// The fleet size and policy count from the command line (default 100000 50).
pub(crate) fn sizes() -> (usize, usize) {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    (
        args.first().copied().unwrap_or(100_000),
        args.get(1).copied().unwrap_or(50),
    )
}

/// The median duration of `runs` runs of `work`, and the last result.
pub(crate) fn median<T>(runs: usize, mut work: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let value = work();
        times.push(start.elapsed());
        last = Some(value);
    }
    times.sort();
    (
        times.get(runs / 2).copied().unwrap_or_default(),
        last.expect("at least one run"),
    )
}

/// The time to parse every line of `snapshot` into a `serde_json::Value`:
/// the baseline every figure is divided by.
pub(crate) fn parse_baseline(runs: usize, snapshot: &str) -> Duration {
    median(runs, || {
        let mut parsed = 0;
        for line in snapshot.lines() {
            std::hint::black_box(
                serde_json::from_str::<serde_json::Value>(line).expect("generated JSON"),
            );
            parsed += 1;
        }
        parsed
    })
    .0
}

/// The time to check every line of `snapshot` is JSON without building
/// anything (`serde::de::IgnoredAny`): the floor for any JSON reader.
pub(crate) fn parse_floor(runs: usize, snapshot: &str) -> Duration {
    median(runs, || {
        let mut parsed = 0;
        for line in snapshot.lines() {
            std::hint::black_box(
                serde_json::from_str::<serde::de::IgnoredAny>(line).expect("generated JSON"),
            );
            parsed += 1;
        }
        parsed
    })
    .0
}

/// Policies from YAML text, validated against the bundled schemas.
pub(crate) fn policies(yaml: String) -> (SourceMap, SchemaSet, PolicySet) {
    let mut sources = SourceMap::new();
    let id = sources.add(SourceFile::from_text("bench.yaml", yaml));
    let mut diags = Diagnostics::new();
    let schemas = SchemaSet::build(&[], &mut diags);
    let file = sources.get(id).expect("just added");
    let documents = load::documents(
        &[(id, file)],
        &PolicySchema::bundled().expect("bundled schema"),
        &mut diags,
    );
    let policies = validate::policies(
        documents,
        &schemas,
        Unschematized::Deny,
        &sources,
        &mut diags,
    );
    assert!(
        !diags.has_errors(),
        "generated policies are invalid: {:?}",
        diags.into_sorted()
    );
    (sources, schemas, policies)
}
