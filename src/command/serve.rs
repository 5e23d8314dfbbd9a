//! `twinops hub serve`: the emulator on a local hub file, until Ctrl-C or
//! SIGTERM. Prints where it listens, the CA to trust and the connection
//! string to use (the only place a key is ever printed: the user asked for
//! the emulator's own credentials).

use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use crate::cli::ServeArgs;
use crate::command::environment::{self, Seed};
use crate::command::{Failure, Io};
use crate::config::{Config, HubLocation, operational};
use crate::diag::{Diagnostic, Severity};
use crate::emulator::cert::Identity;
use crate::emulator::faults::Faults;
use crate::emulator::{self, Options};
use crate::exit::ExitStatus;
use crate::hub::throttle::{Throttles, Tier};

/// Runs `hub serve` until Ctrl-C or SIGTERM.
pub(super) fn run(
    config: &Config,
    flags: &ServeArgs,
    io: &mut Io<'_>,
) -> Result<ExitStatus, Failure> {
    let invalid = |message: String| Failure::new(operational(message, None));
    let throttles = if flags.unthrottled {
        None
    } else {
        let tier = Tier::from_str(&flags.tier).map_err(invalid)?;
        Some(Throttles::for_hub(tier, flags.units))
    };
    let mut faults = match flags.faults.as_deref() {
        Some(spec) => {
            Faults::from_str(spec).map_err(|reason| invalid(format!("--faults: {reason}")))?
        }
        None => Faults::none(),
    };
    if let Some(seed) = flags.fault_seed {
        faults = faults.seeded(seed);
    }
    let (database, environment_seed) = database(config, flags.db.as_deref())?;
    let seed_file = flags.seed.clone().or(environment_seed);
    let hub = environment::open_local(
        config,
        &database,
        seed_file.as_deref(),
        Seed::OnCreate,
        io.err,
    )?;
    let tls = if flags.tls {
        let directory = flags
            .cert_dir
            .clone()
            .unwrap_or_else(|| database.parent().unwrap_or(Path::new(".")).join("emulator"));
        let identity =
            Identity::in_directory(&directory).map_err(|error| emulator_failure(&error))?;
        let server = identity
            .server_config()
            .map_err(|error| emulator_failure(&error))?;
        Some((identity, server))
    } else {
        None
    };
    let options = Options {
        throttles,
        page_size: flags.page_size,
        faults,
        ..Options::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| invalid(format!("cannot start the async runtime: {error}")))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(flags.listen.as_str())
            .await
            .map_err(|error| invalid(format!("cannot listen on `{}`: {error}", flags.listen)))?;
        let server = tls.as_ref().map(|(_, server)| server.clone());
        let running = emulator::start(hub, listener, server, options)
            .map_err(|error| emulator_failure(&error))?;
        let scheme = if running.tls { "https" } else { "http" };
        let _ = writeln!(io.out, "Listening on {scheme}://{}", running.address);
        if let Some((identity, _)) = &tls {
            let ca =
                std::path::absolute(&identity.ca_file).unwrap_or_else(|_| identity.ca_file.clone());
            let _ = writeln!(io.out, "CA certificate: {}", ca.display());
        }
        let _ = writeln!(
            io.out,
            "Connection string: {}",
            running.connection_string().expose()
        );
        let _ = io.out.flush();
        let _ = writeln!(
            io.err,
            "Serving `{}`; stop with Ctrl-C.",
            database.display()
        );
        stopped().await;
        running.stop().await;
        Ok(ExitStatus::Success)
    })
}

/// The hub file: `--db`, or the chosen environment's local database with
/// its seed.
fn database(config: &Config, db: Option<&Path>) -> Result<(PathBuf, Option<PathBuf>), Failure> {
    if let Some(db) = db {
        return Ok((db.to_path_buf(), None));
    }
    let environment = config.chosen_environment()?;
    match &environment.hub {
        HubLocation::Local { database, seed } => Ok((database.clone(), seed.clone())),
        HubLocation::IotHub { .. } => Err(Failure::new(operational(
            format!(
                "environment `{}` is an IoT Hub, not a local hub to serve",
                environment.name
            ),
            Some("pass `--db FILE`, or choose a local environment with `--env`"),
        ))),
    }
}

fn emulator_failure(error: &emulator::EmulatorError) -> Failure {
    Failure::new(Diagnostic::from_error(error, Severity::Error))
}

/// Waits for Ctrl-C or SIGTERM.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
