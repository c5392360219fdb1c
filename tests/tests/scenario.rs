//! The on-call alert end to end (issue #5): the simulator with short token
//! lifetimes (100 s → a refresh every 10 s), thresholds scaled down, the agent
//! binary, and OTLP through a real collector (rotel) into a test receiver.
//! healthy → unavailable (WARN, then CRIT when the refresh is 8 s late) → down
//! → back to OK; `check` exit codes at every step; restart safety; the token
//! never leaves the agent.
use std::{
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use tokenwatch_tests::{
    agent_proc::{agent_bin, Agent},
    otlp::Receiver,
    rotel::Rotel,
    sim::{Mode, SimComputeNode, SimTokenAgent},
};

const TOKEN_SHAPE: &str = r"t1\.[A-Za-z0-9_-]+=*\.[A-Za-z0-9_-]{86}";

fn config(dir: &std::path::Path, otlp: &str) -> String {
    let p = |n: &str| format!("{:?}", dir.join(n).display().to_string());
    format!(
        "[token_agent]\nsocket = {}\naccess_log = {}\napp_log = {}\n\
         [alert]\nwarn_after = \"3s\"\ncrit_after = \"8s\"\nerror_window = \"6s\"\nassumed_lifetime = \"100s\"\n\
         [export]\notlp_endpoint = {otlp:?}\notlp_protocol = \"grpc\"\ninterval = \"1s\"\n\
         [state]\ndir = {}\n",
        p("token-agent.sock"),
        p("access.log"),
        p("token-agent.log"),
        p("state")
    )
}

/// Polls /status until `pred` holds (the agent re-evaluates twice a second).
fn wait_status(agent: &Agent, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = agent.status() {
            if pred(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("{what}: not reached within {timeout:?}; last status: {s:#}\nagent log:\n{}", agent.log_text());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check(agent: &Agent) -> (i32, String) {
    let out = Command::new(agent_bin()).args(["check", "--url", &agent.base]).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn client(s: &Value, pid: u32) -> Option<&Value> {
    s["clients"].as_array()?.iter().find(|c| c["pid"] == pid)
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_unavailable_down_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await.unwrap();
    let rotel = Rotel::start(&rx.grpc_endpoint()).unwrap();
    let mut ta = SimTokenAgent::spawn(
        &dir.path().join("token-agent.sock"),
        &dir.path().join("access.log"),
        &dir.path().join("token-agent.log"),
        Duration::from_secs(100),
    )
    .unwrap();
    let cfg = config(dir.path(), &rotel.grpc_endpoint);
    let mut agent = Agent::start(dir.path(), &cfg, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]).unwrap();
    let node = SimComputeNode::spawn(ta.socket(), 0.1).unwrap();
    let pid = node.pid();

    // healthy: the client's token is known and fresh
    let s = wait_status(&agent, "first token seen", Duration::from_secs(30), |s| {
        client(s, pid).is_some_and(|c| c["last_success"].is_string()) && s["level"] == "OK"
    });
    assert_eq!(check(&agent).0, 0, "{s:#}");
    let first = client(&s, pid).unwrap()["last_success"].clone();
    // a refresh 10 s later moves last_success and keeps OK
    wait_status(&agent, "a refresh", Duration::from_secs(20), |s| {
        client(s, pid).is_some_and(|c| c["last_success"] != first) && s["level"] == "OK"
    });

    // restart safety: a restarted agent knows the refresh at once
    let before = client(&agent.status().unwrap(), pid).unwrap()["last_success"].clone();
    assert!(agent.stop(Duration::from_secs(5)).unwrap().success());
    agent = Agent::start(dir.path(), &cfg, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]).unwrap();
    // from the persisted facts, not from re-reading the access log
    assert!(agent.log_text().contains("restored token facts of 1 running client(s)"), "{}", agent.log_text());
    let s = agent.status().unwrap();
    let c = client(&s, pid).unwrap_or_else(|| panic!("client forgotten after restart: {s:#}"));
    assert!(c["last_success"] == before || c["last_success"].as_str() > before.as_str(), "{s:#}");

    // token-agent answers UNAVAILABLE: WARN on errors, then CRIT when 8 s late
    ta.set_mode(Mode::Unavailable).unwrap();
    let s = wait_status(&agent, "WARN on UNAVAILABLE", Duration::from_secs(20), |s| {
        s["level"] != "OK" && s["token_agent"]["errors_in_window"]["UNAVAILABLE"].as_u64() > Some(0)
    });
    assert!(s["reasons"].to_string().contains("do not restart"), "{s:#}");
    let s = wait_status(&agent, "CRIT when 8 s late", Duration::from_secs(30), |s| s["level"] == "CRIT");
    assert!(client(&s, pid).unwrap()["overdue_seconds"].as_f64().unwrap() >= 8.0, "{s:#}");
    let (code, line) = check(&agent);
    assert_eq!(code, 2, "{line}");
    assert!(line.starts_with("CRIT: "), "{line}");

    // token-agent down: still CRIT
    ta.set_mode(Mode::Down).unwrap();
    node.wait_for(Duration::from_secs(15), |c| c.status != "OK" && c.error.as_deref().is_some_and(|e| e.contains("os error 2")))
        .unwrap();
    assert_eq!(check(&agent).0, 2);

    // back: the client refreshes, errors age out of the window → OK
    ta.set_mode(Mode::Ok).unwrap();
    wait_status(&agent, "recovery", Duration::from_secs(30), |s| s["level"] == "OK");
    assert_eq!(check(&agent).0, 0);

    // the same story reached the collector
    let levels: Vec<f64> = rx
        .points()
        .iter()
        .filter(|p| p.metric == "tokenwatch.alert.level" && !p.attributes.contains_key("client"))
        .map(|p| p.value)
        .collect();
    for want in [0.0, 2.0] {
        let names: std::collections::BTreeSet<String> = rx.points().iter().map(|p| p.metric.clone()).collect();
        assert!(levels.contains(&want), "host level {want} never exported through rotel: {levels:?}; metrics: {names:?}; spans: {}", rx.spans().len());
    }
    rx.wait_point("overdue > 3 s", Duration::from_secs(5), |p| p.metric == "iam_token.refresh.overdue" && p.value > 3.0)
        .await
        .unwrap();
    rx.wait_point("UNAVAILABLE calls", Duration::from_secs(5), |p| {
        p.metric == "token_agent.calls" && p.attributes.get("status").map(String::as_str) == Some("UNAVAILABLE")
    })
    .await
    .unwrap();

    // the client's calls as the eBPF probe decoded them: CLIENT spans with
    // the method, status and expires_at, and the duration histogram
    let method = "yandex.cloud.priv.iam.v1.TokenAgent/GetToken";
    let span = rx
        .wait_span("an eBPF CLIENT span of a GetToken call", Duration::from_secs(10), |s| {
            s.kind == 3 && s.attributes.get("tokenwatch.source").map(String::as_str) == Some("ebpf")
                && s.attributes.get("rpc.response.status_code").map(String::as_str) == Some("OK")
                && s.attributes.get("process.pid") == Some(&pid.to_string())
        })
        .await
        .unwrap();
    assert_eq!(span.name, method);
    assert_eq!(span.attributes["rpc.system.name"], "grpc");
    assert!(span.attributes["iam_token.expires_at"].ends_with('Z'), "{span:?}");
    rx.wait_point("rpc.client.call.duration", Duration::from_secs(10), |p| {
        p.metric == "rpc.client.call.duration" && p.attributes.get("rpc.method").map(String::as_str) == Some(method)
    })
    .await
    .unwrap();
    // token-agent's own account of a call, as a SERVER span
    rx.wait_span("an access-log SERVER span", Duration::from_secs(10), |s| {
        s.kind == 2 && s.attributes.get("tokenwatch.source").map(String::as_str) == Some("access_log")
    })
    .await
    .unwrap();

    // the token is nowhere
    let re = regex::Regex::new(TOKEN_SHAPE).unwrap();
    let raw = String::from_utf8_lossy(&rx.raw()).into_owned();
    assert!(!re.is_match(&raw), "a token reached the collector");
    assert!(!re.is_match(&agent.log_text()), "a token in the agent's log");
    assert!(!re.is_match(&agent.get("/metrics").unwrap()));
    assert!(!re.is_match(&agent.get("/status").unwrap()));
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The backend goes away for a while: the agent keeps evaluating with bounded
/// memory, and export resumes when the collector is back.
#[tokio::test(flavor = "multi_thread")]
async fn collector_outage_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await.unwrap();
    let mut rotel = Rotel::start(&rx.grpc_endpoint()).unwrap();
    let ta = SimTokenAgent::spawn(
        &dir.path().join("token-agent.sock"),
        &dir.path().join("access.log"),
        &dir.path().join("token-agent.log"),
        Duration::from_secs(20),
    )
    .unwrap();
    let agent = Agent::start(dir.path(), &config(dir.path(), &rotel.grpc_endpoint), &[("OTEL_BSP_SCHEDULE_DELAY", "100")])
        .unwrap();
    // refreshes every 2 s: a steady flow of calls, spans and metrics
    let node = SimComputeNode::spawn(ta.socket(), 0.1).unwrap();
    rx.wait_point("metrics through rotel", Duration::from_secs(20), |p| p.metric == "token_agent.calls").await.unwrap();

    rotel.stop();
    let rss_start = rss_kib(agent.pid());
    let calls_before = node.stdout_lines().len();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut evaluations = std::collections::BTreeSet::new();
    while Instant::now() < deadline {
        let s = agent.status().expect("the agent answers while the backend is down");
        evaluations.insert(s["generated_at"].as_str().unwrap().to_string());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(node.stdout_lines().len() >= calls_before + 5, "the client kept refreshing");
    assert!(evaluations.len() >= 20, "the agent kept evaluating: {} distinct snapshots", evaluations.len());
    let rss_end = rss_kib(agent.pid());
    assert!(rss_end < rss_start + 20 * 1024, "RSS grew from {rss_start} KiB to {rss_end} KiB with the backend down");

    let seen = rx.points().len();
    rotel.restart().unwrap();
    rx.wait_more_points("data after the collector is back", Duration::from_secs(30), seen).await.unwrap();
    assert_eq!(agent.get("/healthz").unwrap().trim(), "ok");
}
