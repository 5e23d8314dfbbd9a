//! `plan` output: terraform-like text, the JSON plan document, and a
//! Markdown pull-request comment. Twins that change identically are shown
//! once with a count; the JSON lists every twin.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;

use rayon::prelude::*;
use serde_json::Value;

use crate::load::pointer_keys;
use crate::plan::{Action, Convergence, LeafChange, Op, Plan, Reason, TwinPlan, saved};

/// GitHub's limit on a comment body.
pub const COMMENT_LIMIT: usize = 65_536;

/// What twins that change identically share: module, action, drifted
/// properties and (the number of) their list of changes.
type GroupKey<'p> = (&'p Option<String>, Action, &'p Vec<String>, usize);

/// Twins that change identically, in plan order of their first twin.
fn groups(plan: &Plan) -> Vec<Vec<&TwinPlan>> {
    // Twins that change alike mostly share one list of changes: each
    // distinct list is written as text once (on every core) and compared
    // by its text, not once per twin.
    let mut lists: HashMap<*const Vec<LeafChange>, usize> = HashMap::new();
    let mut shared: Vec<&[LeafChange]> = Vec::new();
    let list_at: Vec<usize> = plan
        .changes
        .iter()
        .map(|twin| {
            *lists.entry(Arc::as_ptr(&twin.changes)).or_insert_with(|| {
                shared.push(&twin.changes);
                shared.len() - 1
            })
        })
        .collect();
    let texts: Vec<String> = shared
        .par_iter()
        .map(|changes| serde_json::to_string(changes).unwrap_or_default())
        .collect();
    let mut by_text: HashMap<&str, usize> = HashMap::new();
    let list_id: Vec<usize> = texts
        .iter()
        .map(|text| {
            let next = by_text.len();
            *by_text.entry(text).or_insert(next)
        })
        .collect();
    let mut index: HashMap<GroupKey<'_>, usize> = HashMap::new();
    let mut groups: Vec<Vec<&TwinPlan>> = Vec::new();
    for (twin, at) in plan.changes.iter().zip(list_at) {
        let list = list_id.get(at).copied().unwrap_or_default();
        let key = (&twin.module_id, twin.action, &twin.drifted, list);
        let next = groups.len();
        let slot = *index.entry(key).or_insert(next);
        if slot == groups.len() {
            groups.push(Vec::new());
        }
        if let Some(group) = groups.get_mut(slot) {
            group.push(twin);
        }
    }
    groups
}

/// The one-line summary.
#[must_use]
pub fn summary(plan: &Plan) -> String {
    let missing = match plan.missing_modules.len() {
        0 => String::new(),
        n => format!(", {n} missing module{}", if n == 1 { "" } else { "s" }),
    };
    if plan.changes.is_empty() {
        return format!(
            "No changes. Twins match the policies ({} unchanged{missing}).",
            super::thousands(plan.unchanged)
        );
    }
    let drifted = match plan.drifted() {
        0 => String::new(),
        n => format!(" ({n} drifted)"),
    };
    format!(
        "Plan: {} to change{drifted}, {} unchanged{missing}.",
        super::count(plan.changes.len(), "twin"),
        super::thousands(plan.unchanged)
    )
}

fn twin_names(group: &[&TwinPlan]) -> String {
    super::abbreviated_by(group, |twin| twin.id().display())
}

fn heading(group: &[&TwinPlan]) -> (char, String) {
    let Some(first) = group.first() else {
        return (' ', String::new());
    };
    let twin = first.module_id.as_ref().map_or_else(
        || "device twin".to_owned(),
        |module| format!("module {module}"),
    );
    let count = super::count(group.len(), "twin");
    let (sign, what) = match first.action {
        Action::Create => ('+', format!("create {twin} and configure it on {count}")),
        Action::Update => ('~', format!("update {twin} on {count}")),
        Action::Adopt => (
            '~',
            format!("record ownership of {twin} on {count} (values already match)"),
        ),
        Action::Release => (
            '-',
            format!("release {twin} on {count} (no policy targets them any more)"),
        ),
    };
    (sign, format!("{what}: {}", twin_names(group)))
}

fn value(value: Option<&Value>) -> String {
    value.map_or_else(String::new, Value::to_string)
}

fn reason(reason: &Reason) -> String {
    match reason {
        Reason::Policy { policy, source } => format!("{policy} ({source})"),
        Reason::Default { schema } => format!("default of schema {schema}"),
        Reason::Unset => "no policy sets it".to_owned(),
        Reason::Prune => "no policy sets it any more".to_owned(),
    }
}

/// The changed leaves of a group, under a header per desired property.
fn leaf_lines(changes: &[LeafChange]) -> Vec<(char, String)> {
    let mut lines = Vec::new();
    let mut property: Option<String> = None;
    for change in changes {
        let keys: Vec<String> = pointer_keys(&change.path).map(Cow::into_owned).collect();
        let Some((head, rest)) = keys.split_first() else {
            continue;
        };
        if property.as_ref() != Some(head) && !rest.is_empty() {
            lines.push((' ', format!("{head}:")));
            property = Some(head.clone());
        }
        let (sign, text) = match change.op {
            Op::Add => ('+', value(change.after.as_ref())),
            Op::Update => (
                '~',
                format!(
                    "{} → {}",
                    value(change.before.as_ref()),
                    value(change.after.as_ref())
                ),
            ),
            Op::Remove => ('-', value(change.before.as_ref())),
        };
        let path = if rest.is_empty() {
            head.clone()
        } else {
            format!("  {}", rest.join("."))
        };
        lines.push((
            sign,
            format!("{path}: {text}  # {}", reason(&change.reason)),
        ));
    }
    lines
}

fn paint(sign: char, text: &str, color: bool) -> String {
    let code = match sign {
        '+' => "32",
        '~' => "33",
        '-' => "31",
        '!' => "35",
        _ => return text.to_owned(),
    };
    if color {
        format!("\u{1b}[{code}m{text}\u{1b}[0m")
    } else {
        text.to_owned()
    }
}

/// Lines about twins whose devices lag, and modules that are missing.
fn notes(plan: &Plan) -> Vec<String> {
    let mut notes = Vec::new();
    for (class, twins) in &plan.lagging {
        let what = match class {
            Convergence::Pending => "desired not yet reported by the device",
            Convergence::Differing => "the device reports a different configuration",
            Convergence::Converged => continue,
        };
        notes.push(format!(
            "{} unchanged but {what}: {}",
            super::count(twins.len(), "twin"),
            super::abbreviated_by(twins, crate::hub::TwinId::display)
        ));
    }
    if !plan.missing_modules.is_empty() {
        notes.push(format!(
            "{} targeted but missing (set `createModules: true` to create them): {}",
            super::count(plan.missing_modules.len(), "module twin"),
            super::abbreviated_by(&plan.missing_modules, crate::hub::TwinId::display)
        ));
    }
    notes
}

/// Terraform-like text.
///
/// # Errors
/// When writing fails.
pub fn plan_human(out: &mut dyn Write, plan: &Plan, color: bool) -> std::io::Result<()> {
    // A large plan has thousands of groups: they are written on every core.
    let groups: Vec<String> = groups(plan)
        .par_iter()
        .map(|group| group_human(group, color))
        .collect();
    for group in &groups {
        out.write_all(group.as_bytes())?;
    }
    for note in notes(plan) {
        writeln!(out, "Note: {note}.")?;
    }
    writeln!(out, "{}", summary(plan))
}

/// One group of [`plan_human`]: its heading, then the changes its twins share.
fn group_human(group: &[&TwinPlan], color: bool) -> String {
    let mut text = String::new();
    let (sign, title) = heading(group);
    let _ = writeln!(text, "{}", paint(sign, &format!("{sign} {title}"), color));
    if let Some(first) = group.first() {
        if !first.drifted.is_empty() {
            let drifted = format!(
                "! drifted: {} changed outside twinops; restored",
                first.drifted.join(", ")
            );
            let _ = writeln!(text, "    {}", paint('!', &drifted, color));
        }
        for (sign, line) in leaf_lines(&first.changes) {
            let _ = writeln!(
                text,
                "    {}",
                paint(sign, &format!("{sign} {line}"), color)
            );
        }
    }
    text.push('\n');
    text
}

/// The plan document; the same JSON a saved plan holds.
///
/// # Errors
/// When writing fails.
pub fn plan_json(out: &mut dyn Write, plan: &Plan) -> std::io::Result<()> {
    saved::write(plan, out)
}

/// A pull-request comment: summary first, each group collapsed, the command
/// to apply, truncated with a note to stay within [`COMMENT_LIMIT`].
///
/// # Errors
/// When writing fails.
pub fn plan_markdown(out: &mut dyn Write, plan: &Plan, apply_command: &str) -> std::io::Result<()> {
    let head = markdown_head(plan, "### twinops plan");
    let footer = format!("\nTo apply: `{apply_command}`\n");
    let body = markdown_groups(
        plan,
        COMMENT_LIMIT.saturating_sub(head.len() + footer.len()),
    );
    write!(out, "{head}{body}{footer}")
}

/// A plan's title, summary line and notes, in Markdown.
pub(crate) fn markdown_head(plan: &Plan, title: &str) -> String {
    let mut head = format!("{title}\n\n**{}**\n\n", summary(plan));
    for note in notes(plan) {
        let _ = writeln!(head, "> {note}.");
    }
    head
}

/// A plan's groups of identical changes as collapsed Markdown sections, as
/// many as fit in `budget` characters, then a line saying how many did not.
pub(crate) fn markdown_groups(plan: &Plan, budget: usize) -> String {
    let groups = groups(plan);
    let mut body = String::new();
    let mut shown = 0;
    let reserve = 200;
    for group in &groups {
        let (sign, title) = heading(group);
        let only_ownership = group
            .first()
            .is_some_and(|first| first.changes.is_empty() && first.drifted.is_empty());
        if only_ownership {
            let section = format!("<code>{sign}</code> {}\n\n", escape(&title));
            if body.len() + section.len() + reserve > budget {
                break;
            }
            body.push_str(&section);
            shown += 1;
            continue;
        }
        let mut section = format!(
            "<details><summary><code>{sign}</code> {}</summary>\n\n```diff\n",
            escape(&title)
        );
        if let Some(first) = group.first() {
            if !first.drifted.is_empty() {
                let _ = writeln!(
                    section,
                    "! drifted: {} changed outside twinops; restored",
                    first.drifted.join(", ")
                );
            }
            for (sign, line) in leaf_lines(&first.changes) {
                let marker = match sign {
                    '~' => '!',
                    other => other,
                };
                let _ = writeln!(section, "{marker} {line}");
            }
        }
        section.push_str("```\n\n</details>\n\n");
        if body.len() + section.len() + reserve > budget {
            break;
        }
        body.push_str(&section);
        shown += 1;
    }
    if shown < groups.len() {
        let _ = writeln!(
            body,
            "_…{} more group(s) of changes not shown: the comment is limited to {COMMENT_LIMIT} characters. Run `twinops plan` for the whole plan._",
            groups.len() - shown
        );
    }
    body
}

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde_json::json;

    use super::{COMMENT_LIMIT, plan_human, plan_markdown, summary};
    use crate::plan::patch::Patch;
    use crate::plan::{Action, LeafChange, Op, Origin, Plan, Reason, TwinPlan};

    fn twin(device: &str, value: usize) -> TwinPlan {
        TwinPlan {
            device_id: device.to_owned(),
            module_id: None,
            action: Action::Update,
            etag: Some("AAAAAAAAAAE=".to_owned()),
            drifted: Vec::new(),
            changes: Arc::new(vec![LeafChange {
                path: "/telemetry/intervalSeconds".to_owned(),
                op: Op::Update,
                before: Some(json!(1)),
                after: Some(json!(value)),
                reason: Reason::Policy {
                    policy: "telemetry".to_owned(),
                    source: "policies/p.yaml:8:22".to_owned(),
                },
            }]),
            patch: Arc::new(Patch::new(
                &json!({"properties": {"desired": {"telemetry": {"intervalSeconds": value}}}}),
            )),
        }
    }

    fn plan(changes: Vec<TwinPlan>) -> Plan {
        Plan {
            origin: Origin {
                hub: None,
                policy_set: "p".to_owned(),
                commit: None,
            },
            changes,
            unchanged: 98_796,
            missing_modules: Vec::new(),
            lagging: BTreeMap::new(),
        }
    }

    #[test]
    fn identical_changes_are_shown_once_with_a_count() {
        let plan = plan((0..40).map(|i| twin(&format!("d{i:02}"), 5)).collect());
        let mut out = Vec::new();
        plan_human(&mut out, &plan, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("intervalSeconds").count(), 1, "{text}");
        assert!(
            text.contains("update device twin on 40 twins: d00, d01, d02, d03, d04 and 35 more")
        );
        assert!(text.ends_with("Plan: 40 twins to change, 98,796 unchanged.\n"));
    }

    #[test]
    fn markdown_stays_within_the_comment_limit_and_says_what_it_left_out() {
        // Every twin changes differently: one group each, far past the limit.
        let plan = plan(
            (0..5000)
                .map(|i| twin(&format!("device-{i:05}"), i))
                .collect(),
        );
        let mut out = Vec::new();
        plan_markdown(&mut out, &plan, "twinops apply plan.json").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.len() <= COMMENT_LIMIT, "{} characters", text.len());
        assert!(text.starts_with(&format!("### twinops plan\n\n**{}**", summary(&plan))));
        assert!(text.contains("more group(s) of changes not shown"));
        assert!(
            text.trim_end()
                .ends_with("To apply: `twinops apply plan.json`")
        );
        assert_eq!(
            text.matches("<details>").count(),
            text.matches("</details>").count()
        );
    }
}
