//! Sections `parse`, `plan` and `hub`: the per-line parse passes over the
//! smallest set's snapshot (the baseline every plan is divided by, and the
//! floor), then the real binary planning each policy set's own snapshot and
//! the smallest set's snapshot with the next set (a rollout), and importing
//! the smallest set's snapshot into a local hub and planning from there.

use std::path::{Path, PathBuf};

use crate::binary;
use crate::generate::{DataSet, Project};
use crate::measure;
use crate::report::{self, Bound, Figure, Report, Unit};
use crate::{Section, Suite};

/// The target of a plan from a snapshot, as a share of the Value baseline.
const PLAN_OF_BASELINE: f64 = 1.0;
/// The target of a larger policy set's plan, as a share of the smallest's.
const PLAN_OF_SMALLEST_SET: f64 = 1.2;
/// The target of a plan's peak memory.
const PLAN_PEAK_MIB: f64 = 512.0;

/// The per-line parse passes over the snapshot, in seconds.
pub(crate) struct Baselines {
    /// A `serde_json::Value` per line.
    pub(crate) value: f64,
    /// `serde::de::IgnoredAny` per line: syntax only.
    pub(crate) floor: f64,
}

pub(crate) fn parse(suite: &Suite, data: &DataSet, report: &mut Report) -> Baselines {
    let snapshot = &data.smallest().snapshot;
    report::section(
        &format!("parse: {}, line by line, in process", binary::arg(snapshot)),
        suite.runs,
    );
    let rerun = suite.rerun(Section::Parse);
    let value = measure::median_of(suite.runs, || {
        measure::seconds(|| {
            measure::parse_lines::<serde_json::Value>(snapshot);
        })
    });
    report.figure(
        Figure::new(
            "baseline: serde_json::Value per line",
            Some(value),
            Unit::Seconds,
        )
        .ratio(value, "the Value baseline"),
        &rerun,
    );
    let floor = measure::median_of(suite.runs, || {
        measure::seconds(|| {
            measure::parse_lines::<serde::de::IgnoredAny>(snapshot);
        })
    });
    report.figure(
        Figure::new("floor: IgnoredAny per line", Some(floor), Unit::Seconds)
            .ratio(value, "the Value baseline"),
        &rerun,
    );
    Baselines { value, floor }
}

/// Plans each project's own snapshot, then the smallest set's snapshot
/// with the next set; returns the smallest set's plan time, in seconds.
pub(crate) fn from_snapshot(
    suite: &Suite,
    data: &DataSet,
    baselines: &Baselines,
    report: &mut Report,
) -> f64 {
    report::section("plan from the snapshot: twinops plan --fleet", suite.runs);
    let rerun = suite.rerun(Section::Plan);
    let smallest = data.smallest();
    let mut smallest_seconds: Option<f64> = None;
    for project in &data.projects {
        let args = snapshot_plan_args(data, project, &project.snapshot, "");
        let plan = suite.twinops.measure(None, &args, suite.runs, || {});
        let label = format!("plan, {} policies", project.policies);
        let figure =
            Figure::new(&label, Some(plan.seconds), Unit::Seconds).reproduce(&plan.command);
        let figure = if let Some(seconds) = smallest_seconds {
            figure
                .ratio(seconds, format!("the {}-policy plan", smallest.policies))
                .ratio_target(Bound::AtMost, PLAN_OF_SMALLEST_SET)
        } else {
            smallest_seconds = Some(plan.seconds);
            figure
                .ratio(baselines.value, "the Value baseline")
                .ratio(baselines.floor, "the floor")
                .ratio_target(Bound::AtMost, PLAN_OF_BASELINE)
        };
        report.figure(figure, &rerun);
        report.figure(
            Figure::new(format!("{label}: peak memory"), plan.peak_mib, Unit::MiB)
                .target(Bound::AtMost, PLAN_PEAK_MIB)
                .reproduce(&plan.command),
            &rerun,
        );
    }
    if let Some(rollout) = data.projects.get(1) {
        let args = snapshot_plan_args(data, rollout, &smallest.snapshot, "rollout-");
        let stdout = scratch(data).join(format!("rollout-{}.txt", rollout.policies));
        let plan = suite
            .twinops
            .measure_saving_stdout(&args, suite.runs, &stdout);
        let counted = format!("{} | grep '^Plan:'", plan.command);
        report.figure(
            Figure::new(
                format!(
                    "rollout: the {}-policy fleet planned with {} policies (nearly every twin changes)",
                    smallest.policies, rollout.policies
                ),
                Some(plan.seconds),
                Unit::Seconds,
            )
            .ratio(baselines.value, "the Value baseline")
            .reproduce(&plan.command),
            &rerun,
        );
        report.figure(
            Figure::new("rollout: peak memory", plan.peak_mib, Unit::MiB).reproduce(&plan.command),
            &rerun,
        );
        report.figure(
            Figure::new("rollout: twins to change", changed(&stdout), Unit::Twins)
                .reproduce(counted),
            &rerun,
        );
    }
    smallest_seconds.expect("at least one policy set")
}

/// `plan --fleet SNAPSHOT --out` of `project`, into the scratch file
/// `plan-{prefix}{policies}.json`.
fn snapshot_plan_args(
    data: &DataSet,
    project: &Project,
    snapshot: &Path,
    prefix: &str,
) -> Vec<String> {
    project_args(
        project,
        &["plan", "--fleet", &binary::arg(snapshot), "--out"],
        &scratch(data).join(format!("plan-{prefix}{}.json", project.policies)),
    )
}

/// The twins a plan changes, from its summary line in the human output
/// saved at `stdout` (`Plan: 1,234 twins to change, ...` or `No changes.`).
fn changed(stdout: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(stdout).ok()?;
    text.lines().rev().find_map(|line| {
        if line.starts_with("No changes.") {
            return Some(0.0);
        }
        let number = line.strip_prefix("Plan: ")?.split_whitespace().next()?;
        Some(count(number.replace(',', "").parse().ok()?))
    })
}

#[expect(clippy::cast_precision_loss, reason = "a figure needs no exact count")]
fn count(twins: usize) -> f64 {
    twins as f64
}

/// Imports the snapshot into a fresh local hub of the smallest project,
/// and plans from the hub.
pub(crate) fn from_local_hub(
    suite: &Suite,
    data: &DataSet,
    baselines: &Baselines,
    snapshot_plan: f64,
    report: &mut Report,
) {
    report::section(
        "local hub: twinops hub import, then plan --env local",
        suite.runs,
    );
    let rerun = suite.rerun(Section::Hub);
    let project = data.smallest();
    let database = project.directory.join("hub.db");
    let import_args = project_args(project, &["hub", "import"], &project.snapshot);
    let import = suite.twinops.measure(None, &import_args, suite.runs, || {
        remove_database(&database);
    });
    let rate = count(data.twins) / import.seconds;
    let fresh_import = |figure: Figure| {
        figure
            .reproduce(format!("rm -f {}*", binary::arg(&database)))
            .reproduce(&import.command)
    };
    report.figure(
        fresh_import(Figure::new(
            format!("hub import of {} twins", data.twins),
            Some(import.seconds),
            Unit::Seconds,
        ))
        .ratio(baselines.value, "the Value baseline"),
        &rerun,
    );
    report.figure(
        fresh_import(Figure::new("hub import rate", Some(rate), Unit::PerSecond)),
        &rerun,
    );
    let plan_args = project_args(
        project,
        &["--env", "local", "plan", "--out"],
        &scratch(data).join("plan-local.json"),
    );
    let plan = suite.twinops.measure(None, &plan_args, suite.runs, || {});
    report.figure(
        Figure::new(
            format!("plan from the local hub, {} policies", project.policies),
            Some(plan.seconds),
            Unit::Seconds,
        )
        .ratio(snapshot_plan, "the snapshot plan")
        .ratio(baselines.value, "the Value baseline")
        .reproduce(&plan.command),
        &rerun,
    );
    report.figure(
        Figure::new(
            "plan from the local hub: peak memory",
            plan.peak_mib,
            Unit::MiB,
        )
        .reproduce(&plan.command),
        &rerun,
    );
}

/// `--config PROJECT/twinops.toml ARGS... LAST`.
fn project_args(project: &Project, args: &[&str], last: &Path) -> Vec<String> {
    let mut all = binary::args(&["--config", &binary::arg(&project.config())]);
    all.extend(binary::args(args));
    all.push(binary::arg(last));
    all
}

/// Where plans are written: beside the data set, overwritten by each run.
fn scratch(data: &DataSet) -> PathBuf {
    let scratch = data.directory.join("scratch");
    std::fs::create_dir_all(&scratch).expect("the scratch directory is created");
    scratch
}

/// Removes a local hub and its SQLite side files.
fn remove_database(database: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = database.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}
