//! Section `generate`: per policy count, a project directory and an NDJSON
//! snapshot of the same devices put in states by that project's own policy
//! set, written deterministically from a seed into a data set directory, and
//! reused while its manifest names the same parameters.
//!
//! The snapshots are written together a chunk of devices at a time (the
//! chunk generated and parsed once, then put in states with each policy set
//! and written to that set's snapshot), so memory stays bounded whatever the
//! fleet size.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use twinops::hub::snapshot;

use crate::binary;
use crate::fleetgen::{self, States};
use crate::measure::{self, Policies};

/// Bumped whenever the generator's output changes, so old data sets are
/// generated again.
const GENERATOR_VERSION: u32 = 2;

/// Devices generated, parsed and written at a time.
const CHUNK_DEVICES: usize = 10_000;

/// Devices between two progress lines on stderr.
const PROGRESS_DEVICES: usize = 100_000;

/// A fleet under twinops: most twins configured, a few drifted or lagging.
const STATES: States = States {
    configured: 0.8,
    drifted: 0.02,
    lagging: 0.05,
};

/// The policy count whose set puts the preview's snapshot in [`STATES`].
const PREVIEW_STATE_POLICIES: usize = 10;

/// Seed of the policy sets (the fleet has its own).
const POLICY_SEED: u64 = 42;

/// A project directory (`twinops.toml` and `policies/`) and the snapshot
/// its policy set put in [`STATES`].
pub(crate) struct Project {
    pub(crate) policies: usize,
    pub(crate) directory: PathBuf,
    pub(crate) snapshot: PathBuf,
}

impl Project {
    pub(crate) fn config(&self) -> PathBuf {
        self.directory.join("twinops.toml")
    }
}

/// A generated data set: the projects and their snapshots, each of the same
/// twins.
pub(crate) struct DataSet {
    pub(crate) directory: PathBuf,
    /// Twins in each snapshot.
    pub(crate) twins: usize,
    /// In the order of the policy counts; the first is the smallest set.
    pub(crate) projects: Vec<Project>,
}

impl DataSet {
    /// The project of the first policy count: the one the others are
    /// divided by, and whose snapshot the baselines and the local hub read.
    pub(crate) fn smallest(&self) -> &Project {
        self.projects.first().expect("at least one policy set")
    }
}

/// What the data set holds, as its manifest records it.
struct Written {
    twins: usize,
    seconds: f64,
}

/// Generates the data set of about `twins` twins under `work`, or reuses it;
/// prints what it did.
pub(crate) fn data_set(work: &Path, twins: usize, seed: u64, policy_counts: &[usize]) -> DataSet {
    let directory = work.join(format!("twins-{twins}-seed-{seed}"));
    let devices = fleetgen::devices_for(twins);
    let counts: Vec<String> = policy_counts.iter().map(ToString::to_string).collect();
    let parameters = format!(
        "generator = {GENERATOR_VERSION}\ntwins = {twins}\ndevices = {devices}\nseed = {seed}\nchunk = {CHUNK_DEVICES}\npolicies = {}\n",
        counts.join(" ")
    );
    let manifest = directory.join("manifest.txt");
    let projects: Vec<Project> = policy_counts
        .iter()
        .map(|&policies| Project {
            policies,
            directory: directory.join(format!("policies-{policies}")),
            snapshot: directory.join(format!("snapshot-{policies}.ndjson")),
        })
        .collect();
    let written = if let Some(written) = reused(&manifest, &parameters) {
        println!(
            "  reused {} (generated in {:.1} s)",
            binary::arg(&directory),
            written.seconds
        );
        written
    } else {
        if directory.exists() {
            std::fs::remove_dir_all(&directory).expect("the old data set is removed");
        }
        std::fs::create_dir_all(&directory).expect("the data set directory is created");
        let mut twins_written = 0;
        let seconds = measure::seconds(|| {
            let snapshots: Vec<(usize, &Path)> = projects
                .iter()
                .map(|project| (project.policies, project.snapshot.as_path()))
                .collect();
            twins_written = snapshot_files(&snapshots, devices, seed);
            for project in &projects {
                write_project(project, devices);
            }
        });
        std::fs::write(
            &manifest,
            format!("{parameters}---\nwritten = {twins_written}\nseconds = {seconds:.1}\n"),
        )
        .expect("the manifest is written");
        println!("  generated {} in {seconds:.1} s", binary::arg(&directory));
        Written {
            twins: twins_written,
            seconds,
        }
    };
    println!(
        "  snapshots: {} twins each ({devices} devices), {:.0}% configured by the snapshot's own policy set ({:.0}% of those drifted, {:.0}% lagging)",
        written.twins,
        STATES.configured * 100.0,
        STATES.drifted * 100.0,
        STATES.lagging * 100.0
    );
    for project in &projects {
        let megabytes =
            std::fs::metadata(&project.snapshot).map_or(0, |meta| meta.len() / 1_000_000);
        println!(
            "  {} policies: {} ({megabytes} MB), project {}",
            project.policies,
            binary::arg(&project.snapshot),
            binary::arg(&project.directory)
        );
    }
    DataSet {
        directory,
        twins: written.twins,
        projects,
    }
}

/// The manifest's record, when it names exactly `parameters`.
fn reused(manifest: &Path, parameters: &str) -> Option<Written> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let (recorded, results) = text.split_once("---\n")?;
    if recorded != parameters {
        return None;
    }
    let values: BTreeMap<&str, &str> = results
        .lines()
        .filter_map(|line| line.split_once(" = "))
        .collect();
    Some(Written {
        twins: values.get("written")?.parse().ok()?,
        seconds: values.get("seconds")?.parse().ok()?,
    })
}

/// Writes the snapshot of `devices` devices to `path`, put in [`STATES`] by
/// the preview's policy set; returns how many twins it holds.
pub(crate) fn snapshot_file(path: &Path, devices: usize, seed: u64) -> usize {
    snapshot_files(&[(PREVIEW_STATE_POLICIES, path)], devices, seed)
}

/// Writes a snapshot of the same `devices` devices per policy count and
/// path, each put in [`STATES`] by its own count's policy set, a chunk at a
/// time, in device id order; returns how many twins each holds.
fn snapshot_files(snapshots: &[(usize, &Path)], devices: usize, seed: u64) -> usize {
    let mut outputs: Vec<(Policies, std::io::BufWriter<std::fs::File>)> = snapshots
        .iter()
        .map(|&(count, path)| {
            let policies = Policies::load(fleetgen::policies(count, devices, POLICY_SEED));
            let file = std::fs::File::create(path).expect("the snapshot file is created");
            (policies, std::io::BufWriter::with_capacity(1 << 20, file))
        })
        .collect();
    let mut twins = vec![0; outputs.len()];
    for start in (0..devices).step_by(CHUNK_DEVICES) {
        let end = (start + CHUNK_DEVICES).min(devices);
        let text = fleetgen::fleet(start..end, seed);
        let generated = snapshot::parse("generated.ndjson", &text).expect("generated snapshot");
        drop(text);
        let chunk_seed = seed ^ (start as u64);
        for ((policies, out), twins) in outputs.iter_mut().zip(&mut twins) {
            let fleet = fleetgen::in_states(&generated, policies, &STATES, chunk_seed);
            *twins += snapshot::write(&fleet, out).expect("the snapshot is written");
        }
        if end.is_multiple_of(PROGRESS_DEVICES) {
            eprintln!("  generating: {end} of {devices} devices");
        }
    }
    for (_, out) in &mut outputs {
        out.flush().expect("the snapshot is written");
    }
    let first = twins.first().copied().unwrap_or(0);
    assert!(
        twins.iter().all(|&count| count == first),
        "every snapshot holds the same twins: {twins:?}"
    );
    first
}

/// `twinops.toml` of a generated project: policies in `policies/`, only
/// the bundled schemas, a local hub in `hub.db`; and the default fleet
/// snapshot when given.
pub(crate) fn config_text(snapshot: Option<&str>) -> String {
    let fleet = snapshot.map_or_else(String::new, |snapshot| {
        format!("\n[fleet]\nsnapshot = \"{snapshot}\"\n")
    });
    format!(
        "policies = \"policies\"\nallow_unschematized = false\n{fleet}\n[environments.local]\nkind = \"local\"\ndatabase = \"hub.db\"\n"
    )
}

fn write_project(project: &Project, devices: usize) {
    let policies = project.directory.join("policies");
    std::fs::create_dir_all(&policies).expect("the project directory is created");
    std::fs::write(project.config(), config_text(None)).expect("twinops.toml is written");
    std::fs::write(
        policies.join("fleet.yaml"),
        fleetgen::policies(project.policies, devices, POLICY_SEED),
    )
    .expect("the policies are written");
}

/// The policy set of the projects, for a fleet of `devices` devices.
pub(crate) fn policy_set(count: usize, devices: usize) -> Vec<fleetgen::Policy> {
    fleetgen::policy_set(count, devices, POLICY_SEED)
}
