//! Compile: [`PolicySet`] × [`Fleet`] → [`DesiredFleet`].
//!
//! For each device, the policies whose target matches; per twin (device twin
//! or module twin) their desired leaves merged in ascending priority
//! ([`merge`]); `write: whole` objects completed with schema defaults; the
//! merged value validated against its schema, its cross-field rules and IoT
//! Hub's twin limits. Targets are evaluated once per distinct input
//! ([`targets`]); devices that match the same policies share one
//! [`Configuration`], computed once by a [`Compiler`], which plans that
//! stream a fleet use batch by batch. Errors about a merged value point at the
//! policy leaves that produced it, name one affected device and count the
//! rest. Pure.

mod err;
pub mod limits;
pub mod merge;
pub mod shared;
pub mod targets;

pub use err::CompileError;
pub use merge::{Origin, Setter};
pub use shared::{Desired, Provenance};

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;
use serde_json::{Map, Value};

use crate::diag::{Diagnostic, Diagnostics, Severity, Span};
use crate::fleet::Fleet;
use crate::load::join_pointer;
use crate::parallel::PerThread;
use crate::schema::{Completeness, Rule, SchemaSet, TwinSchema, Violation, WriteMode};
use crate::validate::{PolicyId, PolicySet};

use merge::{Conflict, DefaultLeaf, Defaults, Entry};
use rustc_hash::FxHashMap;
use shared::{Check, Pool};
pub use targets::{TargetMemo, Targets};

/// One distinct compiled result for one twin, shared by every twin whose
/// device matches the same policies.
#[derive(Clone, Debug, PartialEq)]
pub struct Configuration {
    /// The module twin; `None` for the device twin.
    pub module: Option<String>,
    /// The policies merged into it, by ascending priority.
    pub policies: Vec<PolicyId>,
    /// The desired properties twinops manages, as they should be (shared
    /// by the configurations that compile to the same value).
    pub desired: Arc<Desired>,
    /// Per leaf (pointer below desired): who set it and whom it overrode.
    pub provenance: Provenance,
    /// Whether a contributing policy asks for missing modules to be created.
    pub create_modules: bool,
}

/// One twin a policy targets, and its configuration.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TwinTarget {
    /// The device.
    pub device_id: String,
    /// The module; `None` for the device twin.
    pub module_id: Option<String>,
    /// Index into [`DesiredFleet::configurations`].
    pub configuration: usize,
    /// Whether the device lacks this module twin.
    pub module_missing: bool,
}

/// The desired state of every targeted twin.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DesiredFleet {
    /// Distinct configurations.
    pub configurations: Vec<Configuration>,
    /// Targeted twins, sorted by device then module.
    pub twins: Vec<TwinTarget>,
}

impl DesiredFleet {
    /// The configuration of a twin.
    #[must_use]
    pub fn configuration(&self, twin: &TwinTarget) -> Option<&Configuration> {
        self.configurations.get(twin.configuration)
    }
}

/// Compiles the desired state of every twin of `fleet`; problems go to `diags`.
#[must_use]
pub fn fleet(
    policies: &PolicySet,
    schemas: &SchemaSet,
    fleet: &Fleet,
    diags: &mut Diagnostics,
) -> DesiredFleet {
    let targets = Targets::new(policies);
    let memos = PerThread::<TargetMemo>::new();
    let matched: Vec<Vec<PolicyId>> = fleet
        .devices
        .par_iter()
        .map(|device| memos.with(|memo| targets.matching(&device.twin, memo)))
        .collect();
    let mut compiler = Compiler::new(policies, schemas);
    compiler.prepare(matched.iter().map(Vec::as_slice));
    let mut twins = Vec::new();
    for (device, ids) in fleet.devices.iter().zip(&matched) {
        for configuration in compiler.configurations(ids) {
            let module_missing = compiler
                .module(configuration)
                .is_some_and(|module| !device.modules.contains_key(module));
            compiler.affects(configuration, device.id(), module_missing);
            twins.push(TwinTarget {
                device_id: device.id().to_owned(),
                module_id: compiler.module(configuration).map(str::to_owned),
                configuration,
                module_missing,
            });
        }
    }
    let (configurations, renumbered) = compiler.finish(diags);
    for twin in &mut twins {
        twin.configuration = renumbered
            .get(twin.configuration)
            .copied()
            .unwrap_or_default();
    }
    twins.sort();
    DesiredFleet {
        configurations,
        twins,
    }
}

/// Compiles each distinct combination of policies once, as devices come,
/// and words each problem once for every device it affects.
pub struct Compiler<'p> {
    policies: &'p PolicySet,
    schemas: &'p SchemaSet,
    /// Matched policies → the configurations of the twins they configure.
    by_match: FxHashMap<Vec<PolicyId>, Vec<usize>>,
    /// (module, policies) → configuration.
    by_twin: FxHashMap<TwinPolicies, usize>,
    /// Per configuration: its twin and policies, the result, its problems
    /// and the devices it was given to.
    twins: Vec<TwinPolicies>,
    configurations: Vec<Configuration>,
    problems: Vec<Vec<Problem>>,
    affected: Vec<Affected>,
    /// The distinct values and leaf origins compiled so far.
    pool: Pool,
    /// Per `whole` schema, by name: its defaults.
    defaults: FxHashMap<String, Defaults>,
}

/// The devices a configuration was given to, for its problems' messages.
#[derive(Debug, Default)]
struct Affected {
    count: usize,
    /// The example device: one that has the twin, where there is one, then
    /// the first by id.
    example: Option<(bool, String)>,
}

impl<'p> Compiler<'p> {
    /// A compiler with nothing compiled yet.
    #[must_use]
    pub fn new(policies: &'p PolicySet, schemas: &'p SchemaSet) -> Self {
        let defaults: FxHashMap<String, Defaults> = schemas
            .iter()
            .filter(|schema| schema.write == WriteMode::Whole)
            .filter_map(|schema| {
                let property = schema.property.as_deref()?;
                let defaults = Defaults::new(
                    &join_pointer("", property),
                    &schema.defaults(),
                    &schema.name,
                );
                Some((schema.name.clone(), defaults))
            })
            .collect();
        let mut pool = Pool::default();
        for schema_defaults in defaults.values() {
            pool.adopt(schema_defaults);
        }
        Self {
            policies,
            schemas,
            by_match: FxHashMap::default(),
            by_twin: FxHashMap::default(),
            twins: Vec::new(),
            configurations: Vec::new(),
            problems: Vec::new(),
            affected: Vec::new(),
            pool,
            defaults,
        }
    }

    /// Compiles, in parallel, the combinations among `matches` not yet seen.
    pub fn prepare<'m>(&mut self, matches: impl Iterator<Item = &'m [PolicyId]>) {
        let mut fresh_matches: Vec<&[PolicyId]> = Vec::new();
        let mut seen = rustc_hash::FxHashSet::default();
        for ids in matches {
            if !self.by_match.contains_key(ids) && seen.insert(ids) {
                fresh_matches.push(ids);
            }
        }
        if fresh_matches.is_empty() {
            return;
        }
        let policies = self.policies;
        let splits: Vec<Vec<TwinPolicies>> = fresh_matches
            .par_iter()
            .map(|ids| split_by_twin(policies, ids))
            .collect();
        let mut fresh: Vec<TwinPolicies> = Vec::new();
        for (ids, split) in fresh_matches.into_iter().zip(splits) {
            let mut configurations = Vec::with_capacity(split.len());
            for twin in split {
                let next = self.by_twin.len();
                let index = *self.by_twin.entry(twin).or_insert_with_key(|twin| {
                    fresh.push(twin.clone());
                    next
                });
                configurations.push(index);
            }
            self.by_match.insert(ids.to_vec(), configurations);
        }
        let schemas = self.schemas;
        let known = (&self.pool, &self.defaults);
        let compiled: Vec<Compiled> = fresh
            .par_iter()
            .map(|(module, ids)| configure(policies, schemas, known, module.as_deref(), ids))
            .collect();
        for ((module, ids), compiled) in fresh.into_iter().zip(compiled) {
            let desired = match compiled.value {
                DesiredValue::Known(desired) => desired,
                DesiredValue::Fresh { key, value, checks } => {
                    self.pool.add_value(key, &value, checks)
                }
            };
            let provenance = self.pool.provenance(compiled.leaves);
            let mut problems: Vec<Problem> = compiled
                .conflicts
                .into_iter()
                .map(Problem::Conflict)
                .collect();
            problems.extend(
                desired
                    .checks
                    .iter()
                    .map(|check| Problem::explained(check, &provenance)),
            );
            self.configurations.push(Configuration {
                module: module.clone(),
                policies: ids.clone(),
                desired,
                provenance,
                create_modules: compiled.create_modules,
            });
            self.twins.push((module, ids));
            self.problems.push(problems);
            self.affected.push(Affected::default());
        }
    }

    /// The configurations of a device matching `ids`, when
    /// [`prepare`](Self::prepare) has seen `ids`.
    #[must_use]
    pub fn prepared(&self, ids: &[PolicyId]) -> Option<&[usize]> {
        self.by_match.get(ids).map(Vec::as_slice)
    }

    /// Every configuration compiled so far, by index.
    #[must_use]
    pub fn all(&self) -> &[Configuration] {
        &self.configurations
    }

    /// The configurations (one per twin) of a device matching `ids`,
    /// compiled now if [`prepare`](Self::prepare) has not seen them.
    pub fn configurations(&mut self, ids: &[PolicyId]) -> Vec<usize> {
        if !self.by_match.contains_key(ids) {
            self.prepare(std::iter::once(ids));
        }
        self.by_match.get(ids).cloned().unwrap_or_default()
    }

    /// How many distinct desired values the configurations so far compile to.
    #[must_use]
    pub fn values(&self) -> usize {
        self.pool.len()
    }

    /// A configuration's module (`None` for the device twin).
    #[must_use]
    pub fn module(&self, configuration: usize) -> Option<&str> {
        self.twins
            .get(configuration)
            .and_then(|twin| twin.0.as_deref())
    }

    /// Records that device `device_id` gets `configuration` (each device
    /// once per configuration); `module_missing` when it lacks the module.
    ///
    /// Devices come in id order, as fleets and snapshots hold them, so the
    /// first device seen is the first by id: the example is found without
    /// comparing ids.
    pub fn affects(&mut self, configuration: usize, device_id: &str, module_missing: bool) {
        let Some(affected) = self.affected.get_mut(configuration) else {
            return;
        };
        affected.count += 1;
        debug_assert!(
            affected
                .example
                .as_ref()
                .is_none_or(|(_, id)| id.as_str() < device_id),
            "devices come in id order"
        );
        let better = affected
            .example
            .as_ref()
            .is_none_or(|(missing, _)| *missing && !module_missing);
        if better {
            affected.example = Some((module_missing, device_id.to_owned()));
        }
    }

    /// Pushes one diagnostic per problem, however many configurations share
    /// it (naming the example device and counting the others), and gives
    /// the configurations sorted by (module, policies), with each index's
    /// new place.
    pub fn finish(self, diags: &mut Diagnostics) -> (Vec<Configuration>, Vec<usize>) {
        let policies = self.policies;
        // Per problem: its first instance, its twin, and the devices affected.
        let mut reported: BTreeMap<String, Reported<'_>> = BTreeMap::new();
        for ((twin, problems), affected) in
            self.twins.iter().zip(&self.problems).zip(&self.affected)
        {
            if affected.count == 0 {
                continue;
            }
            for problem in problems {
                let key = format!(
                    "{:?}",
                    problem.diagnostic(&occurrence(policies, twin, None, 0))
                );
                let entry = reported.entry(key).or_insert((problem, twin, 0, None));
                entry.2 += affected.count;
                if let Some(example) = &affected.example
                    && entry.3.is_none_or(|known| example < known)
                {
                    entry.3 = Some(example);
                }
            }
        }
        for (problem, twin, count, example) in reported.into_values() {
            let example = example.map(|(_, id)| id.as_str());
            diags.push(problem.diagnostic(&occurrence(
                policies,
                twin,
                example,
                count.saturating_sub(1),
            )));
        }
        let mut order: Vec<usize> = (0..self.twins.len()).collect();
        order.sort_by(|&a, &b| self.twins.get(a).cmp(&self.twins.get(b)));
        let mut renumbered = vec![0; order.len()];
        for (place, &at) in order.iter().enumerate() {
            if let Some(slot) = renumbered.get_mut(at) {
                *slot = place;
            }
        }
        let mut configurations: Vec<Option<Configuration>> =
            self.configurations.into_iter().map(Some).collect();
        let configurations = order
            .iter()
            .filter_map(|&at| configurations.get_mut(at).and_then(Option::take))
            .collect();
        (configurations, renumbered)
    }
}

/// A problem's first instance, its twin, how many devices it affects and
/// the example among them.
type Reported<'a> = (
    &'a Problem,
    &'a TwinPolicies,
    usize,
    Option<&'a (bool, String)>,
);

/// A twin (module id, `None` for the device twin) and the policies for it.
type TwinPolicies = (Option<String>, Vec<PolicyId>);

fn split_by_twin(policies: &PolicySet, ids: &[PolicyId]) -> Vec<TwinPolicies> {
    let mut groups: BTreeMap<Option<String>, Vec<PolicyId>> = BTreeMap::new();
    for &id in ids {
        if let Some(policy) = policies.get(id) {
            groups.entry(policy.module.clone()).or_default().push(id);
        }
    }
    groups.into_iter().collect()
}

/// One configuration, compiled but not yet shared.
struct Compiled {
    value: DesiredValue,
    /// Every leaf's origin, in pointer order, shared where the pool
    /// holds its parts.
    leaves: Vec<shared::PooledLeaf>,
    conflicts: Vec<Conflict>,
    create_modules: bool,
}

/// A configuration's desired value: one compiled before, or a new one.
enum DesiredValue {
    Known(Arc<Desired>),
    Fresh {
        key: Vec<u8>,
        value: Map<String, Value>,
        checks: Vec<Check>,
    },
}

/// A problem of one configuration, before it is tied to devices.
enum Problem {
    Conflict(Conflict),
    Violation {
        violation: Violation,
        origin: Option<(String, Origin)>,
    },
    Rule {
        rule: Rule,
        left: Option<(String, Origin, Value)>,
        right: Option<(String, Origin, Value)>,
    },
    Limit {
        problem: limits::LimitProblem,
        origin: Option<(String, Origin)>,
    },
}

/// Merges and completes one twin's configuration; builds and checks its
/// value unless `pool` holds it already.
fn configure(
    policies: &PolicySet,
    schemas: &SchemaSet,
    (pool, defaults): (&Pool, &FxHashMap<String, Defaults>),
    module: Option<&str>,
    ids: &[PolicyId],
) -> Compiled {
    let (result, conflicts) = merge::layer(policies, ids);
    // Leaves come in pointer order, so a property's leaves are together.
    let mut properties: Vec<String> = Vec::new();
    for pointer in result.keys() {
        if let Some(name) = crate::load::pointer_keys(pointer).next()
            && properties.last().is_none_or(|last| *last != name)
        {
            properties.push(name.into_owned());
        }
    }
    let mut flat_schema = None;
    // The leaves of schema defaults that complete the value, made once.
    let mut unset: Vec<&DefaultLeaf> = Vec::new();
    for property in &properties {
        match schemas.governing(module, property) {
            Some(schema) if schema.property.is_none() => flat_schema = Some(schema),
            Some(schema) if schema.write == WriteMode::Whole => {
                if let Some(defaults) = defaults.get(&schema.name) {
                    defaults.unset(&result, &mut unset);
                }
            }
            _ => {}
        }
    }
    unset.sort_unstable_by(|a, b| a.leaf.pointer.cmp(&b.leaf.pointer));
    let values = shared::by_pointer(
        result
            .iter()
            .map(|(pointer, entry)| (pointer.as_str(), &entry.value)),
        unset
            .iter()
            .map(|default| (default.leaf.pointer.as_str(), &default.leaf.value))
            .collect(),
        shared::leaf_pointer,
    );
    let key = shared::value_key(module, values.iter().copied());
    let value = if let Some(known) = pool.value(&key) {
        DesiredValue::Known(Arc::clone(known))
    } else {
        let value = merge::tree(values.iter().copied());
        let checks = check(schemas, module, flat_schema, &value);
        DesiredValue::Fresh { key, value, checks }
    };
    let create_modules = ids
        .iter()
        .filter_map(|&id| policies.get(id))
        .any(|policy| policy.create_modules);
    Compiled {
        value,
        leaves: pool.pooled(
            result
                .into_iter()
                .map(|(pointer, Entry { origin, .. })| (pointer, origin)),
            &unset,
        ),
        conflicts,
        create_modules,
    }
}

/// What the schemas governing `desired`, their rules and IoT Hub's limits
/// find wrong with it.
fn check(
    schemas: &SchemaSet,
    module: Option<&str>,
    flat_schema: Option<&TwinSchema>,
    desired: &Map<String, Value>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut check = |base: String, schema: &TwinSchema, value: &Value| {
        for mut violation in schema.violations(value, Completeness::Whole) {
            violation.pointer = format!("{base}{}", violation.pointer);
            violation.cause = violation.cause.map(|cause| format!("{base}{cause}"));
            checks.push(Check::Violation(violation));
        }
        for rule in &schema.rules {
            if rule.is_broken(value) {
                let side = |pointer: &str| {
                    let found = value.pointer(pointer).cloned().unwrap_or(Value::Null);
                    (format!("{base}{pointer}"), found)
                };
                checks.push(Check::Rule {
                    rule: rule.clone(),
                    sides: [Some(side(&rule.left)), rule.right.as_deref().map(side)],
                });
            }
        }
    };
    for (property, value) in desired {
        if let Some(schema) = schemas
            .governing(module, property)
            .filter(|s| s.property.is_some())
        {
            check(join_pointer("", property), schema, value);
        }
    }
    if let Some(schema) = flat_schema {
        check(String::new(), schema, &Value::Object(desired.clone()));
    }
    checks.extend(limits::check(desired).into_iter().map(Check::Limit));
    checks
}

/// Where a problem occurs: the twin's policies and the affected devices.
struct Occurrence<'a> {
    policies: &'a PolicySet,
    module: Option<&'a str>,
    contributors: &'a [PolicyId],
    /// The device named.
    example: Option<&'a str>,
    /// How many other devices are affected.
    others: usize,
}

fn occurrence<'a>(
    policies: &'a PolicySet,
    twin: &'a TwinPolicies,
    example: Option<&'a str>,
    others: usize,
) -> Occurrence<'a> {
    Occurrence {
        policies,
        module: twin.0.as_deref(),
        contributors: &twin.1,
        example,
        others,
    }
}

/// A leaf's pointer and origin, as problems carry them.
type Explained = (String, Origin);

impl Occurrence<'_> {
    fn device(&self) -> &str {
        self.example.unwrap_or_default()
    }

    fn others(&self) -> usize {
        self.others
    }

    /// ``device `d` (and N other devices), module `m` ``.
    fn twin(&self) -> String {
        let also = match self.others() {
            0 => String::new(),
            1 => " (and 1 other device)".to_owned(),
            n => format!(" (and {n} other devices)"),
        };
        match self.module {
            Some(module) => format!("device `{}`{also}, module `{module}`", self.device()),
            None => format!("device `{}`{also}, device twin", self.device()),
        }
    }

    fn name(&self, id: PolicyId) -> &str {
        self.policies.get(id).map_or("?", |p| p.name.as_str())
    }

    /// The policy leaf behind a value (or the key naming it), with a label
    /// naming the policy.
    fn leaf(&self, origin: Option<&Explained>, at_key: bool) -> Option<(Span, String)> {
        let (pointer, origin) = origin?;
        let Setter::Policy(id) = origin.setter else {
            return None;
        };
        let policy = self.policies.get(id)?;
        let span = if at_key {
            policy.leaf_key_span(pointer)
        } else {
            policy.leaf_span(pointer)
        };
        Some((span, format!("set by policy `{}`", policy.name)))
    }

    /// Where to point when no policy leaf explains a value: the `desired`
    /// key of the highest-priority contributing policy.
    fn fallback(&self) -> Option<Span> {
        self.contributors
            .last()
            .and_then(|&id| self.policies.get(id))
            .map(|policy| policy.document.spans.locate_key("/desired"))
    }

    /// Places a merged-value diagnostic at the leaf that set the value, else
    /// at a contributing policy.
    fn place(
        &self,
        diagnostic: Diagnostic,
        origin: Option<&Explained>,
        at_key: bool,
    ) -> Diagnostic {
        if let Some((span, label)) = self.leaf(origin, at_key) {
            return diagnostic.at(span, label);
        }
        let Some(span) = self.fallback() else {
            return diagnostic;
        };
        let label = match origin {
            Some((
                _,
                Origin {
                    setter: Setter::Default(schema),
                    ..
                },
            )) => {
                format!("merged here, with defaults from schema `{schema}`")
            }
            _ => "merged here".to_owned(),
        };
        diagnostic.at(span, label)
    }

    fn conflict(&self, conflict: &Conflict) -> Diagnostic {
        let (first, second) = (
            self.policies.get(conflict.first),
            self.policies.get(conflict.second),
        );
        let help = format!(
            "give one of the two policies a higher priority, or narrow their targets so that no \
             device matches both{}",
            match self.others() {
                0 => String::new(),
                1 => "; 1 other device is affected too".to_owned(),
                n => format!("; {n} other devices are affected too"),
            }
        );
        let mut diagnostic = Diagnostic::from_error(
            &CompileError::Conflict {
                first: self.name(conflict.first).to_owned(),
                second: self.name(conflict.second).to_owned(),
                priority: first.map_or(0, |p| p.priority),
                path: conflict.pointer.clone(),
                device: self.device().to_owned(),
                help,
            },
            Severity::Error,
        );
        if let Some(first) = first {
            diagnostic = diagnostic.at(
                first.leaf_span(&conflict.first_pointer),
                format!("`{}` sets it here", first.name),
            );
        }
        if let Some(second) = second {
            diagnostic = diagnostic.with_related(
                second.leaf_span(&conflict.second_pointer),
                format!("`{}` sets it here", second.name),
            );
        }
        diagnostic
    }

    fn rule(&self, rule: &Rule, sides: [Option<&(String, Origin, Value)>; 2]) -> Diagnostic {
        let mut diagnostic = Diagnostic::from_error(
            &CompileError::Rule {
                twin: self.twin(),
                message: rule.message.clone(),
                help: rule.help.clone(),
            },
            rule.severity,
        );
        diagnostic.code = format!("twinops::rule::{}", rule.id);
        let mut located = sides
            .into_iter()
            .flatten()
            .filter_map(|(pointer, origin, value)| {
                let shown = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                let by = match &origin.setter {
                    Setter::Policy(id) => format!("policy `{}`", self.name(*id)),
                    Setter::Default(schema) => format!("the default of schema `{schema}`"),
                };
                let explained = (pointer.clone(), origin.clone());
                self.leaf(Some(&explained), false)
                    .map(|(span, _)| (span, format!("`{shown}` from {by}")))
            });
        if let Some((span, label)) = located.next() {
            diagnostic = diagnostic.at(span, label);
            for (span, label) in located {
                diagnostic = diagnostic.with_related(span, label);
            }
        } else if let Some(span) = self.fallback() {
            diagnostic = diagnostic.at(span, "merged here");
        }
        diagnostic
    }
}

impl Problem {
    /// A value's problem, with the leaves behind it and who set them.
    fn explained(check: &Check, provenance: &Provenance) -> Self {
        let explain = |pointer: &str| {
            provenance
                .explain(pointer)
                .map(|(at, origin)| (at.to_owned(), origin.clone()))
        };
        match check {
            Check::Violation(violation) => Problem::Violation {
                violation: violation.clone(),
                origin: explain(violation.cause.as_deref().unwrap_or(&violation.pointer)),
            },
            Check::Rule { rule, sides } => {
                let [left, right] = sides.clone().map(|side| {
                    side.and_then(|(pointer, value)| {
                        explain(&pointer).map(|(at, origin)| (at, origin, value))
                    })
                });
                Problem::Rule {
                    rule: rule.clone(),
                    left,
                    right,
                }
            }
            // Point at the offending node itself (a key, a list item), with
            // the setter of the nearest leaf.
            Check::Limit(problem) => Problem::Limit {
                problem: problem.clone(),
                origin: explain(&problem.pointer)
                    .map(|(_, origin)| (problem.pointer.clone(), origin)),
            },
        }
    }

    fn diagnostic(&self, at: &Occurrence<'_>) -> Diagnostic {
        match self {
            Problem::Conflict(conflict) => at.conflict(conflict),
            Problem::Violation { violation, origin } => at.place(
                Diagnostic::from_error(
                    &CompileError::MergedValue {
                        twin: at.twin(),
                        reason: violation.error.to_string(),
                        help: violation.help.clone(),
                    },
                    Severity::Error,
                ),
                origin.as_ref(),
                violation.cause.is_some(),
            ),
            Problem::Rule { rule, left, right } => at.rule(rule, [left.as_ref(), right.as_ref()]),
            Problem::Limit { problem, origin } => at.place(
                Diagnostic::from_error(
                    &CompileError::TwinLimit {
                        twin: at.twin(),
                        reason: problem.reason.clone(),
                        help: problem.help.clone(),
                    },
                    Severity::Error,
                ),
                origin.as_ref(),
                problem.at_key,
            ),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use crate::compile::{DesiredFleet, Setter, fleet as compile_fleet};
    use crate::diag::{Diagnostics, FileId, Severity, SourceFile, SourceMap};
    use crate::hub::snapshot;
    use crate::load;
    use crate::schema::{PolicySchema, SchemaSet};
    use crate::validate::{self, PolicySet, Unschematized};

    const SEC: &str = "ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration";

    /// Policies from YAML text (one file), validated against the bundled schemas.
    fn policies(yaml: &str) -> (PolicySet, SchemaSet) {
        let (_, schemas, set) = project(yaml);
        (set, schemas)
    }

    /// The same, with the source map the policies were read from.
    pub(crate) fn project(yaml: &str) -> (SourceMap, SchemaSet, PolicySet) {
        let mut sources = SourceMap::new();
        let id: FileId = sources.add(SourceFile::from_text("p.yaml", yaml));
        let mut diags = Diagnostics::new();
        let schemas = SchemaSet::build(&[], &mut diags);
        let file = sources.get(id).unwrap();
        let documents =
            load::documents(&[(id, file)], &PolicySchema::bundled().unwrap(), &mut diags);
        let set = validate::policies(
            documents,
            &schemas,
            Unschematized::Allow,
            &sources,
            &mut diags,
        );
        assert!(!diags.has_errors(), "{:?}", diags.into_sorted());
        (sources, schemas, set)
    }

    fn policy(name: &str, priority: i64, target: &str, desired: &serde_json::Value) -> String {
        format!(
            "apiVersion: twinops/v1\nkind: Policy\nname: {name}\npriority: {priority}\ntarget: {target}\ndesired: {desired}\n"
        )
    }

    fn fleet(devices: &[(&str, &str)]) -> crate::fleet::Fleet {
        let lines: Vec<String> = devices
            .iter()
            .map(|(id, env)| json!({"deviceId": id, "tags": {"env": env}}).to_string())
            .collect();
        snapshot::parse("live.ndjson", &lines.join("\n")).unwrap()
    }

    fn compile(yaml: &str, devices: &[(&str, &str)]) -> (DesiredFleet, Diagnostics) {
        let (set, schemas) = policies(yaml);
        let mut diags = Diagnostics::new();
        let desired = compile_fleet(&set, &schemas, &fleet(devices), &mut diags);
        (desired, diags)
    }

    #[test]
    fn objects_merge_scalars_and_arrays_replace_by_priority() {
        let yaml = [
            policy(
                "low",
                0,
                "'*'",
                &json!({"cfg": {"a": 1, "b": [1, 2], "c": {"x": 1}}}),
            ),
            policy(
                "high",
                10,
                "'*'",
                &json!({"cfg": {"b": [3], "c": {"y": 2}}}),
            ),
        ]
        .join("---\n");
        let (desired, diags) = compile(&yaml, &[("d1", "prod")]);
        assert!(diags.is_empty());
        let configuration = &desired.configurations[0];
        assert_eq!(
            configuration.desired.value()["cfg"],
            json!({"a": 1, "b": [3], "c": {"x": 1, "y": 2}})
        );
        let names: Vec<_> = configuration.policies.clone();
        assert_eq!(names.len(), 2);
        let b = configuration.provenance.get("/cfg/b").unwrap();
        assert_eq!(b.setter, Setter::Policy(1));
        assert_eq!(b.overrode, vec![0]);
        assert!(
            configuration
                .provenance
                .get("/cfg/a")
                .unwrap()
                .overrode
                .is_empty()
        );
    }

    #[test]
    fn a_scalar_replaces_an_object_and_records_whom_it_overrode() {
        let yaml = [
            policy("low", 0, "'*'", &json!({"cfg": {"mode": {"fast": true}}})),
            policy("high", 5, "'*'", &json!({"cfg": {"mode": "slow"}})),
        ]
        .join("---\n");
        let (desired, _) = compile(&yaml, &[("d1", "prod")]);
        let configuration = &desired.configurations[0];
        assert_eq!(
            configuration.desired.value()["cfg"],
            json!({"mode": "slow"})
        );
        assert_eq!(
            configuration.provenance.get("/cfg/mode").unwrap().overrode,
            vec![0]
        );
        assert!(configuration.provenance.get("/cfg/mode/fast").is_none());
    }

    #[test]
    fn same_priority_conflict_is_reported_only_where_targets_overlap() {
        // `prod` and `canary` overlap on d2 only; d1 and d3 compile cleanly.
        let yaml = [
            policy(
                "prod",
                10,
                "tags.env = 'prod' OR tags.env = 'both'",
                &json!({"cfg": {"n": 1}}),
            ),
            policy(
                "canary",
                10,
                "tags.env = 'canary' OR tags.env = 'both'",
                &json!({"cfg": {"n": 2}}),
            ),
        ]
        .join("---\n");
        let (desired, diags) = compile(
            &yaml,
            &[
                ("d1", "prod"),
                ("d2", "both"),
                ("d3", "canary"),
                ("d4", "both"),
            ],
        );
        let sorted = diags.into_sorted();
        assert_eq!(sorted.len(), 1, "{sorted:?}");
        let conflict = &sorted[0];
        assert_eq!(conflict.severity, Severity::Error);
        assert_eq!(conflict.code, "twinops::compile::conflict");
        assert!(
            conflict.message.contains("`canary` and `prod`")
                || conflict.message.contains("`prod` and `canary`")
        );
        assert!(
            conflict.message.contains("on device `d2`"),
            "{}",
            conflict.message
        );
        assert!(
            conflict
                .help
                .as_deref()
                .unwrap()
                .contains("1 other device is affected")
        );
        assert_eq!(conflict.related.len(), 1, "points at both policies");
        assert_eq!(desired.twins.len(), 4);
    }

    #[test]
    fn equal_values_at_one_priority_do_not_conflict() {
        let yaml = [
            policy("a", 10, "'*'", &json!({"cfg": {"n": 1, "x": true}})),
            policy("b", 10, "'*'", &json!({"cfg": {"n": 1, "y": false}})),
        ]
        .join("---\n");
        let (desired, diags) = compile(&yaml, &[("d1", "prod")]);
        assert!(diags.is_empty(), "{:?}", diags.into_sorted());
        assert_eq!(
            desired.configurations[0].desired.value()["cfg"],
            json!({"n": 1, "x": true, "y": false})
        );
    }

    #[test]
    fn shape_clash_at_one_priority_conflicts() {
        let yaml = [
            policy("a", 10, "'*'", &json!({"cfg": {"n": {"deep": 1}}})),
            policy("b", 10, "'*'", &json!({"cfg": {"n": 5}})),
        ]
        .join("---\n");
        let (_, diags) = compile(&yaml, &[("d1", "prod")]);
        let sorted = diags.into_sorted();
        assert_eq!(sorted.len(), 1);
        assert!(
            sorted[0].message.contains("`/cfg/n`"),
            "{}",
            sorted[0].message
        );
    }

    #[test]
    fn file_order_does_not_matter() {
        let a = policy("a", 1, "'*'", &json!({"cfg": {"n": 1}}));
        let b = policy("b", 2, "'*'", &json!({"cfg": {"n": 2}}));
        let (first, _) = compile(&[a.clone(), b.clone()].join("---\n"), &[("d1", "x")]);
        let (second, _) = compile(&[b, a].join("---\n"), &[("d1", "x")]);
        assert_eq!(
            first.configurations[0].desired,
            second.configurations[0].desired
        );
        assert_eq!(
            first.configurations[0].desired.value()["cfg"]["n"],
            json!(2)
        );
    }

    #[test]
    fn whole_objects_are_completed_with_schema_defaults() {
        let yaml = format!(
            "apiVersion: twinops/v1\nkind: Policy\nname: s\npriority: 0\ntarget: '*'\nmodule: azureiotsecurity\ndesired:\n  {SEC}:\n    eventPriorityLogin: {{ value: High }}\n"
        );
        let (desired, diags) = compile(&yaml, &[("d1", "x")]);
        assert!(diags.is_empty());
        let configuration = &desired.configurations[0];
        let value = configuration.desired.value();
        let object = value[SEC].as_object().unwrap();
        assert_eq!(object["eventPriorityLogin"], json!({"value": "High"}));
        assert_eq!(
            object["highPriorityMessageFrequency"],
            json!({"value": "PT7M"})
        );
        assert_eq!(
            object["maxLocalCacheSizeInBytes"],
            json!({"value": 2_560_000})
        );
        assert!(
            !object.contains_key("baselineCustomChecksFilePath"),
            "no default, not filled"
        );
        let origin = configuration
            .provenance
            .get(&format!("/{SEC}/highPriorityMessageFrequency/value"))
            .unwrap();
        assert_eq!(origin.setter, Setter::Default("azureiotsecurity".into()));
        assert!(desired.twins[0].module_missing);
    }

    #[test]
    fn devices_with_the_same_policies_share_one_configuration() {
        let yaml = [
            policy("all", 0, "'*'", &json!({"cfg": {"n": 1}})),
            policy("prod", 10, "tags.env = 'prod'", &json!({"cfg": {"n": 2}})),
        ]
        .join("---\n");
        let devices: Vec<(String, &str)> = (0..50)
            .map(|i| (format!("d{i:02}"), if i % 2 == 0 { "prod" } else { "lab" }))
            .collect();
        let refs: Vec<(&str, &str)> = devices
            .iter()
            .map(|(id, env)| (id.as_str(), *env))
            .collect();
        let (desired, _) = compile(&yaml, &refs);
        assert_eq!(desired.configurations.len(), 2);
        assert_eq!(desired.twins.len(), 50);
    }
}
