//! `history` and `blame` output, as text or JSON.

use std::fmt::Write as _;
use std::io::Write;

use serde::Serialize;

use crate::gitops::CommitInfo;
use crate::gitops::audit::{Entry, Line};

/// Version of the JSON documents.
const FORMAT_VERSION: u32 = 1;

/// What `blame` shows for one device.
#[derive(Debug, Serialize)]
pub struct Blame<'a> {
    /// The device.
    pub device: &'a str,
    /// The commit the policies were read at.
    pub head: &'a CommitInfo,
    /// Its compiled leaves.
    pub lines: &'a [Line],
    /// Per twin of the device, the commit stamped by the last apply.
    pub stamps: &'a [(String, Option<String>)],
}

/// The history as text, newest first.
///
/// # Errors
/// When writing fails.
pub fn history_human(out: &mut dyn Write, entries: &[Entry]) -> std::io::Result<()> {
    if entries.is_empty() {
        return writeln!(out, "No commit changed the policies.");
    }
    for entry in entries {
        let commit = &entry.commit;
        writeln!(
            out,
            "{}  {}  {} <{}>  {}",
            commit.short, commit.date, commit.author, commit.email, commit.summary
        )?;
        let effect = &entry.effect;
        let mut said = if effect.is_empty() {
            "no effect on the fleet".to_owned()
        } else {
            let leaves = match effect.leaves_changed {
                1 => "1 leaf".to_owned(),
                n => format!("{} leaves", super::thousands(n)),
            };
            format!(
                "{} changed ({leaves}); {} entering, {} leaving targets",
                super::count(effect.twins_changed, "twin"),
                effect.entered,
                effect.left
            )
        };
        if entry.errors > 0 {
            let _ = write!(
                said,
                "; {} over the fleet",
                super::count(entry.errors, "error")
            );
        }
        writeln!(out, "    {said}")?;
        for leaf in &effect.device_leaves {
            writeln!(out, "    ~ {leaf}")?;
        }
    }
    Ok(())
}

/// The history as JSON.
///
/// # Errors
/// When writing fails.
pub fn history_json(out: &mut dyn Write, entries: &[Entry]) -> std::io::Result<()> {
    super::json(
        out,
        &serde_json::json!({ "format_version": FORMAT_VERSION, "commits": entries }),
    )
}

/// A pointer as dotted keys: `/telemetry/intervalSeconds` → `telemetry.intervalSeconds`.
fn dotted(pointer: &str) -> String {
    crate::load::pointer_keys(pointer)
        .collect::<Vec<_>>()
        .join(".")
}

/// `blame` as text: one line per leaf.
///
/// # Errors
/// When writing fails.
pub fn blame_human(out: &mut dyn Write, blame: &Blame<'_>) -> std::io::Result<()> {
    writeln!(
        out,
        "Device {} as the policies at {} set it:",
        blame.device, blame.head.short
    )?;
    for (twin, stamp) in blame.stamps {
        match stamp {
            Some(commit) => writeln!(
                out,
                "  {twin}: last applied from commit {}",
                commit.chars().take(12).collect::<String>()
            )?,
            None => writeln!(out, "  {twin}: no commit stamped")?,
        }
    }
    if blame.lines.is_empty() {
        return writeln!(out, "No policy sets anything on this device.");
    }
    let mut twin = "";
    for line in blame.lines {
        if line.twin != twin {
            twin = &line.twin;
            writeln!(out, "\n{twin}")?;
        }
        let location = match (&line.file, line.line) {
            (Some(file), Some(number)) => format!(" ({file}:{number})"),
            _ => String::new(),
        };
        writeln!(
            out,
            "  {} = {}  # {}{location}",
            dotted(&line.path),
            line.value,
            line.setter
        )?;
        if let Some(commit) = &line.commit {
            writeln!(
                out,
                "      {} {} {}: {}",
                commit.short, commit.date, commit.author, commit.summary
            )?;
        }
        if !line.overrode.is_empty() {
            writeln!(out, "      overrode {}", line.overrode.join(", "))?;
        }
        let live = match (&line.live, line.live_matches) {
            (_, true) => "live twin matches".to_owned(),
            (Some(value), false) => format!("live twin has {value}"),
            (None, false) => "not on the live twin yet".to_owned(),
        };
        writeln!(out, "      {live}")?;
    }
    Ok(())
}

/// `blame` as JSON.
///
/// # Errors
/// When writing fails.
pub fn blame_json(out: &mut dyn Write, blame: &Blame<'_>) -> std::io::Result<()> {
    let mut value = serde_json::to_value(blame).map_err(std::io::Error::other)?;
    if let Some(object) = value.as_object_mut() {
        object.insert("format_version".to_owned(), FORMAT_VERSION.into());
    }
    super::json(out, &value)
}
