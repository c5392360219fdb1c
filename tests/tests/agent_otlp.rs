//! End to end: the real agent binary, its eBPF connect probe, and a real OTLP
//! receiver. Connects from a child process (ok, ECONNREFUSED, ENOENT) must
//! arrive as spans and counters over both OTLP protocols, and on /metrics.
use std::{process::Command, time::Duration};

use tokenwatch_tests::{
    agent_proc::{ebpf_running_or_skip, test_bin, Agent},
    otlp::{Receiver, Span},
};

const WAIT: Duration = Duration::from_secs(20);

/// Runs `connect-once PATH`; returns (pid, errno).
fn connect_once(path: &std::path::Path) -> (u32, i32) {
    let out = Command::new(test_bin("connect-once"))
        .arg(path)
        .output()
        .expect("connect-once");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |k: &str| -> i64 {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .expect(k)
    };
    (field("pid=") as u32, field("errno=") as i32)
}

/// The scenarios run one at a time: a child forked by one of them holds the
/// other's listener (until its exec closes it), which would let a connect to
/// a "stale" socket succeed.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn scenario(protocol: &str) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("token-agent.sock");
    let rx = Receiver::start().await.unwrap();
    let endpoint = if protocol == "grpc" {
        rx.grpc_endpoint()
    } else {
        rx.http_endpoint()
    };
    let config = format!(
        "[token_agent]\nsocket = {:?}\n[export]\notlp_endpoint = {endpoint:?}\notlp_protocol = {protocol:?}\ninterval = \"1s\"\n[state]\ndir = {:?}\n",
        socket.display().to_string(),
        dir.path().join("state").display().to_string()
    );
    let agent = Agent::start(dir.path(), &config, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]).unwrap();
    if !ebpf_running_or_skip(&agent.status().unwrap()) {
        return;
    }

    // 1. a listener: the connect succeeds
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let (ok_pid, errno) = connect_once(&socket);
    assert_eq!(errno, 0);
    // an unrelated socket in the same folder is never reported
    let other = dir.path().join("other.sock");
    let _other_listener = std::os::unix::net::UnixListener::bind(&other).unwrap();
    let (other_pid, _) = connect_once(&other);
    // 2. the listener is gone but its file stays: ECONNREFUSED
    drop(listener);
    let (refused_pid, errno) = connect_once(&socket);
    assert_eq!(errno, libc::ECONNREFUSED);
    // 3. no file at all: ENOENT
    std::fs::remove_file(&socket).unwrap();
    let (missing_pid, errno) = connect_once(&socket);
    assert_eq!(errno, libc::ENOENT);

    let by_pid =
        |pid: u32| move |s: &Span| s.attributes.get("process.pid") == Some(&pid.to_string());
    let ok = rx
        .wait_span("span of the successful connect", WAIT, by_pid(ok_pid))
        .await
        .unwrap();
    let refused = rx
        .wait_span("span of the refused connect", WAIT, by_pid(refused_pid))
        .await
        .unwrap();
    let missing = rx
        .wait_span(
            "span of the missing-socket connect",
            WAIT,
            by_pid(missing_pid),
        )
        .await
        .unwrap();

    for s in [&ok, &refused, &missing] {
        assert_eq!(s.name, "token_agent.connect");
        assert_eq!(s.kind, 3, "CLIENT");
        assert_eq!(s.attributes["process.command"], "connect-once");
        assert_eq!(s.attributes["process.executable.name"], "connect-once");
        assert_eq!(s.attributes["network.transport"], "unix");
        assert_eq!(s.attributes["server.address"], socket.display().to_string());
        assert_eq!(s.resource["service.name"], "tokenwatch");
        assert!(s.resource.contains_key("host.name"));
        assert!(s.end_unix_nano >= s.start_unix_nano);
    }
    assert!(!ok.attributes.contains_key("error.type"));
    assert_ne!(ok.status.0, 2);
    assert_eq!(refused.attributes["error.type"], "ECONNREFUSED");
    assert_eq!(refused.status.0, 2, "error status");
    assert_eq!(missing.attributes["error.type"], "ENOENT");
    assert_eq!(missing.status.0, 2, "error status");

    for errno in ["ENOENT", "ECONNREFUSED"] {
        let p = rx
            .wait_point(
                &format!("token_agent.connect.errors{{errno={errno}}}"),
                WAIT,
                |p| {
                    p.metric == "token_agent.connect.errors"
                        && p.attributes.get("errno").map(String::as_str) == Some(errno)
                },
            )
            .await
            .unwrap();
        assert_eq!(p.value, 1.0, "{p:?}");
        assert_eq!(p.attributes["process"], "connect-once");
    }
    assert!(
        rx.spans()
            .iter()
            .all(|s| s.attributes.get("process.pid") != Some(&other_pid.to_string())),
        "a connect to an unrelated socket was reported"
    );

    let metrics = agent.get("/metrics").unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("token_agent_connect_errors_total{") && l.contains("errno=\"ENOENT\"")
        })
        .unwrap_or_else(|| panic!("no ENOENT counter in /metrics:\n{metrics}"));
    assert!(line.ends_with(" 1"), "{line}");
    let status = agent.status().unwrap();
    assert_eq!(status["level"], "WARN", "{status}");
    assert_eq!(status["token_agent"]["reachable"], false);

    let code = agent.stop(Duration::from_secs(5)).unwrap();
    assert!(code.success(), "clean stop: {code}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connects_arrive_over_otlp_grpc() {
    scenario("grpc").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connects_arrive_over_otlp_http_protobuf() {
    scenario("http/protobuf").await;
}
