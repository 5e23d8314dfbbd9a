//! The binary on the repository's own example: the README's commands work.

use std::process::Command;

fn twinops(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_twinops"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run twinops")
}

#[test]
fn validate_accepts_the_example_policies_and_fleet() {
    let output = twinops(&["validate"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("Valid: 5 policies;"), "{stdout}");
}
