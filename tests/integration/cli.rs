//! The binary on the repository's own example, as a newcomer runs it: the
//! README's commands, output formats, exit codes and colour rules.

use std::path::Path;
use std::process::{Command, Output};

fn twinops_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twinops"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run twinops")
}

fn twinops(args: &[&str]) -> Output {
    twinops_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A scratch project with one policy file.
fn project(name: &str, policy: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("twinops-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("twinops.toml"), "policies = \"policies\"\n").unwrap();
    std::fs::write(dir.join("policies/p.yaml"), policy).unwrap();
    dir
}

const BROKEN: &str = "apiVersion: twinops/v1\nkind: Policy\nname: broken\npriority: 1\ntarget: \"*\"\nmodule: azureiotsecurity\ndesired:\n  ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration:\n    eventPriorityLogin: { value: Hihg }\n";

#[test]
fn validate_accepts_the_example_policies_and_fleet() {
    let output = twinops(&["validate"]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "Valid: 5 policies; 300 twins of 300 devices targeted, 5 distinct configurations."
    );
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
}

#[test]
fn compile_names_the_policy_and_line_behind_each_leaf_of_a_device() {
    let output = twinops(&["compile", "--device", "sensor-ams1-0042"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let exception = stdout
        .lines()
        .find(|line| line.contains("exception-sensor-ams1-0042 (policies/exceptions.yaml:"))
        .unwrap_or_else(|| panic!("no leaf set by the exception:\n{stdout}"));
    assert!(exception.contains("overrides"), "{exception}");
    assert!(stdout.contains("default of schema azureiotsecurity"));
    assert!(
        stdout.ends_with("Compiled 1 twin into 1 distinct configuration.\n"),
        "{stdout}"
    );
}

#[test]
fn compile_json_is_versioned_and_lists_every_targeted_twin() {
    let output = twinops(&["compile", "--format", "json"]);
    assert_eq!(output.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["format_version"], 1);
    let twins = json["twins"].as_array().unwrap();
    assert_eq!(twins.len(), 300);
    let missing = twins.iter().filter(|t| t["moduleMissing"] == true).count();
    assert_eq!(
        missing, 5,
        "the demo fleet has five devices without the module"
    );
    let configurations = json["configurations"].as_array().unwrap();
    for twin in twins {
        let index = twin["configuration"].as_u64().unwrap();
        assert!(index < configurations.len() as u64);
    }
    let first = &configurations[0]["provenance"];
    assert!(
        first
            .as_object()
            .unwrap()
            .values()
            .all(|origin| origin.get("policy").is_some() || origin.get("default").is_some())
    );
}

#[test]
fn invalid_policies_exit_3_with_located_diagnostics_in_every_format() {
    let dir = project("invalid", BROKEN);
    let human = twinops_in(&dir, &["validate"]);
    assert_eq!(human.status.code(), Some(3));
    let stderr = text(&human.stderr);
    assert!(stderr.contains("policies/p.yaml:9:34"), "{stderr}");
    assert!(stderr.contains("did you mean `High`?"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "NO_COLOR means no escape codes:\n{stderr}"
    );

    let json = twinops_in(
        &dir,
        &["--error-format", "json", "validate", "--format", "json"],
    );
    assert_eq!(json.status.code(), Some(3));
    let result: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(result["valid"], false);
    let diagnostic = &result["diagnostics"][0];
    assert_eq!(diagnostic["code"], "twinops::schema::value_not_allowed");
    assert_eq!(diagnostic["location"]["line"], 9);
    assert_eq!(diagnostic["location"]["column"], 34);
    let on_stderr: serde_json::Value = serde_json::from_slice(&json.stderr).unwrap();
    assert_eq!(on_stderr["diagnostics"][0], *diagnostic);

    let sarif = twinops_in(&dir, &["validate", "--format", "sarif"]);
    assert_eq!(sarif.status.code(), Some(3));
    let log: serde_json::Value = serde_json::from_slice(&sarif.stdout).unwrap();
    assert_eq!(log["version"], "2.1.0");
    let result = &log["runs"][0]["results"][0];
    assert_eq!(result["level"], "error");
    let region = &result["locations"][0]["physicalLocation"];
    assert_eq!(region["artifactLocation"]["uri"], "policies/p.yaml");
    assert_eq!(region["region"]["startLine"], 9);
    assert_eq!(region["region"]["startColumn"], 34);
    assert_eq!(region["region"]["endColumn"], 38);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn operational_errors_exit_1() {
    let dir = std::env::temp_dir().join(format!("twinops-cli-none-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = twinops_in(&dir, &["validate"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("no `twinops.toml`"));

    let missing_fleet = twinops(&["compile", "--fleet", "does/not/exist.ndjson"]);
    assert_eq!(missing_fleet.status.code(), Some(1));
    assert!(
        text(&missing_fleet.stderr).contains("cannot read fleet snapshot `does/not/exist.ndjson`")
    );

    let unknown_device = twinops(&["compile", "--device", "nope"]);
    assert_eq!(unknown_device.status.code(), Some(1));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn schema_prints_bundled_schemas_and_suggests_names() {
    let output = twinops(&["schema", "azureiotsecurity"]);
    assert_eq!(output.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(schema["x-twinops"]["module"], "azureiotsecurity");
    let listing = text(&twinops(&["schema"]).stdout);
    assert!(listing.contains("DefenderIotMicroAgent"));
    let typo = twinops(&["schema", "azureiotsecurty"]);
    assert_eq!(typo.status.code(), Some(1));
    assert!(text(&typo.stderr).contains("did you mean `azureiotsecurity`?"));
}
