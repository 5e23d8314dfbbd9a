//! What every section measures with: medians of repeated runs, the per-line
//! parse passes over a snapshot file (the baseline and the floor), and a
//! policy set loaded the way `twinops` loads one.

use std::io::BufRead as _;
use std::path::Path;
use std::time::Instant;

use twinops::compile;
use twinops::diag::{Diagnostics, SourceFile, SourceMap};
use twinops::fleet::Fleet;
use twinops::load;
use twinops::plan::{self, Context, Origin, Plan};
use twinops::schema::{PolicySchema, SchemaSet};
use twinops::validate::{self, PolicySet, Unschematized};

/// The median of `values` (the upper one of an even count).
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The median of `runs` figures, each made by one call of `run`.
pub(crate) fn median_of(runs: usize, mut run: impl FnMut() -> f64) -> f64 {
    median((0..runs.max(1)).map(|_| run()).collect())
}

/// Seconds `work` takes.
pub(crate) fn seconds(work: impl FnOnce()) -> f64 {
    let started = Instant::now();
    work();
    started.elapsed().as_secs_f64()
}

/// Reads the snapshot at `path` line by line and deserializes each line as
/// a `T`; returns how many lines there were. With `serde_json::Value` it is
/// the baseline (a generic tree per twin); with `serde::de::IgnoredAny`, the
/// floor (syntax only).
pub(crate) fn parse_lines<T: serde::de::DeserializeOwned>(path: &Path) -> usize {
    let file = std::fs::File::open(path).expect("the snapshot opens");
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = String::new();
    let mut count = 0;
    while reader.read_line(&mut line).expect("the snapshot reads") > 0 {
        std::hint::black_box(serde_json::from_str::<T>(&line).expect("generated JSON"));
        count += 1;
        line.clear();
    }
    count
}

/// A policy set loaded the way `twinops` loads one.
pub(crate) struct Policies {
    pub(crate) sources: SourceMap,
    pub(crate) schemas: SchemaSet,
    pub(crate) set: PolicySet,
}

impl Policies {
    /// Policies from YAML text, validated against the bundled schemas.
    pub(crate) fn load(yaml: String) -> Self {
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
        let set = validate::policies(
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
        Self {
            sources,
            schemas,
            set,
        }
    }

    /// The plan of the policies against `fleet`, made offline.
    pub(crate) fn plan(&self, fleet: &Fleet) -> Plan {
        let mut diags = Diagnostics::new();
        let desired = compile::fleet(&self.set, &self.schemas, fleet, &mut diags);
        let context = Context {
            origin: Origin {
                hub: None,
                policy_set: plan::policy_set_digest(&self.set, &self.schemas),
                commit: None,
            },
            create_modules: false,
        };
        plan::diff(
            &desired,
            fleet,
            &self.set,
            &self.schemas,
            &self.sources,
            &context,
        )
    }
}
