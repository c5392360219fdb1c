//! The agent binary's contract for operators: bad config is one line and exit 2.
use std::process::Command;

use tokenwatch_tests::agent_proc::agent_bin;

fn run_with(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(agent_bin())
        .arg("run")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_key_exits_2_naming_it_in_one_line() {
    let (code, err) = run_with("[alert]\nwarn_aftr = \"2m\"\n");
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("warn_aftr"), "{err}");
}

#[test]
fn bad_duration_exits_2() {
    let (code, err) = run_with("[alert]\ncrit_after = \"soon\"\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("soon"), "{err}");
}

#[test]
fn missing_config_file_exits_2() {
    let out = Command::new(agent_bin())
        .args(["run", "-c", "/nonexistent/tokenwatch.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/tokenwatch.toml"));
}

#[test]
fn check_against_no_agent_is_unknown() {
    let out = Command::new(agent_bin())
        .args(["check", "--url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("UNKNOWN: "));
}
