//! Fixture fleets: `tests/fixtures/fleets/<scenario>/` holds a one-line
//! `README.md` saying what it proves, `policies/`, `live.ndjson` (a fleet
//! snapshot) and optionally a `twinops.toml`. Each is validated, compiled and
//! planned (human, JSON and Markdown) through the real commands; every
//! output is a reviewed snapshot.

use std::path::Path;

use twinops::cli::{
    Cli, ColorChoice, Command, ErrorFormat, OutputFormat, PlanFormat, ValidateFormat,
};
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
        env: "local".to_owned(),
        verbose: 0,
        rev: None,
        command: Command::Schema { name: None },
    };
    let mut config = match Config::resolve(&cli, dir) {
        Ok(config) if project.exists() => config,
        _ => Config::defaults(dir),
    };
    config.fleet = Some(dir.join("live.ndjson"));
    config
}

fn run(config: &Config, command: &Command) -> (ExitStatus, String, String) {
    let mut sources = SourceMap::new();
    let mut diags = Diagnostics::new();
    let mut out = Vec::new();
    let mut log = Vec::new();
    let mut io = command::Io {
        out: &mut out,
        err: &mut log,
        input: &mut std::io::empty(),
    };
    let status = command::run(command, config, &mut sources, &mut diags, &mut io).unwrap_or_else(
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
        settings.add_filter(
            r#""policySet": "[0-9a-f]{16}""#,
            r#""policySet": "[digest]""#,
        );
        settings.add_filter(
            r#""checksum": "[0-9a-f]{64}""#,
            r#""checksum": "[checksum]""#,
        );
        let plan = |format: PlanFormat| {
            let (status, text, log) = run(
                &config,
                &Command::Plan {
                    fleet: config.fleet.clone(),
                    out: None,
                    base: None,
                    format,
                    detailed_exitcode: true,
                },
            );
            assert!(
                matches!(status, ExitStatus::Success | ExitStatus::Changes),
                "{log}"
            );
            text
        };
        let (human, json, markdown) = (
            plan(PlanFormat::Human),
            plan(PlanFormat::Json),
            plan(PlanFormat::Markdown),
        );
        settings.bind(|| {
            insta::assert_snapshot!(
                "compile",
                format!("{validated}{warnings}---- compile ----\n{compiled}")
            );
            insta::assert_snapshot!("plan", human);
            insta::assert_snapshot!("plan-markdown", markdown);
            insta::assert_snapshot!("plan-json", json);
        });
    });
}
