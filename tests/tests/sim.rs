//! The simulator end to end: a fake token-agent switched through its fault
//! modes while a fake compute-node refreshes against it.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use regex::Regex;
use tokenwatch_tests::proto::GET_TOKEN_METHOD;
use tokenwatch_tests::sim::{
    self, parse_time, tskv, CallRecord, IssuedToken, Mode, SimComputeNode, SimComputeNodeOpts,
    SimTokenAgent, SimTokenAgentOpts,
};

const LIFETIME: Duration = Duration::from_secs(20);
const EVENT: Duration = Duration::from_secs(15);
const TOKEN_RE: &str = r"t1\.[A-Za-z0-9_-]+=*\.[A-Za-z0-9_-]{86}=*";

/// Polls `check` until it yields a value (files have no change events here).
fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn access_records(path: &Path) -> Vec<Vec<(String, String)>> {
    read_lines(path)
        .iter()
        .filter_map(|l| tskv::parse_line(l))
        .collect()
}

fn field<'a>(rec: &'a [(String, String)], key: &str) -> &'a str {
    rec.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v)
}

fn secs_between(from: &str, to: &str) -> Result<f64> {
    let (a, b) = (parse_time(from)?, parse_time(to)?);
    Ok(match b.duration_since(a) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    })
}

fn assert_ok_call(c: &CallRecord, pid: u32) -> Result<()> {
    ensure!(
        c.is_ok() && c.pid == pid,
        "not an OK call of pid {pid}: {c:?}"
    );
    let life = secs_between(&c.time, c.expires_at.as_deref().context("expires_at")?)?;
    ensure!(
        (life - LIFETIME.as_secs_f64()).abs() < 1.0,
        "expires_at − time = {life}s: {c:?}"
    );
    let refresh = secs_between(&c.time, c.refresh_at.as_deref().context("refresh_at")?)?;
    ensure!(
        (refresh - 0.1 * life).abs() < 0.01,
        "refresh_at − time = {refresh}s: {c:?}"
    );
    Ok(())
}

fn own_call(socket: &Path) -> Result<IssuedToken> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let ch = sim::connect(socket, Duration::from_secs(5))?;
        Ok(sim::get_token(&ch, "test").await?)
    })
}

/// Every access-log line is TSKV with exactly the documented fields.
fn check_access_log(path: &Path) -> Result<()> {
    let duration = Regex::new(r"^\d+\.\d{3}ms$")?;
    let uuid =
        Regex::new(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")?;
    let uid = unsafe { libc::getuid() }.to_string();
    let lines = read_lines(path);
    ensure!(!lines.is_empty(), "empty access log");
    for line in &lines {
        let rec = tskv::parse_line(line).with_context(|| format!("not TSKV: {line:?}"))?;
        let keys: Vec<&str> = rec.iter().map(|(k, _)| k.as_str()).collect();
        ensure!(
            keys == [
                "time",
                "pid",
                "uid",
                "method",
                "status",
                "duration",
                "request_id"
            ],
            "fields {keys:?} in {line:?}"
        );
        parse_time(field(&rec, "time"))?;
        ensure!(
            field(&rec, "time").ends_with('Z') && field(&rec, "time").len() == 24,
            "{line:?}"
        );
        ensure!(field(&rec, "pid").parse::<u32>().is_ok(), "pid in {line:?}");
        ensure!(field(&rec, "uid") == uid, "uid in {line:?}");
        ensure!(
            field(&rec, "method") == GET_TOKEN_METHOD,
            "method in {line:?}"
        );
        ensure!(
            ["OK", "UNAVAILABLE"].contains(&field(&rec, "status")),
            "status in {line:?}"
        );
        ensure!(
            duration.is_match(field(&rec, "duration")),
            "duration in {line:?}"
        );
        ensure!(
            uuid.is_match(field(&rec, "request_id")),
            "request_id in {line:?}"
        );
    }
    Ok(())
}

fn check_no_token(what: &str, lines: &[String], token: &str) -> Result<()> {
    let re = Regex::new(TOKEN_RE)?;
    for l in lines {
        ensure!(!l.contains(token), "{what} leaks the token: {l:?}");
        ensure!(!re.is_match(l), "{what} has a token-shaped string: {l:?}");
    }
    Ok(())
}

#[test]
fn faults_end_to_end() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("run/yc/token-agent/socket");
    let access = dir.path().join("log/access.log");
    let app = dir.path().join("log/app.log");
    let mut opts = SimTokenAgentOpts::new(&socket, &access, &app, LIFETIME);
    opts.slow_delay = Duration::from_millis(300);
    let mut agent = SimTokenAgent::spawn_with(opts)?;
    ensure!(socket.exists(), "no socket after ready");

    let own = own_call(&socket)?;
    ensure!(
        Regex::new(&format!("^{TOKEN_RE}$"))?.is_match(&own.token),
        "token shape"
    );
    let life = own
        .expires_at
        .duration_since(own.received_at)?
        .as_secs_f64();
    ensure!((life - 20.0).abs() < 1.0, "own call: lifetime {life}s");
    let second = own_call(&socket)?;
    ensure!(second.token != own.token, "a new token per issue");

    let mut node_opts = SimComputeNodeOpts::new(&socket, 0.1);
    node_opts.retry = Duration::from_millis(500);
    node_opts.retry_max = Duration::from_secs(1);
    let node = SimComputeNode::spawn_with(node_opts)?;
    let pid = node.pid();

    // ok: refreshes every 0.1 × 20 s.
    let first = node.next_call(EVENT)?;
    assert_ok_call(&first, pid)?;
    let next = node.next_call(EVENT)?;
    assert_ok_call(&next, pid)?;
    let gap = secs_between(&first.time, &next.time)?;
    ensure!((1.9..4.0).contains(&gap), "refresh after {gap}s");
    let ok_line = |r: &Vec<(String, String)>| {
        field(r, "status") == "OK" && field(r, "pid") == pid.to_string()
    };
    ensure!(
        access_records(&access)
            .iter()
            .filter(|r| ok_line(r))
            .count()
            >= 2,
        "OK lines of {pid}"
    );

    // unavailable: the status reaches the client and the access log.
    agent.set_mode(Mode::Unavailable)?;
    let c = node.wait_for(EVENT, |c| c.status == "UNAVAILABLE")?;
    ensure!(c.expires_at.is_none() && c.refresh_at.is_none(), "{c:?}");
    wait_until("an UNAVAILABLE access-log line", EVENT, || {
        access_records(&access)
            .iter()
            .find(|r| field(r, "status") == "UNAVAILABLE" && field(r, "pid") == pid.to_string())
            .cloned()
    })?;
    ensure!(
        read_lines(&app).iter().any(|l| l.contains(" ERROR ")),
        "no ERROR in app log"
    );

    // down: no socket, the client fails on connect, nothing reaches the log.
    agent.set_mode(Mode::Down)?;
    ensure!(!socket.exists(), "socket still there when down");
    let logged = read_lines(&access).len();
    for _ in 0..2 {
        let c = node.wait_for(EVENT, |c| {
            c.error.as_deref().is_some_and(|e| e.contains("os error 2"))
        })?;
        ensure!(c.status == "UNAVAILABLE", "{c:?}");
    }
    ensure!(
        read_lines(&access).len() == logged,
        "access log grew while down"
    );

    // refused: a stale socket file, connect gets ECONNREFUSED.
    agent.set_mode(Mode::Refused)?;
    ensure!(socket.exists(), "no stale socket when refused");
    node.wait_for(EVENT, |c| {
        c.error
            .as_deref()
            .is_some_and(|e| e.contains("os error 111"))
    })?;

    // ok again: the same long-lived channel reconnects.
    agent.set_mode(Mode::Ok)?;
    ensure!(socket.exists(), "no socket when back up");
    let c = node.wait_for(EVENT, CallRecord::is_ok)?;
    assert_ok_call(&c, pid)?;

    // slow: OK, but late.
    agent.set_mode(Mode::Slow)?;
    wait_until("a slow OK access-log line", EVENT, || {
        access_records(&access).into_iter().find(|r| {
            ok_line(r)
                && field(r, "duration")
                    .trim_end_matches("ms")
                    .parse::<f64>()
                    .unwrap_or(0.0)
                    >= 300.0
        })
    })?;
    let c = node.wait_for(EVENT, CallRecord::is_ok)?;
    assert_ok_call(&c, pid)?;

    check_access_log(&access)?;
    let app_lines = read_lines(&app);
    ensure!(
        app_lines
            .iter()
            .any(|l| l.ends_with(" INFO token-agent started")),
        "{app_lines:?}"
    );
    let stamp = Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|ERROR) ")?;
    ensure!(
        app_lines.iter().all(|l| stamp.is_match(l)),
        "app log format: {app_lines:?}"
    );
    for token in [&own.token, &second.token] {
        check_no_token("access log", &read_lines(&access), token)?;
        check_no_token("app log", &app_lines, token)?;
        check_no_token("compute-node stdout", &node.stdout_lines(), token)?;
    }
    Ok(())
}

#[test]
fn reused_token_keeps_expires_at() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("socket");
    let mut opts = SimTokenAgentOpts::new(
        &socket,
        &dir.path().join("a.log"),
        &dir.path().join("b.log"),
        LIFETIME,
    );
    opts.reuse_for = Duration::from_secs(60);
    let _agent = SimTokenAgent::spawn_with(opts)?;
    let (a, b) = (own_call(&socket)?, own_call(&socket)?);
    ensure!(
        a.token == b.token && a.expires_at == b.expires_at,
        "not reused"
    );
    ensure!(
        b.received_at >= a.received_at && a.expires_at > SystemTime::now(),
        "times"
    );
    Ok(())
}
