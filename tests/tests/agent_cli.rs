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

/// `tokenwatch ARGS`: (exit code, stdout).
fn tokenwatch(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(agent_bin()).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Serves one fixed `/status` document over HTTP/1.1 to every request; the base URL.
fn fake_agent(status: serde_json::Value) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let body = status.to_string();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}

/// The RFC 3339 time `secs_ago` seconds ago.
fn rfc3339_ago(secs_ago: u64) -> String {
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(secs_ago);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn one_client_status(level: &str, generated_at: &str) -> serde_json::Value {
    serde_json::json!({
        "level": level, "summary": "1 client(s) hold fresh tokens, 1 observed", "reasons": [],
        "generated_at": generated_at,
        "token_agent": {"socket": "/s", "reachable": true, "calls_in_window": 1, "errors_in_window": {}},
        "clients": [{"pid": 4242, "process": "compute-node", "client": "yc-compute-node.service",
                     "unit": "yc-compute-node.service", "last_success": "2026-11-25T13:00:00.000Z",
                     "expires_at": "2026-11-25T23:00:00.000Z", "refresh_at": "2026-11-25T14:00:00.000Z",
                     "overdue_seconds": 0.0, "level": level, "calls": {"OK": 1}}],
        "sources": {"ebpf": {"state": "running", "detail": ""}}
    })
}

/// eBPF off and both logs' directories missing: the agent runs but observes
/// nothing; `check` must not call that OK.
#[test]
fn check_with_no_data_is_unknown_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let config = format!(
        "[token_agent]\nsocket = {:?}\naccess_log = {:?}\napp_log = {:?}\n[ebpf]\nenabled = false\n[state]\ndir = {:?}\n",
        missing.join("socket"),
        missing.join("access.log"),
        missing.join("token-agent.log"),
        dir.path().join("state"),
    );
    let agent = tokenwatch_tests::agent_proc::Agent::start(dir.path(), &config, &[]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // the log sources wait for their directories (state "starting", the reason in "detail")
    while !agent.status().unwrap()["sources"]["access_log"]["detail"].as_str().unwrap().contains("does not exist") {
        assert!(std::time::Instant::now() < deadline, "access_log: {}", agent.status().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (code, out) = tokenwatch(&["check", "--url", &agent.base]);
    assert_eq!(code, Some(3), "{out}\nagent log:\n{}", agent.log_text());
    assert!(out.starts_with("UNKNOWN: no data: no token-agent client observed yet; sources: "), "{out}");
    assert!(out.contains("ebpf disabled") && out.contains("missing/access.log: directory does not exist"), "{out}");
    assert_eq!(out.trim_end().lines().count(), 1, "{out}");
}

/// The agent answers, but its state task is stuck: `generated_at` stops moving.
#[test]
fn check_on_a_stale_status_is_unknown() {
    let (code, out) = tokenwatch(&["check", "--url", &fake_agent(one_client_status("OK", &rfc3339_ago(0)))]);
    assert_eq!((code, out.as_str()), (Some(0), "OK: 1 client(s) hold fresh tokens, 1 observed\n"));
    let (code, out) = tokenwatch(&["check", "--url", &fake_agent(one_client_status("OK", &rfc3339_ago(600)))]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.starts_with("UNKNOWN: stale status: generated 10m"), "{out}");
    // WARN with no client at all still pages
    let mut warn = one_client_status("WARN", &rfc3339_ago(0));
    warn["clients"] = serde_json::json!([]);
    warn["summary"] = serde_json::json!("token-agent logged 1 error(s) in 5m");
    assert_eq!(tokenwatch(&["check", "--url", &fake_agent(warn)]).0, Some(1));
}

#[test]
fn status_table_has_expires_at() {
    let (code, out) = tokenwatch(&["status", "--url", &fake_agent(one_client_status("OK", &rfc3339_ago(0)))]);
    assert_eq!(code, Some(0), "{out}");
    let header = out.lines().find(|l| l.starts_with("PID")).unwrap_or_else(|| panic!("{out}"));
    for col in ["LAST REFRESH", "REFRESH AT", "EXPIRES AT", "OVERDUE", "LEVEL"] {
        assert!(header.contains(col), "{col}: {out}");
    }
    let row = out.lines().find(|l| l.starts_with("4242")).unwrap_or_else(|| panic!("{out}"));
    let at = header.find("EXPIRES AT").unwrap();
    assert_eq!(row.get(at..at + 20), Some("2026-11-25T23:00:00Z"), "{out}");
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
