//! IoT Hub's twin rules, applied to every compiled desired section whatever
//! its schema (`reference/iothub-rest-api.md` §5.5).

use serde_json::Value;

use crate::load::join_pointer;

/// Deepest nesting of objects below `desired`.
pub const MAX_DEPTH: usize = 10;
/// Largest desired section, by IoT Hub's size formula.
pub const MAX_DESIRED_BYTES: usize = 32 * 1024;
/// Longest string value.
pub const MAX_STRING_BYTES: usize = 4 * 1024;
/// Longest key.
pub const MAX_KEY_BYTES: usize = 1024;
/// Integers IoT Hub accepts: ±2^52.
pub const MAX_SAFE_INTEGER: i64 = 4_503_599_627_370_495;

/// One broken limit: where, what, and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitProblem {
    /// Pointer below desired.
    pub pointer: String,
    /// Whether the key naming `pointer` is at fault (rather than its value).
    pub at_key: bool,
    /// What is wrong, lowercase.
    pub reason: String,
    /// What to do.
    pub help: Option<String>,
}

/// Every limit `desired` breaks, in pointer order.
#[must_use]
pub fn check(desired: &serde_json::Map<String, Value>) -> Vec<LimitProblem> {
    let mut problems = Vec::new();
    let mut path = Vec::new();
    for (key, value) in desired {
        path.push(Step::Key(key));
        walk(key, value, &mut path, &mut problems);
        path.pop();
    }
    let size = size(desired);
    if size > MAX_DESIRED_BYTES {
        problems.push(LimitProblem {
            pointer: String::new(),
            at_key: true,
            reason: format!(
                "desired properties take {size} bytes, over IoT Hub's limit of {MAX_DESIRED_BYTES}"
            ),
            help: Some("split the configuration or shorten its values".to_owned()),
        });
    }
    problems
}

/// One step from `desired` down to a value: a key or a list index.
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The JSON pointer of `path`; written only for a problem, so a section
/// that breaks no limit allocates nothing.
fn pointer(path: &[Step<'_>]) -> String {
    path.iter().fold(String::new(), |pointer, step| match step {
        Step::Key(key) => join_pointer(&pointer, key),
        Step::Index(at) => format!("{pointer}/{at}"),
    })
}

/// Checks `value`, found under `key` at `path` (its last step), and what it
/// holds; `path` is as long as the nesting depth.
fn walk<'a>(
    key: &str,
    value: &'a Value,
    path: &mut Vec<Step<'a>>,
    problems: &mut Vec<LimitProblem>,
) {
    let mut flag = |path: &[Step<'_>], at_key: bool, reason: String, help: &str| {
        problems.push(LimitProblem {
            pointer: pointer(path),
            at_key,
            reason,
            help: Some(help.to_owned()),
        });
    };
    if let Some(bad) = key
        .chars()
        .find(|ch| ch.is_control() || matches!(ch, '.' | '$' | ' '))
    {
        flag(
            path,
            true,
            format!("key `{key}` contains {}", describe_char(bad)),
            "twin keys may not contain `.`, `$`, spaces or control characters",
        );
    }
    if key.len() > MAX_KEY_BYTES {
        flag(
            path,
            true,
            format!(
                "key is {} bytes, over IoT Hub's limit of {MAX_KEY_BYTES}",
                key.len()
            ),
            "shorten the key",
        );
    }
    if path.len() > MAX_DEPTH {
        flag(
            path,
            true,
            format!("nesting is deeper than IoT Hub's limit of {MAX_DEPTH} levels"),
            "flatten the desired properties",
        );
        return;
    }
    match value {
        Value::Object(map) => {
            for (child_key, child) in map {
                path.push(Step::Key(child_key));
                walk(child_key, child, path, problems);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (at, item) in items.iter().enumerate() {
                path.push(Step::Index(at));
                if item.is_null() {
                    problems.push(LimitProblem {
                        pointer: pointer(path),
                        at_key: false,
                        reason: "a list holds null, which IoT Hub rejects".to_owned(),
                        help: Some("remove the null from the list".to_owned()),
                    });
                } else {
                    walk("", item, path, problems);
                }
                path.pop();
            }
        }
        Value::String(text) => {
            if text.len() > MAX_STRING_BYTES {
                flag(
                    path,
                    false,
                    format!(
                        "string is {} bytes, over IoT Hub's limit of {MAX_STRING_BYTES}",
                        text.len()
                    ),
                    "shorten the value",
                );
            }
        }
        Value::Number(number) => {
            if number
                .as_i64()
                .is_some_and(|n| !(-MAX_SAFE_INTEGER - 1..=MAX_SAFE_INTEGER).contains(&n))
                || number
                    .as_u64()
                    .is_some_and(|n| n > MAX_SAFE_INTEGER.unsigned_abs())
            {
                flag(
                    path,
                    false,
                    format!("integer `{number}` is outside IoT Hub's range of ±2^52"),
                    "use a smaller number, or a string",
                );
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// A twin section's size by IoT Hub's formula (`reference/iothub-rest-api.md`
/// §5.5): keys and strings count their characters except controls, numbers
/// 8, booleans 4; containers count their contents.
#[must_use]
pub fn size(section: &serde_json::Map<String, Value>) -> usize {
    fn value_size(value: &Value) -> usize {
        match value {
            Value::Null => 0,
            Value::Bool(_) => 4,
            Value::Number(_) => 8,
            Value::String(text) => counted_chars(text),
            Value::Array(items) => items.iter().map(value_size).sum(),
            Value::Object(map) => map
                .iter()
                .map(|(key, child)| counted_chars(key) + value_size(child))
                .sum(),
        }
    }
    section
        .iter()
        .map(|(key, value)| counted_chars(key) + value_size(value))
        .sum()
}

/// IoT Hub counts UTF-8 characters, control characters excluded.
fn counted_chars(text: &str) -> usize {
    text.chars().filter(|ch| !ch.is_control()).count()
}

fn describe_char(ch: char) -> String {
    match ch {
        ' ' => "a space".to_owned(),
        '.' | '$' => format!("`{ch}`"),
        other => format!("control character U+{:04X}", u32::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;

    #[test]
    fn flags_keys_depth_nulls_sizes_and_integers() {
        let mut deep = json!("leaf");
        for _ in 0..11 {
            deep = json!({ "d": deep });
        }
        let desired = json!({
            "a.b": 1,
            "$x": 1,
            "list": [1, null],
            "big": 4_503_599_627_370_496_i64,
            "text": "x".repeat(5000),
            "deep": deep,
        });
        let problems = check(desired.as_object().unwrap());
        let pointers: Vec<_> = problems.iter().map(|p| p.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/$x",
                "/a.b",
                "/big",
                "/deep/d/d/d/d/d/d/d/d/d/d",
                "/list/1",
                "/text"
            ]
        );
    }

    #[test]
    fn counts_size_as_iot_hub_does() {
        let desired = json!({ "k": "x".repeat(4000), "l": "y".repeat(4000) });
        assert!(check(desired.as_object().unwrap()).is_empty());
        let mut big = serde_json::Map::new();
        for i in 0..9 {
            big.insert(format!("k{i}"), json!("z".repeat(4000)));
        }
        let problems = check(&big);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].reason.contains("over IoT Hub's limit of 32768"));
    }
}
