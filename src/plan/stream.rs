//! Streamed plans: compile and plan a fleet batch by batch as its lines are
//! read, holding only the changed twins and the distinct compiled results.
//!
//! Each batch is read lightly ([`RawTwin`]) and planned on every core;
//! twins that look alike are targeted, compiled and planned once
//! ([`Targets`], [`Compiler`], the planner's memo). The result is the plan
//! [`diff`](super::diff) gives over the whole fleet, with the same
//! diagnostics. Lines must come as twinops writes them, sorted by device id
//! with each device twin before its module twins in module order; on any
//! other order the stream stops with [`Streamed::Unordered`] and the caller
//! reads the fleet whole.

use std::ops::Range;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use rayon::prelude::*;

use crate::compile::{Compiler, TargetMemo, Targets};
use crate::diag::{Diagnostics, SourceMap};
use crate::fleet::RawTwin;
use crate::hub::lines::TwinLines;
use crate::hub::{HubError, SnapshotLineError, snapshot};
use crate::parallel::PerThread;
use crate::plan::{Context, Memo, Outcome, Plan, Planner};
use crate::schema::SchemaSet;
use crate::validate::{PolicyId, PolicySet};

/// What a streamed plan came to.
#[derive(Debug)]
pub enum Streamed {
    /// The plan; compile problems went to the diagnostics (no plan is worth
    /// applying when they hold errors).
    Plan(Plan),
    /// The lines are not in twinops' order; read the fleet whole instead.
    Unordered,
}

/// The policies and schemas to plan with, and the sources they came from.
#[derive(Clone, Copy)]
pub struct Project<'a> {
    /// The validated policies.
    pub policies: &'a PolicySet,
    /// The schemas.
    pub schemas: &'a SchemaSet,
    /// The policy files, for reasons.
    pub sources: &'a SourceMap,
}

/// Plans every twin `lines` holds.
///
/// The calling thread reads the lines, a batch ahead, and finds where each
/// begins and ends, while another plans the batch before on every core:
/// reading a snapshot or a hub's rows no longer leaves the cores waiting.
/// Each batch ends where a device begins (see [`device_start`]), so a
/// device's twins are planned together.
///
/// # Errors
/// When the source cannot be read, or any line is bad: the first bad lines
/// are listed, as when a snapshot is read whole.
pub fn plan(
    lines: &mut dyn TwinLines,
    project: Project<'_>,
    context: &Context,
    diags: &mut Diagnostics,
) -> Result<Streamed, HubError> {
    let shown = lines.shown().to_owned();
    // A batch is handed over only when the planner takes it: one batch is
    // planned while the next is read, and no more are held.
    let (send_batch, batches) = mpsc::sync_channel::<Filled>(0);
    let (send_spare, spares) = mpsc::channel::<Read>();
    std::thread::scope(|scope| {
        let shown = shown.as_str();
        let planning = scope
            .spawn(move || plan_batches(&batches, &send_spare, (project, context), shown, diags));
        read_batches(lines, &send_batch, &spares);
        // The planner ends once the last batch, or an error, is in.
        drop(send_batch);
        planning
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// What the reader hands the planner: a batch of whole devices' lines, or
/// why reading stopped.
type Filled = Result<Read, HubError>;

/// A batch of whole devices' lines, found in it by the reader, so that the
/// planner's thread does not scan the batch for them while the cores wait.
#[derive(Default)]
struct Read {
    text: String,
    /// Each line that is not blank: its number in the source and where it
    /// is in `text`, without its line ending.
    lines: Vec<(At, Range<usize>)>,
    /// Whether more batches follow.
    more: bool,
}

/// Reads `lines` into batches that end where a device begins, until the
/// source ends, fails, or the planner stops taking them.
fn read_batches(lines: &mut dyn TwinLines, batches: &SyncSender<Filled>, spares: &Receiver<Read>) {
    // The lines of the device that may go on in the next batch.
    let mut carried = String::new();
    let mut next_line = 1;
    loop {
        let mut read = spares.try_recv().unwrap_or_default();
        read.text.clear();
        read.text.push_str(&carried);
        carried.clear();
        read.more = match lines.fill(&mut read.text) {
            Ok(more) => more,
            Err(error) => {
                // Nothing more to do if the planner has stopped already.
                let _ = batches.send(Err(error));
                return;
            }
        };
        if read.more {
            let start = device_start(&read.text);
            carried.push_str(read.text.get(start..).unwrap_or_default());
            read.text.truncate(start);
        }
        next_line = line_ranges(&read.text, next_line, &mut read.lines);
        let more = read.more;
        if batches.send(Ok(read)).is_err() || !more {
            return;
        }
    }
}

/// Fills `ranges` with the lines of `text` that are not blank, numbered
/// from `first_line`; gives the number of the line after the last.
fn line_ranges(text: &str, first_line: usize, ranges: &mut Vec<(At, Range<usize>)>) -> usize {
    ranges.clear();
    let mut line = first_line;
    let mut start = 0;
    for piece in text.split_inclusive('\n') {
        let at = At { line };
        line += 1;
        let trimmed = piece.trim_end_matches(['\n', '\r']);
        if !trimmed.trim().is_empty() {
            ranges.push((at, start..start + trimmed.len()));
        }
        start += piece.len();
    }
    line
}

/// Where the last device of `batch` begins: the start of its last device
/// twin line (module twins follow their device's). The device may go on
/// in the next batch, so its lines are held back for it. After a line that
/// is not a twin, the batch ends with it: such a plan fails anyway, and
/// every line is still read once. When the whole batch is one device, 0.
fn device_start(batch: &str) -> usize {
    let mut end = batch.len();
    while end > 0 {
        let start = batch
            .get(..end.saturating_sub(1))
            .and_then(|before| before.rfind('\n'))
            .map_or(0, |at| at + 1);
        let line = batch
            .get(start..end)
            .unwrap_or_default()
            .trim_end_matches(['\n', '\r']);
        if !line.trim().is_empty() {
            match RawTwin::parse(line) {
                Ok(twin) if twin.module_id.is_none() => return start,
                Ok(_) => {}
                Err(_) => return end,
            }
        }
        end = start;
    }
    0
}

/// Plans the batches as they come; every line is read once, in order.
fn plan_batches(
    batches: &Receiver<Filled>,
    spares: &Sender<Read>,
    (project, context): (Project<'_>, &Context),
    shown: &str,
    diags: &mut Diagnostics,
) -> Result<Streamed, HubError> {
    let targets = Targets::new(project.policies);
    let memos = Memos {
        targets: PerThread::new(),
        plans: PerThread::new(),
    };
    let mut compiler = Compiler::new(project.policies, project.schemas);
    let mut plan = Plan::empty(context.origin.clone());
    let mut errors = Vec::new();
    let mut order = Order::default();
    let mut spare = Spare::default();
    // The reader sends the last batch or an error before it stops.
    while let Ok(read) = batches.recv() {
        let read = read?;
        let batch = Batch::read(&read, shown, &mut errors, &mut spare);
        let Some(devices) = order.devices(&batch.twins) else {
            return Ok(Streamed::Unordered);
        };
        if errors.is_empty() {
            plan_devices(
                (&batch.twins, &devices),
                (&targets, &memos),
                &mut compiler,
                project,
                context,
                &mut plan,
            );
        }
        // The twins' allocations were made on the worker threads: they are
        // freed there too, in parallel, not one by one here.
        let mut twins = batch.twins;
        twins.par_drain(..).with_min_len(256).for_each(drop);
        spare.twins = recycle(twins);
        let more = read.more;
        // The reader may have stopped: then the buffers are not needed.
        let _ = spares.send(read);
        if !more {
            break;
        }
    }
    if !errors.is_empty() {
        return Err(snapshot::invalid(shown, errors));
    }
    tracing::debug!(
        configurations = compiler.all().len(),
        values = compiler.values(),
        changes = plan.changes.len(),
        "streamed plan: distinct compiled configurations and values, twins to change"
    );
    compiler.finish(diags);
    Ok(Streamed::Plan(plan))
}

/// Where a line sits: its number in the source.
#[derive(Clone, Copy)]
struct At {
    line: usize,
}

/// One batch's twins, read lightly, in line order; bad lines are skipped
/// (and recorded).
struct Batch<'b> {
    twins: Vec<(At, RawTwin<'b>)>,
}

impl<'b> Batch<'b> {
    fn read(
        read: &'b Read,
        shown: &str,
        errors: &mut Vec<SnapshotLineError>,
        spare: &mut Spare,
    ) -> Self {
        let mut parsed: Vec<(At, Result<RawTwin<'b>, String>)> =
            recycle(std::mem::take(&mut spare.read));
        read.lines
            .par_iter()
            .with_min_len(256)
            .map(|(at, range)| {
                let text = read.text.get(range.clone()).unwrap_or_default();
                (*at, RawTwin::parse(text))
            })
            .collect_into_vec(&mut parsed);
        let mut twins = recycle(std::mem::take(&mut spare.twins));
        twins.reserve(parsed.len());
        for (at, result) in parsed.drain(..) {
            match result {
                Ok(twin) => twins.push((at, twin)),
                Err(reason) => errors.push(SnapshotLineError {
                    path: shown.to_owned(),
                    line: at.line,
                    reason,
                }),
            }
        }
        spare.read = recycle(parsed);
        Self { twins }
    }
}

/// The vectors of the last batch, emptied, for the next: a batch's vectors
/// take megabytes, and the allocator would otherwise hand the pages back
/// and fault them in again for every batch.
#[derive(Default)]
struct Spare {
    read: Vec<(At, Result<RawTwin<'static>, String>)>,
    twins: Vec<(At, RawTwin<'static>)>,
}

/// An empty vector with the allocation of `used`, for the same items
/// borrowing from another batch (collected in place: nothing is copied).
fn recycle<T, U>(mut used: Vec<T>) -> Vec<U> {
    used.clear();
    used.into_iter().filter_map(|_| None).collect()
}

/// A twin's place in twinops' order.
type Key = (String, Option<String>);

/// The last twin seen, to check that lines come in twinops' order.
#[derive(Default)]
struct Order {
    last: Option<Key>,
}

impl Order {
    /// The devices of a batch (ranges of twins, each a device twin and its
    /// module twins); `None` when a twin is out of order.
    fn devices(&mut self, twins: &[(At, RawTwin<'_>)]) -> Option<Vec<Range<usize>>> {
        let mut devices: Vec<Range<usize>> = Vec::new();
        // Each twin is checked against the one before it, borrowed; only the
        // batch's last twin is kept, for the next batch.
        let mut previous = self
            .last
            .as_ref()
            .map(|(device, module)| (device.as_str(), module.as_deref()));
        for (index, (_, twin)) in twins.iter().enumerate() {
            let key = (twin.device_id.as_ref(), twin.module_id.as_deref());
            let in_order = match (previous, key) {
                (None, (_, module)) => module.is_none(),
                (Some((device, _)), (id, None)) => id > device,
                (Some((device, last_module)), (id, Some(module))) => {
                    id == device && last_module.is_none_or(|last| module > last)
                }
            };
            if !in_order {
                return None;
            }
            match (key.1, devices.last_mut()) {
                (Some(_), Some(device)) => device.end = index + 1,
                _ => devices.push(index..index + 1),
            }
            previous = Some(key);
        }
        let last = previous.map(|(device, module)| (device.to_owned(), module.map(str::to_owned)));
        if last.is_some() {
            self.last = last;
        }
        Some(devices)
    }
}

/// What each thread remembers from one batch to the next.
struct Memos {
    targets: PerThread<TargetMemo>,
    plans: PerThread<Memo>,
}

/// One device's outcomes, and the configurations it was given (with
/// whether its module is missing), for the compiler's messages.
type DevicePlan = (Vec<Outcome>, Vec<(usize, bool)>);

/// Targets, compiles and plans whole devices of one batch, into `plan`.
fn plan_devices(
    (twins, devices): (&[(At, RawTwin<'_>)], &[Range<usize>]),
    (targets, memos): (&Targets, &Memos),
    compiler: &mut Compiler<'_>,
    project: Project<'_>,
    context: &Context,
    plan: &mut Plan,
) {
    let device_twin = |range: &Range<usize>| twins.get(range.start).map(|(_, twin)| twin);
    // The configurations of combinations the compiler knows are looked up
    // here, on every core, so that it goes through only the new ones, on one.
    let matched: Vec<(Vec<PolicyId>, Option<Vec<usize>>)> = devices
        .par_iter()
        .with_min_len(64)
        .map(|range| {
            let ids = device_twin(range).map_or_else(Vec::new, |twin| {
                memos.targets.with(|memo| targets.matching(twin, memo))
            });
            let known = compiler.prepared(&ids).map(<[usize]>::to_vec);
            (ids, known)
        })
        .collect();
    compiler.prepare(
        matched
            .iter()
            .filter(|(_, known)| known.is_none())
            .map(|(ids, _)| ids.as_slice()),
    );
    let compiler_view = &*compiler;
    let planner = Planner {
        configurations: compiler_view.all(),
        policies: project.policies,
        schemas: project.schemas,
        sources: project.sources,
        context,
    };
    let per_device: Vec<DevicePlan> = devices
        .par_iter()
        .zip(&matched)
        .with_min_len(64)
        .map(|(range, (ids, known))| {
            memos.plans.with(|memo| {
                let members = twins.get(range.clone()).unwrap_or_default();
                let configurations = match known {
                    Some(known) => known.as_slice(),
                    None => compiler_view.prepared(ids).unwrap_or_default(),
                };
                let mut outcomes = Vec::new();
                let mut given = Vec::with_capacity(configurations.len());
                for (_, twin) in members {
                    let module = twin.module_id.as_deref();
                    let configuration = configurations
                        .iter()
                        .copied()
                        .find(|&at| compiler_view.module(at) == module);
                    outcomes.extend(planner.existing(twin, configuration, memo));
                }
                for &configuration in configurations {
                    let module = compiler_view.module(configuration);
                    let missing = module.is_some_and(|module| {
                        !members
                            .iter()
                            .any(|(_, twin)| twin.module_id.as_deref() == Some(module))
                    });
                    given.push((configuration, missing));
                    if missing {
                        let device = members
                            .first()
                            .map_or("", |(_, twin)| twin.device_id.as_ref());
                        outcomes.push(planner.missing(device, module, configuration, memo));
                    }
                }
                (outcomes, given)
            })
        })
        .collect();
    for ((device_outcomes, given), range) in per_device.into_iter().zip(devices) {
        let device = device_twin(range).map_or("", |twin| twin.device_id.as_ref());
        for (configuration, missing) in given {
            compiler.affects(configuration, device, missing);
        }
        for outcome in device_outcomes {
            plan.record(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Project, Streamed, device_start, line_ranges, plan};
    use crate::compile;
    use crate::compile::tests::project;
    use crate::diag::Diagnostics;
    use crate::fleet::Fleet;
    use crate::hub::lines::SnapshotLines;
    use crate::hub::snapshot;
    use crate::plan::{self as planning, Context, Origin};
    use crate::schema::SchemaSet;
    use crate::validate::PolicySet;

    fn policy(
        name: &str,
        priority: u32,
        target: &str,
        module: &str,
        desired: &serde_json::Value,
    ) -> String {
        format!(
            "---\napiVersion: twinops/v1\nkind: Policy\nname: {name}\npriority: {priority}\ntarget: \"{target}\"\n{module}desired: {desired}\n"
        )
    }

    /// Policies over tags, reported values and device ids, on the device
    /// twin and a module; `conflict` adds two that clash on some devices.
    fn policies(version: u32, conflict: bool) -> String {
        let module = "module: agent\n";
        let mut yaml = policy(
            "base",
            0,
            "*",
            module,
            &json!({"cfg": {"rate": 1, "mode": "a"}}),
        );
        yaml += &policy(
            "sites",
            10,
            "tags.site IN ['s1', 's2']",
            module,
            &json!({"cfg": {"rate": 2 + version}}),
        );
        yaml += &policy(
            "old",
            20,
            "properties.reported.fw < '2'",
            "",
            &json!({"upgrade": {"to": "2"}}),
        );
        yaml += &policy(
            "one",
            30,
            "deviceId = 'd-0007' OR tags.ring = 'canary'",
            module,
            &json!({"cfg": {"mode": "b"}}),
        );
        if version == 0 {
            yaml += &policy(
                "gone-later",
                40,
                "tags.site = 's3'",
                "",
                &json!({"extra": true}),
            );
        }
        if conflict {
            yaml += &policy(
                "clash-a",
                50,
                "tags.ring = 'canary'",
                module,
                &json!({"cfg": {"mode": "x"}}),
            );
            yaml += &policy(
                "clash-b",
                50,
                "tags.site = 's1'",
                module,
                &json!({"cfg": {"mode": "y"}}),
            );
        }
        yaml
    }

    fn fleet(devices: usize) -> Fleet {
        let mut lines = Vec::new();
        for index in 0..devices {
            let id = format!("d-{index:04}");
            let site = format!("s{}", index % 4);
            let ring = if index % 7 == 0 { "canary" } else { "broad" };
            lines.push(
                json!({"deviceId": id, "etag": "e1", "tags": {"site": site, "ring": ring},
                    "properties": {"desired": {}, "reported": {"fw": format!("{}", index % 3)}}})
                .to_string(),
            );
            if index % 5 != 0 {
                lines.push(
                    json!({"deviceId": id, "moduleId": "agent", "etag": "e2",
                        "properties": {"desired": {"$version": 1}, "reported": {}}})
                    .to_string(),
                );
            }
            if index % 9 == 0 {
                lines.push(json!({"deviceId": id, "moduleId": "zz-other"}).to_string());
            }
        }
        snapshot::parse("f.ndjson", &lines.join("\n")).unwrap()
    }

    /// A fleet configured by `policies`, then drifted and lagging here and
    /// there, as a live fleet looks.
    fn live(yaml: &str) -> Fleet {
        let (sources, schemas, policies) = project(yaml);
        let fleet = fleet(120);
        let mut diags = Diagnostics::new();
        let desired = compile::fleet(&policies, &schemas, &fleet, &mut diags);
        let context = context(&policies, &schemas);
        let mut first = planning::diff(&desired, &fleet, &policies, &schemas, &sources, &context);
        let mut index = 0;
        first.changes.retain(|_| {
            index += 1;
            index % 6 != 0
        });
        let mut live = planning::applied(&first, &fleet);
        for (at, device) in live.devices.iter_mut().enumerate() {
            if let Some(agent) = device.modules.get_mut("agent") {
                match at % 4 {
                    0 => agent.json["properties"]["desired"]["cfg"]["rate"] = json!(99),
                    1 => {
                        agent.json["properties"]["reported"]["cfg"] =
                            json!({"rate": 1, "mode": "a"});
                    }
                    2 => {
                        agent.json["properties"]["reported"]["cfg"] = json!({"rate": 7});
                        agent.json["properties"]["desired"]["$metadata"] =
                            json!({"cfg": {"$lastUpdated": format!("2026-01-0{}", 1 + at % 3)}});
                        agent.json["properties"]["reported"]["$metadata"] =
                            json!({"cfg": {"$lastUpdated": "2026-01-02"}});
                    }
                    _ => {}
                }
            }
        }
        live
    }

    fn context(policies: &PolicySet, schemas: &SchemaSet) -> Context {
        Context {
            origin: Origin {
                hub: None,
                policy_set: planning::policy_set_digest(policies, schemas),
                commit: Some("c0ffee".to_owned()),
            },
            create_modules: true,
        }
    }

    /// The streamed plan equals the plan of the fleet read whole, and so do
    /// the diagnostics, whatever the batch size.
    #[test]
    fn streaming_plans_exactly_as_reading_whole() {
        for conflict in [false, true] {
            let live = live(&policies(0, false));
            let mut text = Vec::new();
            snapshot::write(&live, &mut text).unwrap();
            let (sources, schemas, policies) = project(&policies(1, conflict));
            let context = context(&policies, &schemas);
            let mut whole_diags = Diagnostics::new();
            let desired = compile::fleet(&policies, &schemas, &live, &mut whole_diags);
            let whole = planning::diff(&desired, &live, &policies, &schemas, &sources, &context);
            assert!(!whole.changes.is_empty() && !whole.lagging.is_empty());
            assert!(whole.changes.iter().any(|twin| !twin.drifted.is_empty()));
            assert_eq!(whole_diags.has_errors(), conflict);
            for batch in [1, 200, 5_000, 1 << 20] {
                let mut lines = SnapshotLines::with_batch(text.as_slice(), "f.ndjson", batch);
                let mut diags = Diagnostics::new();
                let project = Project {
                    policies: &policies,
                    schemas: &schemas,
                    sources: &sources,
                };
                let Streamed::Plan(streamed) =
                    plan(&mut lines, project, &context, &mut diags).unwrap()
                else {
                    panic!("a sorted snapshot streams");
                };
                assert_eq!(streamed, whole, "batch {batch}");
                assert_eq!(
                    format!("{:?}", diags.into_sorted()),
                    format!("{:?}", whole_diags.clone().into_sorted()),
                    "batch {batch}"
                );
            }
        }
    }

    /// What a memo keeps from one twin never changes another's plan:
    /// planning the fleet at once, with twins that share values and tags
    /// and others that drifted or lag behind them, gives what planning
    /// each device on its own gives.
    #[test]
    fn memos_never_change_a_twins_plan() {
        let live = live(&policies(0, false));
        for version in [0, 1] {
            let (sources, schemas, policies) = project(&policies(version, false));
            let context = context(&policies, &schemas);
            let plan = |fleet: &Fleet| {
                let desired = compile::fleet(&policies, &schemas, fleet, &mut Diagnostics::new());
                planning::diff(&desired, fleet, &policies, &schemas, &sources, &context)
            };
            let whole = plan(&live);
            let mut alone = planning::Plan::empty(whole.origin.clone());
            for device in &live.devices {
                let one = plan(&Fleet {
                    devices: vec![device.clone()],
                });
                alone.changes.extend(one.changes);
                alone.missing_modules.extend(one.missing_modules);
                alone.unchanged += one.unchanged;
                for (class, twins) in one.lagging {
                    alone.lagging.entry(class).or_default().extend(twins);
                }
            }
            assert!(
                whole.unchanged > 0 && !whole.changes.is_empty(),
                "{version}"
            );
            assert_eq!(whole, alone, "version {version}");
        }
    }

    /// Devices whose policies differ but compile to the same value share
    /// that value and the plan worked out for it, yet each twin's changes
    /// name the policy that sets the value for it, read whole or streamed.
    #[test]
    fn twins_sharing_a_value_keep_their_own_reasons() {
        let module = "module: agent\n";
        let mut yaml = policy("base", 0, "*", module, &json!({"cfg": {"rate": 1}}));
        yaml += &policy(
            "sites",
            10,
            "tags.site = 's1'",
            module,
            &json!({"cfg": {"rate": 2}}),
        );
        yaml += &policy(
            "canary",
            20,
            "tags.ring = 'canary'",
            module,
            &json!({"cfg": {"rate": 2}}),
        );
        let (sources, schemas, policies) = project(&yaml);
        let mut lines = Vec::new();
        for (id, site, ring) in [
            ("a", "s1", "broad"),
            ("b", "s2", "canary"),
            ("c", "s1", "canary"),
        ] {
            lines.push(json!({"deviceId": id, "tags": {"site": site, "ring": ring}}).to_string());
            lines.push(
                json!({"deviceId": id, "moduleId": "agent", "etag": "e",
                    "properties": {"desired": {}, "reported": {}}})
                .to_string(),
            );
        }
        let text = lines.join("\n");
        let fleet = snapshot::parse("f.ndjson", &text).unwrap();
        let mut diags = Diagnostics::new();
        let desired = compile::fleet(&policies, &schemas, &fleet, &mut diags);
        assert_eq!(desired.configurations.len(), 3);
        assert!(
            desired
                .configurations
                .iter()
                .all(|c| c.desired.id == desired.configurations[0].desired.id),
            "one value for three configurations"
        );
        let context = context(&policies, &schemas);
        let whole = planning::diff(&desired, &fleet, &policies, &schemas, &sources, &context);
        let mut lines = SnapshotLines::with_batch(text.as_bytes(), "f.ndjson", 1 << 20);
        let project = Project {
            policies: &policies,
            schemas: &schemas,
            sources: &sources,
        };
        let Streamed::Plan(streamed) =
            plan(&mut lines, project, &context, &mut Diagnostics::new()).unwrap()
        else {
            panic!("a sorted snapshot streams");
        };
        assert_eq!(streamed, whole);
        let setters: Vec<(&str, String)> = whole
            .changes
            .iter()
            .map(|twin| {
                let reason = &twin
                    .changes
                    .iter()
                    .find(|c| c.path == "/cfg/rate")
                    .unwrap()
                    .reason;
                let planning::Reason::Policy { policy, .. } = reason else {
                    panic!("{reason:?}");
                };
                (twin.device_id.as_str(), policy.clone())
            })
            .collect();
        assert_eq!(
            setters,
            [
                ("a", "sites".to_owned()),
                ("b", "canary".to_owned()),
                ("c", "canary".to_owned())
            ]
        );
    }

    /// The streamed plan of `lines` with the first version of the policies.
    fn plan_plainly(
        lines: &mut dyn crate::hub::lines::TwinLines,
    ) -> Result<Streamed, crate::hub::HubError> {
        let (sources, schemas, policies) = project(&policies(0, false));
        let context = context(&policies, &schemas);
        let project = Project {
            policies: &policies,
            schemas: &schemas,
            sources: &sources,
        };
        plan(lines, project, &context, &mut Diagnostics::new())
    }

    #[test]
    fn other_orders_are_left_to_a_whole_read_and_bad_lines_are_listed() {
        let run = |text: &str| {
            let mut lines = SnapshotLines::with_batch(text.as_bytes(), "f.ndjson", 16);
            plan_plainly(&mut lines)
        };
        for unordered in [
            "{\"deviceId\":\"b\"}\n{\"deviceId\":\"a\"}\n",
            "{\"deviceId\":\"a\",\"moduleId\":\"m\"}\n{\"deviceId\":\"a\"}\n",
            "{\"deviceId\":\"a\"}\n{\"deviceId\":\"a\"}\n",
            "{\"deviceId\":\"a\"}\n{\"deviceId\":\"b\",\"moduleId\":\"m\"}\n",
        ] {
            assert!(
                matches!(run(unordered), Ok(Streamed::Unordered)),
                "{unordered}"
            );
        }
        let Err(crate::hub::HubError::InvalidSnapshot { count, lines, .. }) =
            run("{\"deviceId\":\"a\"}\nnope\n\n{\"deviceId\":\"b\",\"tags\":3}\n")
        else {
            panic!("bad lines are an error");
        };
        assert_eq!(count, 2);
        let listed: Vec<(usize, &str)> =
            lines.iter().map(|l| (l.line, l.reason.as_str())).collect();
        assert_eq!(
            listed[1],
            (4, "twin `b`: `tags` must be an object, found a number")
        );
        assert_eq!(listed[0].0, 2);
    }

    #[test]
    fn a_batch_ends_where_its_last_device_begins() {
        let device = |id: &str| format!("{{\"deviceId\":\"{id}\"}}\n");
        let module = |id: &str| format!("{{\"deviceId\":\"{id}\",\"moduleId\":\"m\"}}\n");
        let batch = [
            device("a"),
            module("a"),
            device("b"),
            module("b"),
            "\n".into(),
        ]
        .concat();
        let last = batch.find("{\"deviceId\":\"b\"}").unwrap();
        assert_eq!(device_start(&batch), last);
        let modules_only = [module("a"), module("a")].concat();
        assert_eq!(
            device_start(&modules_only),
            0,
            "one device: all of it goes on"
        );
        assert_eq!(device_start(""), 0);
        let bad = [device("a"), "nope\n".into(), module("a")].concat();
        assert_eq!(
            device_start(&bad),
            bad.find("nope\n").unwrap() + 5,
            "after a bad line, the batch ends with it"
        );
        let bad_last = [device("a"), "nope\n".into()].concat();
        assert_eq!(device_start(&bad_last), bad_last.len());
    }

    #[test]
    fn lines_are_found_numbered_and_blank_ones_passed_over() {
        let text = "{\"a\":1}\r\n\n  \n{\"b\":2}\n{\"c\":3}";
        let mut ranges = Vec::new();
        let next = line_ranges(text, 7, &mut ranges);
        let found: Vec<(usize, &str)> = ranges
            .iter()
            .map(|(at, range)| (at.line, &text[range.clone()]))
            .collect();
        assert_eq!(
            found,
            [(7, "{\"a\":1}"), (10, "{\"b\":2}"), (11, "{\"c\":3}")]
        );
        assert_eq!(next, 12, "the line after the last");
        assert_eq!(line_ranges("", 3, &mut ranges), 3);
        assert!(ranges.is_empty(), "the vector is emptied first");
    }

    /// Lines that fail after a first batch.
    struct Failing(usize);

    impl crate::hub::lines::TwinLines for Failing {
        fn shown(&self) -> &'static str {
            "failing.ndjson"
        }

        fn fill(&mut self, buffer: &mut String) -> Result<bool, crate::hub::HubError> {
            self.0 += 1;
            if self.0 > 2 {
                return Err(crate::hub::HubError::Io {
                    path: "failing.ndjson".into(),
                    reason: "disk gone".into(),
                });
            }
            buffer.push_str(if self.0 == 1 {
                "{\"deviceId\":\"d1\"}\n"
            } else {
                "{\"deviceId\":\"d2\"}\n"
            });
            Ok(true)
        }
    }

    #[test]
    fn a_read_failure_while_planning_is_the_error() {
        let result = plan_plainly(&mut Failing(0));
        let Err(crate::hub::HubError::Io { reason, .. }) = result else {
            panic!("the read error comes back");
        };
        assert_eq!(reason, "disk gone");
    }
}
