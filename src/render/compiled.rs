//! `compile` output: each distinct configuration once, with the twins that
//! share it and, per leaf, the policy and line that set it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Value, json};

use crate::compile::{Configuration, DesiredFleet, Origin, Setter, TwinTarget};
use crate::diag::SourceMap;
use crate::load::pointer_keys;
use crate::validate::PolicySet;

/// The configurations of `twins`, renumbered by first appearance.
fn groups<'d>(
    desired: &'d DesiredFleet,
    twins: &[&'d TwinTarget],
) -> Vec<(&'d Configuration, Vec<&'d TwinTarget>)> {
    let mut order: BTreeMap<usize, usize> = BTreeMap::new();
    let mut groups: Vec<(&Configuration, Vec<&TwinTarget>)> = Vec::new();
    for twin in twins {
        let Some(configuration) = desired.configuration(twin) else {
            continue;
        };
        let next = order.len();
        let slot = *order.entry(twin.configuration).or_insert(next);
        if slot == groups.len() {
            groups.push((configuration, Vec::new()));
        }
        if let Some((_, members)) = groups.get_mut(slot) {
            members.push(twin);
        }
    }
    groups
}

/// Human-readable listing.
///
/// # Errors
/// When writing fails.
pub fn compiled_human(
    out: &mut dyn Write,
    desired: &DesiredFleet,
    twins: &[&TwinTarget],
    policies: &PolicySet,
    sources: &SourceMap,
) -> std::io::Result<()> {
    let groups = groups(desired, twins);
    for (configuration, members) in &groups {
        let twin_kind = configuration.module.as_ref().map_or_else(
            || "device twin".to_owned(),
            |module| format!("module {module}"),
        );
        writeln!(
            out,
            "# {twin_kind} on {}: {}",
            super::count(members.len(), "twin"),
            super::abbreviated_by(members, |twin| twin.device_id.clone())
        )?;
        let policy_names: Vec<String> = configuration
            .policies
            .iter()
            .filter_map(|&id| policies.get(id))
            .map(|policy| format!("{} ({})", policy.name, policy.priority))
            .collect();
        writeln!(
            out,
            "# policies, lowest priority first: {}",
            policy_names.join(", ")
        )?;
        let missing: Vec<&str> = members
            .iter()
            .filter(|t| t.module_missing)
            .map(|t| t.device_id.as_str())
            .collect();
        if !missing.is_empty() {
            let verb = if configuration.create_modules {
                "createModules is on: apply creates it"
            } else {
                "createModules is off: plan reports it"
            };
            writeln!(
                out,
                "# module missing on {} ({verb}): {}",
                super::count(missing.len(), "device"),
                missing.join(", ")
            )?;
        }
        let document = Value::Object(configuration.desired.value());
        let mut current_property: Option<String> = None;
        for (pointer, origin) in configuration.provenance.iter() {
            let keys: Vec<String> = pointer_keys(pointer).map(Cow::into_owned).collect();
            let Some((property, rest)) = keys.split_first() else {
                continue;
            };
            let value = document
                .pointer(pointer)
                .map_or_else(String::new, Value::to_string);
            let why = describe(&origin, pointer, policies, sources);
            if rest.is_empty() {
                writeln!(out, "{property} = {value}  # {why}")?;
                current_property = None;
                continue;
            }
            if current_property.as_ref() != Some(property) {
                writeln!(out, "{property}:")?;
                current_property = Some(property.clone());
            }
            writeln!(out, "  {} = {value}  # {why}", rest.join("."))?;
        }
        writeln!(out)?;
    }
    let configurations = groups.len();
    writeln!(
        out,
        "Compiled {} into {}.",
        super::count(twins.len(), "twin"),
        super::count(configurations, "distinct configuration")
    )
}

fn describe(origin: &Origin, pointer: &str, policies: &PolicySet, sources: &SourceMap) -> String {
    let mut text = match &origin.setter {
        Setter::Policy(id) => policies.get(*id).map_or_else(String::new, |policy| {
            format!(
                "{} ({})",
                policy.name,
                sources.describe(policy.leaf_span(pointer))
            )
        }),
        Setter::Default(schema) => format!("default of schema {schema}"),
    };
    if !origin.overrode.is_empty() {
        let names: Vec<&str> = origin
            .overrode
            .iter()
            .filter_map(|&id| policies.get(id).map(|p| p.name.as_str()))
            .collect();
        text.push_str(", overrides ");
        text.push_str(&names.join(", "));
    }
    text
}

/// The JSON document (`format_version` 1).
///
/// # Errors
/// When writing fails.
pub fn compiled_json(
    out: &mut dyn Write,
    desired: &DesiredFleet,
    twins: &[&TwinTarget],
    policies: &PolicySet,
    sources: &SourceMap,
) -> std::io::Result<()> {
    let groups = groups(desired, twins);
    let configurations: Vec<Value> = groups
        .iter()
        .enumerate()
        .map(|(index, (configuration, _))| {
            let provenance: serde_json::Map<String, Value> = configuration
                .provenance
                .iter()
                .map(|(pointer, origin)| {
                    (pointer.to_owned(), origin_json(&origin, pointer, policies, sources))
                })
                .collect();
            json!({
                "id": index,
                "moduleId": configuration.module,
                "policies": configuration.policies.iter().filter_map(|&id| policies.get(id)).map(|p| p.name.clone()).collect::<Vec<_>>(),
                "createModules": configuration.create_modules,
                "desired": configuration.desired.value(),
                "provenance": provenance,
            })
        })
        .collect();
    let twins: Vec<Value> = groups
        .iter()
        .enumerate()
        .flat_map(|(index, (_, members))| {
            members.iter().map(move |twin| {
                json!({
                    "deviceId": twin.device_id,
                    "moduleId": twin.module_id,
                    "configuration": index,
                    "moduleMissing": twin.module_missing,
                })
            })
        })
        .collect();
    let mut twins = twins;
    twins.sort_by(|a, b| {
        (a["deviceId"].as_str(), a["moduleId"].as_str())
            .cmp(&(b["deviceId"].as_str(), b["moduleId"].as_str()))
    });
    super::json(
        out,
        &json!({ "format_version": 1, "configurations": configurations, "twins": twins }),
    )
}

fn origin_json(origin: &Origin, pointer: &str, policies: &PolicySet, sources: &SourceMap) -> Value {
    let policy_ref = |id: usize| {
        policies.get(id).map_or(Value::Null, |policy| {
            json!({ "policy": policy.name, "source": sources.describe(policy.leaf_span(pointer)) })
        })
    };
    let mut value = match &origin.setter {
        Setter::Policy(id) => policy_ref(*id),
        Setter::Default(schema) => json!({ "default": schema }),
    };
    if !origin.overrode.is_empty() {
        let overrode = origin.overrode.iter().map(|&id| policy_ref(id)).collect();
        super::set(&mut value, "overrode", overrode);
    }
    value
}
