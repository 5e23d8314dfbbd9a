//! The fleet-scale benchmark suite (issue 6): one command that prints every
//! figure with the machine, the median of several runs, its ratio to its
//! baseline, its target and whether it is met, and the command lines that
//! reproduce it.
//!
//! `cargo bench --bench scale -- [--twins N] [--runs R] [--quick] [--only SECTION]`
//! (`cargo test --bench scale -- --quick` is the smoke run CI can afford).
//!
//! Sections, in order; `--only` runs one and what it needs:
//! - `generate`: per policy count, a project and a snapshot of the same
//!   devices put in states by that project's policies (`generate.rs`, with
//!   `fleetgen.rs`);
//! - `parse`: the per-line parse baseline and floor, over the smallest
//!   set's snapshot (`plan.rs`);
//! - `plan`: `twinops plan --fleet` per policy count, each of its own
//!   snapshot, and a rollout: the smallest set's snapshot planned with the
//!   next set (`plan.rs`);
//! - `hub`: `twinops hub import`, then a plan from the local hub
//!   (`plan.rs`);
//! - `apply`: applies through the emulator, paced and unpaced
//!   (`apply.rs`);
//! - `preview`: `plan --base` over growing git histories
//!   (`preview.rs`).
//!
//! `binary.rs` runs the real binary, `measure.rs` holds the
//! medians and parse passes, `report.rs` prints.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark prints its figures and fails loudly"
)]

/// The allocator the `twinops` binary uses, for what this process runs
/// itself (the emulator and the REST client of the apply section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod apply;
mod binary;
mod fleetgen;
mod generate;
mod measure;
mod plan;
mod preview;
mod report;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use binary::Twinops;
use report::Report;

/// Policy counts of the projects, each planned against its own snapshot;
/// the first is the one the others are divided by.
const POLICY_COUNTS: [usize; 3] = [10, 200, 1000];

#[derive(Parser)]
#[command(about = "twinops at fleet scale: every figure of issue 6 in one run")]
struct Args {
    /// Twins in each generated snapshot (devices and their module twins).
    #[arg(long)]
    twins: Option<usize>,
    /// Runs of each figure; the median is printed.
    #[arg(long)]
    runs: Option<usize>,
    /// Tiny sizes and one run: a smoke test of every section.
    #[arg(long)]
    quick: bool,
    /// Runs one section, and the sections it needs.
    #[arg(long, value_enum)]
    only: Option<Section>,
    /// Seed of the generated fleets.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where generated data sets and repositories go (default:
    /// `scale-bench/` in cargo's target directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A section of the suite.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Section {
    Generate,
    Parse,
    Plan,
    Hub,
    Apply,
    Preview,
}

impl Section {
    /// The sections whose results this one divides by or runs on.
    fn needs(self) -> &'static [Section] {
        match self {
            Self::Generate | Self::Apply | Self::Preview => &[],
            Self::Parse => &[Self::Generate],
            Self::Plan => &[Self::Generate, Self::Parse],
            Self::Hub => &[Self::Generate, Self::Parse, Self::Plan],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Generate => "generate",
            Self::Parse => "parse",
            Self::Plan => "plan",
            Self::Hub => "hub",
            Self::Apply => "apply",
            Self::Preview => "preview",
        }
    }
}

/// The sizes of a run.
pub(crate) struct Sizes {
    pub(crate) twins: usize,
    /// Seconds each paced apply lasts; `None`: each pace's own duration.
    pub(crate) paced_seconds: Option<f64>,
    pub(crate) unpaced_twins: usize,
    pub(crate) preview_twins: usize,
    /// History lengths of the previewed repositories, shortest first.
    pub(crate) histories: Vec<usize>,
}

impl Sizes {
    fn full() -> Self {
        Self {
            twins: 1_000_000,
            paced_seconds: None,
            unpaced_twins: 5000,
            preview_twins: 20_000,
            histories: vec![10, 100, 1000],
        }
    }

    fn quick() -> Self {
        Self {
            twins: 2000,
            paced_seconds: Some(2.0),
            unpaced_twins: 500,
            preview_twins: 2000,
            histories: vec![3, 10],
        }
    }
}

/// What every section runs with.
pub(crate) struct Suite {
    pub(crate) twinops: Twinops,
    pub(crate) runs: usize,
    pub(crate) seed: u64,
    pub(crate) sizes: Sizes,
    pub(crate) work: PathBuf,
    /// The suite's arguments that set sizes, to rerun a section.
    size_args: String,
}

impl Suite {
    /// The suite's command line that runs `section` again.
    pub(crate) fn rerun(&self, section: Section) -> String {
        format!(
            "cargo bench --bench scale -- {} --only {}",
            self.size_args,
            section.name()
        )
    }
}

fn main() {
    let args = Args::parse();
    let mut sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    sizes.twins = args.twins.unwrap_or(sizes.twins);
    let runs = args.runs.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    // Absolute, because some sections run the binary from other directories.
    let work = args
        .work_dir
        .clone()
        .unwrap_or_else(|| binary::target_dir().join("scale-bench"));
    let work = std::path::absolute(&work).expect("the work directory has an absolute path");
    let twinops = Twinops::copied_into(&work);
    let size_args = format!(
        "{}--twins {} --runs {runs} --seed {}",
        if args.quick { "--quick " } else { "" },
        sizes.twins,
        args.seed
    );
    let suite = Suite {
        twinops,
        runs,
        seed: args.seed,
        sizes,
        work,
        size_args,
    };
    let runs_section = |section: Section| match args.only {
        None => true,
        Some(only) => only == section || only.needs().contains(&section),
    };
    print_machine(&suite);
    let mut report = Report::new();
    let data = runs_section(Section::Generate).then(|| {
        println!();
        println!("== generate");
        generate::data_set(&suite.work, suite.sizes.twins, suite.seed, &POLICY_COUNTS)
    });
    let needed = "generate runs before the sections that need it";
    let baselines = runs_section(Section::Parse)
        .then(|| plan::parse(&suite, data.as_ref().expect(needed), &mut report));
    let snapshot_plan = runs_section(Section::Plan).then(|| {
        let baselines = baselines.as_ref().expect(needed);
        plan::from_snapshot(&suite, data.as_ref().expect(needed), baselines, &mut report)
    });
    if runs_section(Section::Hub) {
        plan::from_local_hub(
            &suite,
            data.as_ref().expect(needed),
            baselines.as_ref().expect(needed),
            snapshot_plan.expect(needed),
            &mut report,
        );
    }
    if runs_section(Section::Apply) {
        apply::run(&suite, &mut report);
    }
    if runs_section(Section::Preview) {
        preview::run(&suite, &mut report);
    }
    report.finish();
}

fn print_machine(suite: &Suite) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("twinops scale benchmark");
    println!("machine: {cores} cores ({model})");
    println!(
        "binary: {}, run as a copy: {}",
        binary::arg(&binary::built()),
        binary::arg(suite.twinops.path())
    );
    println!("work directory: {}", binary::arg(&suite.work));
    println!(
        "sizes: {} twins in each snapshot, policies {:?}, {} run(s) a figure",
        suite.sizes.twins, POLICY_COUNTS, suite.runs
    );
}
