//! `plan --base` output: what a change of policies does, as text, as one
//! pull-request comment in Markdown (summary first, details collapsed, the
//! command to apply, within the comment limit), or as JSON.

use std::fmt::Write as _;
use std::io::Write;

use crate::gitops::preview::{Live, Preview, TargetChange};
use crate::render::plan::{COMMENT_LIMIT, escape, markdown_groups, markdown_head, summary};

/// Version of the JSON document.
const FORMAT_VERSION: u32 = 1;

/// The one-line account of a preview.
fn headline(preview: &Preview) -> String {
    let mut parts = vec![summary(&preview.change)];
    let entered: usize = preview.targets.iter().map(|t| t.entered.len()).sum();
    let left: usize = preview.targets.iter().map(|t| t.left.len()).sum();
    if entered + left > 0 {
        parts.push(format!(
            "Targets: {} entering, {} leaving.",
            super::count(entered, "twin"),
            super::count(left, "twin")
        ));
    }
    if !preview.new_errors.is_empty() || !preview.resolved_errors.is_empty() {
        parts.push(format!(
            "Errors: {} new, {} resolved.",
            preview.new_errors.len(),
            preview.resolved_errors.len()
        ));
    }
    parts.join(" ")
}

fn target_line(change: &TargetChange) -> String {
    let mut line = format!("`{}`:", change.policy);
    if !change.entered.is_empty() {
        let _ = write!(
            line,
            " +{} ({})",
            change.entered.len(),
            super::abbreviated(&change.entered)
        );
    }
    if !change.left.is_empty() {
        let _ = write!(
            line,
            " −{} ({})",
            change.left.len(),
            super::abbreviated(&change.left)
        );
    }
    line
}

/// Plain text.
///
/// # Errors
/// When writing fails.
pub fn preview_human(out: &mut dyn Write, preview: &Preview, color: bool) -> std::io::Result<()> {
    writeln!(
        out,
        "Change from {} (merge base) to {}: {}",
        preview.base.short,
        preview.head.short,
        headline(preview)
    )?;
    writeln!(out)?;
    super::plan_human(out, &preview.change, color)?;
    if !preview.targets.is_empty() {
        writeln!(out, "\nTargets:")?;
        for change in &preview.targets {
            writeln!(out, "  {}", target_line(change))?;
        }
    }
    for (title, errors) in [
        ("New errors", &preview.new_errors),
        ("Resolved errors", &preview.resolved_errors),
    ] {
        if !errors.is_empty() {
            writeln!(out, "\n{title}:")?;
            for error in errors {
                writeln!(out, "  {error}")?;
            }
        }
    }
    match &preview.live {
        Live::Planned { environment, plan } => {
            writeln!(
                out,
                "\nLive plan of {} against `{environment}`:",
                preview.head.short
            )?;
            super::plan_human(out, plan, color)
        }
        Live::Skipped {
            environment,
            reason,
        } => writeln!(out, "\nNo live plan against `{environment}`: {reason}"),
    }
}

/// One pull-request comment, at most [`COMMENT_LIMIT`] characters.
///
/// # Errors
/// When writing fails.
pub fn preview_markdown(
    out: &mut dyn Write,
    preview: &Preview,
    apply_command: &str,
) -> std::io::Result<()> {
    let mut head = format!(
        "### twinops: what this change does\n\n**{}**\n\nMerge base `{}` → head `{}`.\n\n",
        escape(&headline(preview)),
        preview.base.short,
        preview.head.short
    );
    // At most a quarter of the comment for errors; the rest are counted.
    let error_budget = COMMENT_LIMIT / 4;
    let errors = preview
        .new_errors
        .iter()
        .map(|error| format!("> ❌ new error: {}\n", escape(error)))
        .chain(
            preview
                .resolved_errors
                .iter()
                .map(|error| format!("> ✅ resolved: {}\n", escape(error))),
        );
    let total = preview.new_errors.len() + preview.resolved_errors.len();
    let start = head.len();
    for (listed, line) in errors.enumerate() {
        if head.len() - start + line.len() > error_budget {
            let _ = writeln!(
                head,
                "> … and {} more; run `twinops plan --base` for all of them.",
                total - listed
            );
            break;
        }
        head.push_str(&line);
    }
    if !(preview.new_errors.is_empty() && preview.resolved_errors.is_empty()) {
        head.push('\n');
    }
    let footer = format!("\nTo apply after merge: `{apply_command}`\n");
    let mut budget = COMMENT_LIMIT.saturating_sub(head.len() + footer.len());
    let mut body = String::new();
    if !preview.targets.is_empty() {
        let mut section = String::from("<details><summary>Targets entered and left</summary>\n\n");
        for change in &preview.targets {
            let _ = writeln!(section, "- {}", escape(&target_line(change)));
        }
        section.push_str("\n</details>\n\n");
        if section.len() < budget / 4 {
            budget -= section.len();
            body.push_str(&section);
        } else {
            let line = format!(
                "_Targets entered and left by {} policies: too long for the comment; run `twinops plan --base` to see them._\n\n",
                preview.targets.len()
            );
            budget = budget.saturating_sub(line.len());
            body.push_str(&line);
        }
    }
    let live = match &preview.live {
        Live::Planned { environment, plan } => {
            let title = format!("#### Live plan against `{environment}`");
            let mut live = markdown_head(plan, &title);
            live.push_str(&markdown_groups(plan, budget / 3));
            live
        }
        Live::Skipped {
            environment,
            reason,
        } => format!(
            "#### Live plan against `{environment}`\n\nNot planned: {}\n",
            escape(reason)
        ),
    };
    budget = budget.saturating_sub(live.len());
    body.push_str(&markdown_head(
        &preview.change,
        "#### Policy change, compiled over the fleet",
    ));
    body.push_str(&markdown_groups(&preview.change, budget));
    body.push_str(&live);
    write!(out, "{head}{body}{footer}")
}

/// The JSON document.
///
/// # Errors
/// When writing fails.
pub fn preview_json(out: &mut dyn Write, preview: &Preview) -> std::io::Result<()> {
    let mut value = serde_json::to_value(preview).map_err(std::io::Error::other)?;
    if let Some(object) = value.as_object_mut() {
        object.insert("format_version".to_owned(), FORMAT_VERSION.into());
    }
    super::json(out, &value)
}
