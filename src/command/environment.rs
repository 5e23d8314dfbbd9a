//! Opening the chosen environment's hub, creating and seeding a local hub on
//! first use, and the async runtime hub commands run on.

use std::io::Write;
use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use crate::command::Failure;
use crate::config::{Config, Environment, HubLocation, operational};
use crate::diag::{Diagnostic, Severity};
use crate::hub::local::LocalHub;
use crate::hub::rest::{RestHub, Retry, Settings};
use crate::hub::sas::ConnectionString;
use crate::hub::{AnyHub, HubError};
use crate::load;

/// Whether a fresh local hub is loaded with the environment's seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Seed {
    /// Seed a hub created now (plan, apply, status, snapshot).
    OnCreate,
    /// Never (`hub import` brings its own twins).
    Never,
}

/// A hub error as an operational failure.
pub(super) fn hub_failure(error: &HubError) -> Failure {
    Failure::new(Diagnostic::from_error(error, Severity::Error))
}

/// Runs `work` to completion on a single-threaded runtime.
pub(super) fn block_on<T>(work: impl Future<Output = T>) -> Result<T, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            Failure::new(operational(
                format!("cannot start the async runtime: {error}"),
                None,
            ))
        })?;
    Ok(runtime.block_on(work))
}

/// Opens the chosen environment's hub: a local hub (see [`open_local`]) or
/// a REST client for an `iothub` environment, whose connection string is
/// read from the environment variable it names.
pub(super) fn open(
    config: &Config,
    seed: Seed,
    log: &mut dyn Write,
) -> Result<(Environment, AnyHub), Failure> {
    let environment = config.chosen_environment()?.clone();
    let hub = match &environment.hub {
        HubLocation::Local {
            database,
            seed: seed_file,
        } => AnyHub::Local(open_local(
            config,
            database,
            seed_file.as_deref(),
            seed,
            log,
        )?),
        HubLocation::IotHub {
            connection_string_env,
            connection_string,
            tier,
            units,
            ca_file,
            scheme,
        } => {
            let text = connection_string.as_ref().ok_or_else(|| {
                Failure::new(operational(
                    format!(
                        "environment `{}` reads its IoT Hub connection string from `${connection_string_env}`, which is not set",
                        environment.name
                    ),
                    Some(&format!(
                        "export {connection_string_env}='HostName=NAME.azure-devices.net;SharedAccessKeyName=POLICY;SharedAccessKey=KEY'"
                    )),
                ))
            })?;
            let connection = ConnectionString::from_str(text.expose())
                .map_err(|error| Failure::new(Diagnostic::from_error(&error, Severity::Error)))?;
            let settings = Settings {
                connection,
                tier: *tier,
                units: *units,
                ca_file: ca_file.clone(),
                scheme: *scheme,
                retry: Retry::default(),
                timeout: REQUEST_TIMEOUT,
            };
            AnyHub::Rest(Box::new(
                RestHub::connect(&settings).map_err(|error| hub_failure(&error))?,
            ))
        }
    };
    Ok((environment, hub))
}

/// How long one REST request may take before it is retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens the local hub `database`. A local hub that does not exist yet is
/// created; with a seed, it is built and seeded under a temporary name and
/// renamed into place only once complete, so that a run killed while
/// seeding leaves no half-seeded hub behind and the next run seeds again.
pub(super) fn open_local(
    config: &Config,
    database: &Path,
    seed_file: Option<&Path>,
    seed: Seed,
    log: &mut dyn Write,
) -> Result<LocalHub, Failure> {
    if !database.exists() {
        if let Some(parent) = database.parent() {
            std::fs::create_dir_all(parent).map_err(|error| {
                Failure::new(operational(
                    format!("cannot create `{}`: {error}", parent.display()),
                    None,
                ))
            })?;
        }
        if let (Seed::OnCreate, Some(seed_file)) = (seed, seed_file) {
            let mut building = database.as_os_str().to_owned();
            building.push(format!(".seeding-{}", std::process::id()));
            let building = std::path::PathBuf::from(building);
            let seeded = LocalHub::open(&building)
                .map_err(|error| hub_failure(&error))
                .and_then(|hub| seed_hub(config, &hub, seed_file, database, log));
            if let Err(failure) = seeded {
                remove_database(&building);
                return Err(failure);
            }
            std::fs::rename(&building, database).map_err(|error| {
                remove_database(&building);
                Failure::new(operational(
                    format!("cannot create `{}`: {error}", database.display()),
                    None,
                ))
            })?;
        }
    }
    LocalHub::open(database).map_err(|error| hub_failure(&error))
}

fn seed_hub(
    config: &Config,
    hub: &LocalHub,
    seed: &Path,
    database: &Path,
    log: &mut dyn Write,
) -> Result<(), Failure> {
    let shown = load::display_path(&config.root, seed);
    // With `--rev` (and in the runner's clone), the seed is read from git.
    let count = super::import_snapshot(config, hub, seed)?;
    let _ = writeln!(
        log,
        "Created local hub `{}` with {count} twins from `{shown}`.",
        load::display_path(&config.root, database)
    );
    Ok(())
}

/// Removes a database that could not be seeded, with its journal files.
fn remove_database(database: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut path = database.as_os_str().to_owned();
        path.push(suffix);
        let _ = std::fs::remove_file(path);
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that
/// a crash never leaves half a file.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    write_atomically_with(path, &mut |out| out.write_all(bytes))
}

/// [`write_atomically`] with the content written by `write`, as it goes.
pub(super) fn write_atomically_with(
    path: &Path,
    write: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), Failure> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".tmp-{}", std::process::id()));
    let temporary = std::path::PathBuf::from(temporary);
    std::fs::File::create(&temporary)
        .and_then(|file| {
            let mut out = std::io::BufWriter::new(file);
            write(&mut out)?;
            out.into_inner()
                .map_err(std::io::IntoInnerError::into_error)?
                .sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|error| {
            let _ = std::fs::remove_file(&temporary);
            Failure::new(operational(
                format!("cannot write `{}`: {error}", path.display()),
                None,
            ))
        })
}
