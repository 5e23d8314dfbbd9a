//! `twinops compile`: the desired state of each targeted twin, with the
//! policy and line behind every leaf.

use std::io::Write;
use std::path::Path;

use crate::cli::OutputFormat;
use crate::command::{Failure, load_project, read_fleet, written};
use crate::compile;
use crate::config::{Config, operational};
use crate::diag::{Diagnostics, SourceMap};
use crate::exit::ExitStatus;
use crate::render;

pub(super) fn run(
    config: &Config,
    fleet: &Path,
    device: Option<&str>,
    format: OutputFormat,
    sources: &mut SourceMap,
    diags: &mut Diagnostics,
    out: &mut dyn Write,
) -> Result<ExitStatus, Failure> {
    let project = load_project(config, sources, diags)?;
    if diags.has_errors() {
        return Ok(ExitStatus::InvalidPolicies);
    }
    let fleet = read_fleet(config, fleet)?;
    if let Some(device) = device
        && fleet.device(device).is_none()
    {
        return Err(Failure::new(operational(
            format!("device `{device}` is not in the fleet"),
            None,
        )));
    }
    let desired = compile::fleet(&project.policies, &project.schemas, &fleet, diags);
    if diags.has_errors() {
        return Ok(ExitStatus::InvalidPolicies);
    }
    let twins: Vec<_> = desired
        .twins
        .iter()
        .filter(|twin| device.is_none_or(|id| twin.device_id == id))
        .collect();
    written(match format {
        OutputFormat::Human => {
            render::compiled_human(out, &desired, &twins, &project.policies, sources)
        }
        OutputFormat::Json => {
            render::compiled_json(out, &desired, &twins, &project.policies, sources)
        }
    })?;
    Ok(ExitStatus::Success)
}
