//! The invalid-input corpus: `tests/fixtures/invalid/<stage>/<defect>.*`, one
//! defect per file, each run through the real command and snapshotted as
//! colourless text and as JSON, so that every snapshot pins the exact line
//! and column a user sees.
//!
//! Stages: `load` (YAML and the policy format), `validate` (meaning of one
//! policy), `compile` (merged per-device values, against `_fleet.ndjson`),
//! `limits` (IoT Hub twin limits, with unschematized properties allowed),
//! `snapshot` (bad fleet lines, with `_policy.yaml`), `config` (bad
//! `twinops.toml`). Files starting with `_` are support files.

use std::path::{Path, PathBuf};

use twinops::cli::{Cli, ColorChoice, Command, ErrorFormat, ValidateFormat};
use twinops::command;
use twinops::config::{Config, ConfigFailure};
use twinops::diag::{Diagnostics, SourceMap};
use twinops::exit::ExitStatus;
use twinops::render;
use twinops::validate::Unschematized;

/// What one case produced: its exit status and rendered diagnostics.
struct Outcome {
    status: ExitStatus,
    sources: SourceMap,
    diags: Diagnostics,
}

impl Outcome {
    fn snapshot(self) -> String {
        let sorted = self.diags.into_sorted();
        let mut human = Vec::new();
        render::diagnostics_human(&mut human, &sorted, &self.sources, false).unwrap();
        let mut json = Vec::new();
        render::diagnostics_json(&mut json, &sorted, &self.sources).unwrap();
        format!(
            "exit: {}\n---- human ----\n{}---- json ----\n{}",
            self.status.code(),
            String::from_utf8(human).unwrap(),
            String::from_utf8(json).unwrap()
        )
    }
}

fn validate(config: &Config) -> Outcome {
    let mut sources = SourceMap::new();
    let mut diags = Diagnostics::new();
    let command = Command::Validate {
        fleet: None,
        no_fleet: config.fleet.is_none(),
        format: ValidateFormat::Human,
    };
    let mut io = command::Io {
        out: &mut std::io::sink(),
        err: &mut std::io::sink(),
        input: &mut std::io::empty(),
    };
    let status = command::run(&command, config, &mut sources, &mut diags, &mut io).unwrap_or_else(
        |failure| {
            diags.push(*failure);
            ExitStatus::OperationalError
        },
    );
    Outcome {
        status,
        sources,
        diags,
    }
}

fn config(
    stage: &Path,
    policies: PathBuf,
    fleet: Option<PathBuf>,
    unschematized: Unschematized,
) -> Config {
    Config {
        policies,
        unschematized,
        fleet,
        ..Config::defaults(stage)
    }
}

fn is_case(path: &Path) -> bool {
    !path
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with('_'))
}

fn run_case(path: &Path) -> Outcome {
    let stage = path.parent().unwrap();
    let stage_name = stage.file_name().unwrap().to_str().unwrap();
    let support = |name: &str| Some(stage.join(name)).filter(|p| p.exists());
    match stage_name {
        "load" | "validate" => validate(&config(
            stage,
            path.to_path_buf(),
            None,
            Unschematized::Deny,
        )),
        "compile" => validate(&config(
            stage,
            path.to_path_buf(),
            support("_fleet.ndjson"),
            Unschematized::Deny,
        )),
        "limits" => validate(&config(
            stage,
            path.to_path_buf(),
            support("_fleet.ndjson"),
            Unschematized::Allow,
        )),
        "snapshot" => validate(&config(
            stage,
            stage.join("_policy.yaml"),
            Some(path.to_path_buf()),
            Unschematized::Deny,
        )),
        "config" => {
            let cli = Cli {
                config: Some(path.to_path_buf()),
                error_format: ErrorFormat::Human,
                color: ColorChoice::Never,
                env: "local".to_owned(),
                verbose: 0,
                rev: None,
                command: Command::Schema { name: None },
            };
            match Config::resolve(&cli, stage) {
                Ok(config) => validate(&config),
                Err(ConfigFailure::Invalid(invalid)) => {
                    let (diagnostic, sources) = *invalid;
                    let mut diags = Diagnostics::new();
                    diags.push(diagnostic);
                    Outcome {
                        status: ExitStatus::InvalidPolicies,
                        sources,
                        diags,
                    }
                }
                Err(ConfigFailure::Operational(failure)) => {
                    let mut diags = Diagnostics::new();
                    diags.push(*failure);
                    Outcome {
                        status: ExitStatus::OperationalError,
                        sources: SourceMap::new(),
                        diags,
                    }
                }
            }
        }
        other => panic!("unknown corpus stage `{other}`"),
    }
}

fn check(path: &Path) {
    if !is_case(path) {
        return;
    }
    let outcome = run_case(path);
    assert_ne!(
        outcome.status,
        ExitStatus::Success,
        "{} was accepted",
        path.display()
    );
    assert!(
        outcome.diags.has_errors(),
        "{} gave no error",
        path.display()
    );
    let stage = path
        .parent()
        .and_then(Path::file_name)
        .unwrap()
        .to_str()
        .unwrap();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots/invalid");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(stage, outcome.snapshot()));
}

#[test]
fn every_yaml_defect_is_reported_where_it_is() {
    insta::glob!(
        "../fixtures/invalid",
        "{load,validate,compile,limits}/*.yaml",
        check
    );
}

#[test]
fn every_bad_snapshot_line_is_reported() {
    insta::glob!("../fixtures/invalid", "snapshot/*.ndjson", check);
}

#[test]
fn every_bad_project_file_is_reported() {
    insta::glob!("../fixtures/invalid", "config/*.toml", check);
}

#[test]
fn the_corpus_has_at_least_forty_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let count: usize = std::fs::read_dir(&root)
        .unwrap()
        .map(|stage| {
            std::fs::read_dir(stage.unwrap().path())
                .unwrap()
                .filter(|entry| is_case(&entry.as_ref().unwrap().path()))
                .count()
        })
        .sum();
    assert!(count >= 40, "only {count} invalid cases");
}
