//! The `twinops` binary: parse flags, resolve the config, run, render the
//! diagnostics once, exit.

use std::process::ExitCode;

use clap::Parser;
use twinops::cli::Cli;
use twinops::config::{Config, ConfigFailure};
use twinops::diag::{Diagnostics, SourceMap};
use twinops::exit::ExitStatus;
use twinops::{command, render};

/// mimalloc: plans over large fleets allocate and free small values by the
/// million, on every core; it takes a fifth off their time against the
/// system allocator (`BENCHMARKS.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    start_logging(cli.verbose);
    let mut sources = SourceMap::new();
    let mut diags = Diagnostics::new();
    let cwd = std::env::current_dir().unwrap_or_default();
    let (status, config) = match Config::resolve(&cli, &cwd) {
        Ok(config) => {
            let mut stdout = std::io::stdout().lock();
            let mut stderr = std::io::stderr();
            let mut stdin = std::io::stdin().lock();
            let mut io = command::Io {
                out: &mut stdout,
                err: &mut stderr,
                input: &mut stdin,
            };
            let status = command::run(&cli.command, &config, &mut sources, &mut diags, &mut io)
                .unwrap_or_else(|failure| {
                    diags.push(*failure);
                    ExitStatus::OperationalError
                });
            (status, Some(config))
        }
        Err(ConfigFailure::Operational(failure)) => {
            diags.push(*failure);
            (ExitStatus::OperationalError, None)
        }
        Err(ConfigFailure::Invalid(invalid)) => {
            let (failure, config_sources) = *invalid;
            sources = config_sources;
            diags.push(failure);
            (ExitStatus::InvalidPolicies, None)
        }
    };
    let error_format = config.as_ref().map_or(cli.error_format, |c| c.error_format);
    let color = config.as_ref().is_some_and(|c| c.terminal.color_stderr);
    let sorted = diags.into_sorted();
    let mut stderr = std::io::stderr().lock();
    let rendered = match error_format {
        twinops::cli::ErrorFormat::Human => {
            render::diagnostics_human(&mut stderr, &sorted, &sources, color)
        }
        twinops::cli::ErrorFormat::Json => render::diagnostics_json(&mut stderr, &sorted, &sources),
    };
    if rendered.is_err() && status == ExitStatus::Success {
        return ExitStatus::OperationalError.into();
    }
    status.into()
}

/// Log lines to stderr: `TWINOPS_LOG` (a tracing filter) if set, else by
/// `-v` count: warnings, then info, debug and trace for every crate.
fn start_logging(verbose: u8) {
    let filter = std::env::var("TWINOPS_LOG")
        .ok()
        .and_then(|text| tracing_subscriber::EnvFilter::try_new(text).ok())
        .unwrap_or_else(|| {
            tracing_subscriber::EnvFilter::new(match verbose {
                0 => "warn",
                1 => "info",
                2 => "debug",
                _ => "trace",
            })
        });
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!no_color && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
}
