//! `twinops snapshot --out FILE` and `twinops hub import FILE`: fleet
//! snapshots out of and into the environment's hub.

use std::path::Path;

use crate::command::environment::{self, Seed, block_on, hub_failure};
use crate::command::{Failure, Io, snapshot_failure, snapshot_file};
use crate::config::{Config, operational};
use crate::exit::ExitStatus;
use crate::hub::{AnyHub, Hub, snapshot};
use crate::load;

/// Exports every twin as NDJSON, written whole or not at all.
pub(super) fn export(config: &Config, out: &Path, io: &mut Io<'_>) -> Result<ExitStatus, Failure> {
    let (_, hub) = environment::open(config, Seed::OnCreate, io.err)?;
    let mut text = Vec::new();
    match &hub {
        AnyHub::Local(local) => local.export(&mut text),
        AnyHub::Rest(_) => {
            block_on(hub.fleet())?.and_then(|fleet| snapshot::write(&fleet, &mut text))
        }
    }
    .map_err(|error| hub_failure(&error))?;
    environment::write_atomically(out, &text)?;
    let _ = writeln!(io.err, "Wrote `{}`.", out.display());
    Ok(ExitStatus::Success)
}

/// Imports a snapshot into the local hub, all or nothing.
pub(super) fn import(config: &Config, file: &Path, io: &mut Io<'_>) -> Result<ExitStatus, Failure> {
    let shown = load::display_path(&config.root, file);
    // The file is opened first: a missing one creates no hub.
    let snapshot = snapshot_file(config, file)?;
    let mut lines = snapshot.lines()?;
    let (environment, hub) = environment::open(config, Seed::Never, io.err)?;
    let AnyHub::Local(hub) = hub else {
        return Err(Failure::new(operational(
            format!(
                "environment `{}` is an IoT Hub: `hub import` loads snapshots into local hubs only",
                environment.name
            ),
            Some("choose a local environment with `--env`"),
        )));
    };
    let count = hub
        .import_lines(&mut *lines)
        .map_err(|error| snapshot_failure(&error))?;
    let _ = writeln!(
        io.out,
        "Imported {count} twins from `{shown}` into environment `{}`.",
        environment.name
    );
    Ok(ExitStatus::Success)
}
