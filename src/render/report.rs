//! `apply` reports and `status` summaries.

use std::io::Write;

use serde_json::json;

use crate::apply::{ApplyReport, Outcome};
use crate::status::{Class, Status};

/// Stale and failed twins, then a summary line.
///
/// # Errors
/// When writing fails.
pub fn report_human(out: &mut dyn Write, report: &ApplyReport) -> std::io::Result<()> {
    for twin in &report.twins {
        match &twin.outcome {
            Outcome::Applied { .. } => {}
            Outcome::Stale { changed } => {
                writeln!(
                    out,
                    "stale: {} changed since the plan; left untouched",
                    twin.id.display()
                )?;
                for change in changed {
                    writeln!(out, "    {change}")?;
                }
            }
            Outcome::Failed { reason } => writeln!(out, "failed: {}: {reason}", twin.id.display())?,
        }
    }
    let applied = report.count(|o| matches!(o, Outcome::Applied { .. }));
    let stale = report.count(|o| matches!(o, Outcome::Stale { .. }));
    let failed = report.count(|o| matches!(o, Outcome::Failed { .. }));
    writeln!(
        out,
        "Apply complete: {} changed, {stale} stale, {failed} failed.",
        super::count(applied, "twin")
    )
}

/// The per-twin report as JSON.
///
/// # Errors
/// When writing fails.
pub fn report_json(out: &mut dyn Write, report: &ApplyReport) -> std::io::Result<()> {
    super::json(out, &json!({ "format_version": 1, "twins": report.twins }))
}

fn class_name(class: Class) -> &'static str {
    match class {
        Class::Converged => "converged",
        Class::Pending => "pending (desired not yet reported)",
        Class::Differing => "differing (reported disagrees)",
        Class::Drifted => "drifted (changed outside twinops)",
        Class::Unmanaged => "unmanaged",
    }
}

/// Counts per class, and with `list` the twins of each.
///
/// # Errors
/// When writing fails.
pub fn status_human(out: &mut dyn Write, status: &Status, list: bool) -> std::io::Result<()> {
    let total: usize = status.classes.values().map(Vec::len).sum();
    let managed = total - status.classes.get(&Class::Unmanaged).map_or(0, Vec::len);
    writeln!(
        out,
        "{} managed of {}.",
        super::count(managed, "twin"),
        super::count(total, "twin")
    )?;
    for (class, twins) in &status.classes {
        writeln!(
            out,
            "  {:>9}  {}",
            super::thousands(twins.len()),
            class_name(*class)
        )?;
        if list && *class != Class::Unmanaged {
            for twin in twins {
                writeln!(out, "             {}", twin.display())?;
            }
        }
    }
    Ok(())
}

/// Counts and twins per class as JSON.
///
/// # Errors
/// When writing fails.
pub fn status_json(out: &mut dyn Write, status: &Status) -> std::io::Result<()> {
    super::json(
        out,
        &json!({ "format_version": 1, "classes": status.classes }),
    )
}
