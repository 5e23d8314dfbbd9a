//! `twinops status`: ownership, drift and convergence across the fleet.

use std::path::Path;

use crate::cli::OutputFormat;
use crate::command::environment::{self, Seed, block_on, hub_failure};
use crate::command::{Failure, Io, read_fleet, written};
use crate::config::Config;
use crate::exit::ExitStatus;
use crate::hub::Hub;
use crate::render;
use crate::status;

pub(super) fn run(
    config: &Config,
    fleet: Option<&Path>,
    list: bool,
    format: OutputFormat,
    io: &mut Io<'_>,
) -> Result<ExitStatus, Failure> {
    let fleet = if let Some(path) = fleet {
        read_fleet(config, path)?
    } else {
        let (_, hub) = environment::open(config, Seed::OnCreate, io.err)?;
        block_on(hub.fleet())?.map_err(|error| hub_failure(&error))?
    };
    let status = status::survey(&fleet);
    written(match format {
        OutputFormat::Human => render::status_human(io.out, &status, list),
        OutputFormat::Json => render::status_json(io.out, &status),
    })?;
    Ok(ExitStatus::Success)
}
