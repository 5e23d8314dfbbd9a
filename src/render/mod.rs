//! Render: results and diagnostics → text, JSON, SARIF. Presents, decides
//! nothing; writes to the `Write` it is given.

mod audit;
mod compiled;
mod diagnostics;
mod plan;
mod preview;
mod report;
mod sarif;

pub use audit::{Blame, blame_human, blame_json, history_human, history_json};
pub use compiled::{compiled_human, compiled_json};
pub use diagnostics::{diagnostics_human, diagnostics_json, diagnostics_value};
pub use plan::{COMMENT_LIMIT, plan_human, plan_json, plan_markdown, summary};
pub use preview::{preview_human, preview_json, preview_markdown};
pub use report::{report_human, report_json, status_human, status_json};
pub use sarif::sarif;

use std::io::Write;

/// Writes `value` as pretty JSON and a newline.
///
/// # Errors
/// When writing fails.
pub fn json(out: &mut dyn Write, value: &serde_json::Value) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// Sets `key` of a JSON object (no-op on other values).
pub(crate) fn set(object: &mut serde_json::Value, key: &str, value: serde_json::Value) {
    if let Some(map) = object.as_object_mut() {
        map.insert(key.to_owned(), value);
    }
}

/// `1234567` → `1,234,567`.
#[must_use]
pub fn thousands(number: usize) -> String {
    let digits = number.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (at, ch) in digits.chars().enumerate() {
        if at > 0 && (digits.len() - at).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// How many names a listing shows before "and N more".
const NAMED: usize = 5;

/// `a, b, c, d, e and 3 more`: the first names of a long list.
pub(crate) fn abbreviated<S: AsRef<str>>(names: &[S]) -> String {
    abbreviated_by(names, |name| name.as_ref().to_owned())
}

/// [`abbreviated`] for a list of things, naming only those shown: a group
/// can hold a million twins.
pub(crate) fn abbreviated_by<T>(items: &[T], name: impl Fn(&T) -> String) -> String {
    let shown = items
        .iter()
        .take(NAMED)
        .map(name)
        .collect::<Vec<_>>()
        .join(", ");
    match items.len().saturating_sub(NAMED) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// `1 twin` / `2 twins`, `1 policy` / `2 policies`.
#[must_use]
pub fn count(number: usize, noun: &str) -> String {
    if number == 1 {
        return format!("1 {noun}");
    }
    let consonant_y = noun
        .strip_suffix('y')
        .filter(|stem| !stem.ends_with(['a', 'e', 'i', 'o', 'u']));
    match consonant_y {
        Some(stem) => format!("{} {stem}ies", thousands(number)),
        None => format!("{} {noun}s", thousands(number)),
    }
}

#[cfg(test)]
mod tests {
    use super::{count, thousands};

    #[test]
    fn numbers_read_like_a_summary_line() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1204), "1,204");
        assert_eq!(thousands(98_796_000), "98,796,000");
        assert_eq!(count(1, "twin"), "1 twin");
        assert_eq!(count(1204, "twin"), "1,204 twins");
        assert_eq!(count(5, "policy"), "5 policies");
        assert_eq!(count(2, "key"), "2 keys");
    }
}
