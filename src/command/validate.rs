//! `twinops validate`: policies and schemas, and with a fleet every
//! per-device conflict and merged-value error.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::cli::ValidateFormat;
use crate::command::{Failure, load_project, read_fleet, written};
use crate::compile;
use crate::config::Config;
use crate::diag::{Diagnostics, Severity, SourceMap};
use crate::exit::ExitStatus;
use crate::render;

pub(super) fn run(
    config: &Config,
    fleet: Option<&Path>,
    format: ValidateFormat,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
    out: &mut dyn Write,
) -> Result<ExitStatus, Failure> {
    let project = load_project(config, sources, diags)?;
    let mut twins = None;
    if let Some(path) = fleet
        && !diags.has_errors()
    {
        let fleet = read_fleet(config, path)?;
        let desired = compile::fleet(&project.policies, &project.schemas, &fleet, diags);
        twins = Some((
            fleet.devices.len(),
            desired.twins.len(),
            desired.configurations.len(),
        ));
    }
    let valid = !diags.has_errors();
    let sorted = diags.clone().into_sorted();
    match format {
        ValidateFormat::Human => {
            let policies = render::count(project.policies.policies.len(), "policy");
            let checked = match twins {
                Some((devices, targeted, configurations)) => format!(
                    "; {} of {} targeted, {}",
                    render::count(targeted, "twin"),
                    render::count(devices, "device"),
                    render::count(configurations, "distinct configuration")
                ),
                None => String::new(),
            };
            let verdict = if valid {
                format!("Valid: {policies}{checked}")
            } else {
                format!(
                    "Invalid: {}, {}",
                    render::count(diags.count(Severity::Error), "error"),
                    render::count(diags.count(Severity::Warning), "warning")
                )
            };
            written(writeln!(out, "{verdict}."))?;
        }
        ValidateFormat::Json => written(render::json(
            out,
            &json!({
                "format_version": 1,
                "valid": valid,
                "policies": project.policies.policies.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
                "diagnostics": render::diagnostics_value(&sorted, sources),
            }),
        ))?,
        ValidateFormat::Sarif => written(render::sarif(out, &sorted, sources))?,
    }
    Ok(if valid {
        ExitStatus::Success
    } else {
        ExitStatus::InvalidPolicies
    })
}
