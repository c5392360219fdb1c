//! `tokenwatch diagnose` against the simulator in each fault mode: the exit
//! code, the cause it names, and never advice to restart compute-node while
//! token-agent fails.
use std::{
    io::{Read, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tokenwatch_tests::{
    agent_proc::{agent_bin, free_port},
    sim::{Mode, SimComputeNode, SimTokenAgent},
};

const LIFETIME: Duration = Duration::from_secs(600);
const WAIT: Duration = Duration::from_secs(20);

struct Host {
    dir: tempfile::TempDir,
    sim: SimTokenAgent,
    _node: Option<SimComputeNode>,
}

impl Host {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("token-agent.sock")
    }

    fn access_log(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    fn app_log(&self) -> PathBuf {
        self.dir.path().join("token-agent.log")
    }
}

/// The simulator in `mode`, with compute-node's first call made (and logged) in that mode.
fn host(mode: Mode) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("token-agent.sock");
    let sim =
        SimTokenAgent::spawn(&socket, &dir.path().join("access.log"), &dir.path().join("token-agent.log"), LIFETIME)
            .expect("sim-token-agent");
    let mut host = Host { dir, sim, _node: None };
    if mode == Mode::Unavailable {
        host.sim.set_mode(mode).unwrap();
    }
    let node = SimComputeNode::spawn(&socket, 0.1).expect("sim-compute-node");
    let want = if mode == Mode::Unavailable { "UNAVAILABLE" } else { "OK" };
    node.wait_for(WAIT, |c| c.status == want).expect("a call in the access log");
    host._node = Some(node);
    if matches!(mode, Mode::Down | Mode::Refused) {
        host.sim.set_mode(mode).unwrap();
    }
    host
}

/// Writes a config for `host` (the agent's HTTP at `listen`) and runs `diagnose`.
fn diagnose(host: &Host, listen: &str) -> (i32, String) {
    let cfg = host.dir.path().join("tokenwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[token_agent]\nsocket = {:?}\naccess_log = {:?}\napp_log = {:?}\n\n[http]\nlisten = {listen:?}\n",
            host.socket(),
            host.access_log(),
            host.app_log()
        ),
    )
    .unwrap();
    run_diagnose(&cfg)
}

fn run_diagnose(cfg: &Path) -> (i32, String) {
    let out = Command::new(agent_bin())
        .args(["diagnose", "-c"])
        .arg(cfg)
        .args(["--since", "10m"])
        .env("TOKENWATCH_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", agent_bin().display()));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("--- diagnose stdout ---\n{text}--- stderr ---\n{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().expect("exit code"), text)
}

/// An address where no agent answers.
fn nobody() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// The one rule: no line may tell on-call to restart compute-node unless it says NOT to.
fn never_restarts_compute_node(out: &str) {
    for line in out.lines() {
        let l = line.to_lowercase();
        if l.contains("restart") && l.contains("compute-node") {
            assert!(
                line.contains("NOT restart"),
                "advises restarting compute-node while token-agent fails: {line}\n{out}"
            );
        }
    }
}

fn contains_all(out: &str, wanted: &[&str]) {
    for w in wanted {
        assert!(out.contains(w), "output lacks {w:?}:\n{out}");
    }
}

#[test]
fn ok_is_healthy_and_names_the_listener() {
    let h = host(Mode::Ok);
    let (code, out) = diagnose(&h, &nobody());
    assert_eq!(code, 0, "{out}");
    contains_all(
        &out,
        &["VERDICT: HEALTHY", "accepts connections", &format!("listening process: pid {}", h.sim.pid())],
    );
    contains_all(&out, &["call(s), all OK", "no tokenwatch agent answers"]);
    assert!(!out.contains("[FAIL]"), "{out}");
}

#[test]
fn unavailable_is_the_iam_side() {
    let h = host(Mode::Unavailable);
    let (code, out) = diagnose(&h, &nobody());
    assert_eq!(code, 1, "{out}");
    contains_all(&out, &["IAM fails", "UNAVAILABLE ×", "Escalate to IAM on-call", "accepts connections", "ERROR line"]);
    assert!(!out.contains("token-agent is DOWN"), "{out}");
    never_restarts_compute_node(&out);
    assert!(out.contains("Do NOT restart yc-compute-node"), "{out}");
}

#[test]
fn down_is_enoent_and_restarts_token_agent_not_compute_node() {
    let h = host(Mode::Down);
    let (code, out) = diagnose(&h, &nobody());
    assert_eq!(code, 1, "{out}");
    contains_all(
        &out,
        &["token-agent is DOWN", "ENOENT", "systemctl restart yc-token-agent", "Do NOT restart yc-compute-node"],
    );
    never_restarts_compute_node(&out);
}

#[test]
fn refused_is_a_stale_socket() {
    let h = host(Mode::Refused);
    let (code, out) = diagnose(&h, &nobody());
    assert_eq!(code, 1, "{out}");
    contains_all(
        &out,
        &["token-agent is DOWN", "ECONNREFUSED", "systemctl restart yc-token-agent", "Do NOT restart yc-compute-node"],
    );
    never_restarts_compute_node(&out);
}

/// Serves one fixed `/status` document over HTTP/1.1 to every request.
fn fake_agent(status: serde_json::Value) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let body = status.to_string();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

fn overdue_status() -> serde_json::Value {
    serde_json::json!({
        "level": "WARN", "summary": "yc-compute-node.service refresh 5m overdue", "reasons": ["refresh overdue"],
        "generated_at": "2026-11-25T14:00:00Z",
        "token_agent": {"socket": "/x", "reachable": true, "calls_in_window": 0, "errors_in_window": {}},
        "clients": [{"pid": 4242, "process": "compute-node", "client": "yc-compute-node.service",
                     "unit": "yc-compute-node.service", "last_success": "2026-11-25T13:00:00Z",
                     "refresh_at": "2026-11-25T13:55:00Z", "overdue_seconds": 300.0,
                     "expiry_remaining_seconds": 32000.0, "level": "WARN", "calls": {"OK": 1}}],
        "sources": {}
    })
}

#[test]
fn overdue_with_healthy_token_agent_is_the_compute_node_side() {
    let h = host(Mode::Ok);
    let (code, out) = diagnose(&h, &fake_agent(overdue_status()));
    assert_eq!(code, 1, "{out}");
    contains_all(
        &out,
        &[
            "compute-node side",
            "5m past refresh_at",
            "journalctl -u yc-compute-node",
            "WARN: yc-compute-node.service refresh 5m overdue",
            // compute-node's call a moment ago is in the access log: token-agent answers
            "restarting it is safe",
        ],
    );
    assert!(!out.contains("token-agent is DOWN") && !out.contains("IAM fails"), "{out}");
}

/// A hung token-agent: its socket still completes connects (the listen
/// backlog), but it answers nothing and logs nothing; compute-node's refresh
/// goes overdue. Nothing shows token-agent answering, so the advice must be to
/// check token-agent first, never that restarting compute-node is safe.
#[test]
fn overdue_with_a_hung_token_agent_says_check_token_agent_first() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("token-agent.sock");
    // bound and listening, never accepted from: connect() still succeeds
    let _hung = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // its last answer: 8 min ago (within --since 10m, older than a current answer)
    let old = std::time::SystemTime::now() - Duration::from_secs(8 * 60);
    let old = old.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let access_log = dir.path().join("access.log");
    std::fs::write(&access_log, format!("time={old} status=OK method=GetToken pid=4242\n")).unwrap();
    let cfg = dir.path().join("tokenwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[token_agent]\nsocket = {:?}\naccess_log = {:?}\napp_log = {:?}\n\n[http]\nlisten = {:?}\n",
            socket,
            access_log,
            dir.path().join("token-agent.log"),
            fake_agent(overdue_status())
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("token-agent.log"), "").unwrap();
    let (code, out) = run_diagnose(&cfg);
    assert_eq!(code, 1, "{out}");
    contains_all(
        &out,
        &["accepts connections", "it may be hung", "Check token-agent first", "Do NOT restart yc-compute-node"],
    );
    assert!(!out.contains("restarting it is safe"), "{out}");
    never_restarts_compute_node(&out);
}

#[test]
fn overdue_while_token_agent_is_down_blames_token_agent() {
    let h = host(Mode::Down);
    let (code, out) = diagnose(&h, &fake_agent(overdue_status()));
    assert_eq!(code, 1, "{out}");
    contains_all(&out, &["token-agent is DOWN", "expires in 8h 53m 20s"]);
    assert!(!out.contains("compute-node side"), "{out}");
    never_restarts_compute_node(&out);
}

#[test]
fn bad_config_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[token_agent]\nsockt = \"/x\"\n").unwrap();
    let out = Command::new(agent_bin()).args(["diagnose", "-c"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sockt") && err.trim().lines().count() == 1, "{err}");
}
