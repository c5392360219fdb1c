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

/// `tokenwatch parse` with `args`, `stdin` fed in; (exit code, stdout, stderr).
/// An empty config keeps a host's /etc/tokenwatch/config.toml out of it.
fn parse(args: &[&str], stdin: &[u8]) -> (Option<i32>, String, String) {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("empty.toml");
    std::fs::write(&config, "").unwrap();
    let mut child = Command::new(agent_bin())
        .arg("parse")
        .arg("-c")
        .arg(&config)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn parse_reads_stdin_or_a_file_and_exits_0_when_all_parsed() {
    let log = "time=1795615200 status=OK method=GetToken\n\ntime=1795615201 status=14\n";
    let want = "{\"time\":\"2026-11-25T14:00:00.000Z\",\"method\":\"GetToken\",\"status\":\"OK\"}\n\
                {\"time\":\"2026-11-25T14:00:01.000Z\",\"status\":\"UNAVAILABLE\"}\n";
    for args in [&[][..], &["-"], &["--format", "logfmt", "-"]] {
        assert_eq!(parse(args, log.as_bytes()), (Some(0), want.to_string(), String::new()), "{args:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("access.log");
    std::fs::write(&file, log).unwrap();
    assert_eq!(parse(&[file.to_str().unwrap()], b"ignored"), (Some(0), want.to_string(), String::new()));
    // the format is the one asked for: these lines are no JSON
    let (code, out, err) = parse(&["--format", "json", "-"], log.as_bytes());
    assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
}

#[test]
fn parse_reports_what_the_agent_would_skip_and_cuts_long_lines_like_it() {
    let mut log = b"method=GetToken pid=7 token=t1.secret\n".to_vec();
    log.extend(b"time=1795615200 status=OK error=");
    log.extend(std::iter::repeat_n(b'x', 70_000));
    log.extend(b"\nstatus=200 time=1795615200\n");
    let (code, out, err) = parse(&[], &log);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err,
        "line 1: no gRPC status: not a call (the agent skips it)\n\
         line 2: cut: 70032 bytes, the first 65536 parsed (as the agent does)\n\
         line 3: no gRPC status: not a call (the agent skips it)\n",
        "an HTTP status is no gRPC status"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out:.200}");
    assert!(lines[0].starts_with("{\"time\":\"2026-11-25T14:00:00.000Z\",\"status\":\"OK\",\"error\":\"xxx"), "{:.200}", lines[0]);
    assert!(!err.contains("secret") && !out.contains("secret"));
}

#[test]
fn parse_of_a_missing_file_or_a_bad_format_is_one_clear_line_and_exit_2() {
    let (code, out, err) = parse(&["/nonexistent/access.log"], b"");
    assert_eq!((code, out.as_str()), (Some(2), ""));
    assert!(err.starts_with("tokenwatch: cannot read /nonexistent/access.log: ") && err.lines().count() == 1, "{err}");
    let (code, _, err) = parse(&["--format", "xml", "-"], b"");
    assert_eq!(code, Some(2));
    assert!(err.contains("\"xml\"") && err.contains("logfmt") && err.lines().count() == 1, "{err}");
}
