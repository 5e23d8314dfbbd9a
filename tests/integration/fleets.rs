//! Fixture fleets: `tests/fixtures/fleets/<scenario>/` holds a one-line
//! `README.md` saying what it proves, `policies/`, `live.ndjson` (a fleet
//! snapshot) and optionally a `twinops.toml`. Each is validated and compiled
//! through the real commands; the compiled output is a reviewed snapshot.

use std::path::Path;

use twinops::cli::{Cli, ColorChoice, Command, ErrorFormat, OutputFormat, ValidateFormat};
use twinops::command;
use twinops::config::Config;
use twinops::diag::{Diagnostics, SourceMap};
use twinops::exit::ExitStatus;
use twinops::render;

fn scenario_config(dir: &Path) -> Config {
    let project = dir.join("twinops.toml");
    let cli = Cli {
        config: project.exists().then(|| project.clone()),
        error_format: ErrorFormat::Human,
        color: ColorChoice::Never,
        command: Command::Schema { name: None },
    };
    let mut config = match Config::resolve(&cli, dir) {
        Ok(config) if project.exists() => config,
        _ => Config {
            root: dir.to_path_buf(),
            policies: dir.join("policies"),
            schemas: None,
            unschematized: twinops::validate::Unschematized::Deny,
            fleet: None,
            error_format: ErrorFormat::Human,
            color_stderr: false,
            color_stdout: false,
        },
    };
    config.fleet = Some(dir.join("live.ndjson"));
    config
}

fn run(config: &Config, command: &Command) -> (ExitStatus, String, String) {
    let mut sources = SourceMap::new();
    let mut diags = Diagnostics::new();
    let mut out = Vec::new();
    let status = command::run(command, config, &mut sources, &mut diags, &mut out).unwrap_or_else(
        |failure| {
            diags.push(*failure);
            ExitStatus::OperationalError
        },
    );
    let mut err = Vec::new();
    render::diagnostics_human(&mut err, &diags.into_sorted(), &sources, false).unwrap();
    (
        status,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn every_fixture_fleet_compiles_as_reviewed() {
    insta::glob!("../fixtures/fleets", "*/README.md", |readme| {
        let dir = readme.parent().unwrap();
        let what = std::fs::read_to_string(readme).unwrap();
        let config = scenario_config(dir);
        let (status, validated, warnings) = run(
            &config,
            &Command::Validate {
                fleet: None,
                no_fleet: false,
                format: ValidateFormat::Human,
            },
        );
        assert_eq!(status, ExitStatus::Success, "{}: {warnings}", dir.display());
        let (status, compiled, _) = run(
            &config,
            &Command::Compile {
                fleet: None,
                device: None,
                format: OutputFormat::Human,
            },
        );
        assert_eq!(status, ExitStatus::Success);
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path("../snapshots/fleets");
        settings.set_prepend_module_to_snapshot(false);
        settings.set_description(what.trim());
        settings.bind(|| {
            insta::assert_snapshot!(
                "compile",
                format!("{validated}{warnings}---- compile ----\n{compiled}")
            );
        });
    });
}
