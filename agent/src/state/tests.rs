use super::*;
use crate::events::{CallSource, GrpcStatus, Process};

const T0: u64 = 1_780_000_000;
const LIFE: u64 = 36_000; // 10 h tokens → refresh_at = issued + 3600 s

fn at(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + s)
}

fn settings() -> Settings {
    Settings {
        socket: "/run/ta.sock".into(),
        method: "/yandex.cloud.priv.iam.v1.TokenAgent/GetToken".into(),
        warn_after: Duration::from_secs(120),
        crit_after: Duration::from_secs(600),
        refresh_fraction: 0.1,
        error_window: Duration::from_secs(300),
        assumed_lifetime: Duration::from_secs(LIFE),
        compute_node_units: vec!["yc-compute-node.service".into()],
    }
}

fn proc(pid: u32) -> Process {
    Process {
        pid,
        comm: "compute-node".into(),
        exe: Some("/usr/bin/compute-node".into()),
        unit: Some("yc-compute-node.service".into()),
    }
}

fn connect(pid: u32, s: u64, errno: Option<i32>) -> Event {
    Event::Connect(ConnectObserved {
        at: at(s),
        process: proc(pid),
        tid: pid,
        uid: 0,
        gid: 0,
        fd: 7,
        errno,
        latency: Duration::from_micros(20),
    })
}

fn call_ms(pid: u32, ms: u64, source: CallSource, status: Option<GrpcStatus>, expires: Option<u64>) -> Event {
    Event::Call(CallObserved {
        source,
        at: at(0) + Duration::from_millis(ms),
        duration: Some(Duration::from_millis(2)),
        process: proc(pid),
        uid: Some(0),
        method: Some("/yandex.cloud.priv.iam.v1.TokenAgent/GetToken".into()),
        status,
        expires_at: expires.map(at),
        request_id: None,
        error: None,
    })
}

fn ok(pid: u32, s: u64) -> Event {
    call_ms(pid, s * 1000, CallSource::Ebpf, Some(GrpcStatus::OK), Some(s + LIFE))
}

fn unavailable(pid: u32, s: u64) -> Event {
    call_ms(pid, s * 1000, CallSource::Ebpf, Some(GrpcStatus::UNAVAILABLE), None)
}

fn state_with(events: &[Event]) -> State {
    let mut st = State::new(settings());
    for e in events {
        st.apply(e);
    }
    st
}

#[test]
fn nothing_observed_is_ok_with_unknown_reachability() {
    let s = State::new(settings()).evaluate(at(0));
    assert_eq!(s.level, Level::Ok);
    assert!(s.clients.is_empty());
    assert_eq!(s.token_agent.reachable, None);
}

#[test]
fn refresh_at_is_a_tenth_of_the_lifetime() {
    let s = state_with(&[ok(10, 0)]).evaluate(at(1));
    let c = &s.clients[0];
    assert_eq!(c.last_success, Some(at(0)));
    assert_eq!(c.expires_at, Some(at(LIFE)));
    assert_eq!(c.refresh_at, Some(at(3600)));
    assert_eq!(c.expiry_remaining_seconds, Some((LIFE - 1) as f64));
    assert_eq!(c.overdue_seconds, 0.0);
    assert_eq!(s.level, Level::Ok);
}

#[test]
fn warn_and_crit_to_the_second() {
    let st = state_with(&[ok(10, 0)]);
    let level = |s| st.evaluate(at(s)).level;
    assert_eq!(level(3600), Level::Ok, "at refresh_at");
    assert_eq!(level(3600 + 119), Level::Ok, "one second before warn_after");
    assert_eq!(level(3600 + 120), Level::Warn, "at warn_after");
    assert_eq!(level(3600 + 599), Level::Warn, "one second before crit_after");
    assert_eq!(level(3600 + 600), Level::Crit, "at crit_after");
    let s = st.evaluate(at(3600 + 192));
    assert_eq!(s.clients[0].overdue_seconds, 192.0);
    assert!(s.summary.contains("refresh 3m 12s late"), "{}", s.summary);
}

#[test]
fn a_refresh_recovers_and_moves_refresh_at() {
    let st = state_with(&[ok(10, 0), ok(10, 3600 + 700)]);
    let s = st.evaluate(at(3600 + 701));
    assert_eq!(s.level, Level::Ok);
    assert_eq!(s.clients[0].refresh_at, Some(at(3600 + 700 + 3600)));
}

#[test]
fn the_same_expires_at_coming_back_still_counts_as_a_refresh() {
    // IAM may hand out the same token: refresh_at follows the new issued_at
    let same = call_ms(10, 3700 * 1000, CallSource::Ebpf, Some(GrpcStatus::OK), Some(LIFE));
    let st = state_with(&[ok(10, 0), same]);
    let s = st.evaluate(at(3800));
    assert_eq!(s.level, Level::Ok);
    assert_eq!(s.clients[0].last_success, Some(at(3700)));
    // refresh_at = 3700 + 0.1 × (36000 − 3700)
    assert_eq!(s.clients[0].refresh_at, Some(at(3700 + 3230)));
}

#[test]
fn without_expires_at_the_assumed_lifetime_applies() {
    let call = call_ms(10, 0, CallSource::AccessLog, Some(GrpcStatus::OK), None);
    let s = state_with(&[call]).evaluate(at(1));
    assert_eq!(s.clients[0].expires_at, Some(at(LIFE)));
    assert_eq!(s.clients[0].expires_observed, Some(false));
}

#[test]
fn errors_warn_until_the_window_passes() {
    let st = state_with(&[ok(10, 0), unavailable(10, 100)]);
    let s = st.evaluate(at(100));
    assert_eq!(s.level, Level::Warn);
    assert_eq!(s.token_agent.errors_in_window.get("UNAVAILABLE"), Some(&1));
    assert!(s.reasons.iter().any(|r| r.contains("do not restart yc-compute-node")), "{:?}", s.reasons);
    assert_eq!(st.evaluate(at(400)).level, Level::Warn, "window end is inclusive");
    assert_eq!(st.evaluate(at(401)).level, Level::Ok);
    assert_eq!(st.evaluate(at(401)).clients[0].calls.get("UNAVAILABLE"), Some(&1));
}

#[test]
fn failed_connects_warn_and_set_reachability() {
    let st = state_with(&[connect(10, 0, None), connect(10, 5, Some(libc::ENOENT))]);
    let s = st.evaluate(at(6));
    assert_eq!(s.level, Level::Warn);
    assert_eq!(s.token_agent.reachable, Some(false));
    assert_eq!(s.token_agent.errors_in_window.get("ENOENT"), Some(&1));
    assert_eq!(s.clients[0].connects_ok, 1);
    // an out-of-order older event does not override the latest outcome
    let mut st = st;
    st.apply(&connect(11, 1, None));
    assert_eq!(st.evaluate(at(6)).token_agent.reachable, Some(false));
}

#[test]
fn ebpf_and_access_log_sightings_of_one_call_count_once() {
    let st = state_with(&[
        call_ms(10, 1000, CallSource::Ebpf, Some(GrpcStatus::OK), Some(LIFE)),
        call_ms(10, 1400, CallSource::AccessLog, Some(GrpcStatus::OK), None),
    ]);
    let s = st.evaluate(at(2));
    assert_eq!(s.clients[0].calls.get("OK"), Some(&1));
    assert_eq!(s.token_agent.calls_in_window, 1);
    // eBPF's decoded expires_at is kept
    assert_eq!(s.clients[0].expires_observed, Some(true));
}

#[test]
fn on_disagreement_the_access_log_wins() {
    // eBPF could not decode the status of a Trailers-Only error; the log knows it
    let st = state_with(&[
        call_ms(10, 1000, CallSource::Ebpf, None, None),
        call_ms(10, 1200, CallSource::AccessLog, Some(GrpcStatus::UNAVAILABLE), None),
    ]);
    let s = st.evaluate(at(2));
    assert_eq!(s.clients[0].calls.get("UNAVAILABLE"), Some(&1));
    assert_eq!(s.clients[0].calls.get("UNDECODED"), None);
    assert_eq!(s.token_agent.errors_in_window.get("UNAVAILABLE"), Some(&1));
    assert_eq!(s.token_agent.errors_in_window.get("UNDECODED"), None);
}

#[test]
fn calls_farther_apart_than_the_tolerance_are_two() {
    let st = state_with(&[
        call_ms(10, 1000, CallSource::Ebpf, Some(GrpcStatus::OK), Some(LIFE)),
        call_ms(10, 3500, CallSource::AccessLog, Some(GrpcStatus::OK), None),
    ]);
    assert_eq!(st.evaluate(at(4)).clients[0].calls.get("OK"), Some(&2));
}

#[test]
fn other_methods_are_ignored() {
    let mut e = ok(10, 0);
    if let Event::Call(c) = &mut e {
        c.method = Some("/grpc.health.v1.Health/Check".into());
    }
    assert!(state_with(&[e]).evaluate(at(1)).clients.is_empty());
    // the short form of the configured method matches
    let mut e = ok(10, 0);
    if let Event::Call(c) = &mut e {
        c.method = Some("GetToken".into());
    }
    assert_eq!(state_with(&[e]).evaluate(at(1)).clients.len(), 1);
}

#[test]
fn compute_node_exit_while_token_agent_fails_is_crit_at_once() {
    let mut st = state_with(&[ok(10, 0), unavailable(10, 100)]);
    st.apply(&Event::ProcessExit { pid: 10, at: at(110) });
    let s = st.evaluate(at(110));
    assert_eq!(s.level, Level::Crit);
    assert!(s.summary.contains("cached token is lost"), "{}", s.summary);
    // still CRIT long after the error window: the token is gone
    assert_eq!(st.evaluate(at(2000)).level, Level::Crit);
    // the restarted compute-node gets a token → recovered
    st.apply(&ok(20, 2100));
    assert_eq!(st.evaluate(at(2101)).level, Level::Ok);
}

#[test]
fn errors_of_a_client_that_exited_still_warn() {
    // not compute-node: its exit loses no token that matters
    let mut e = connect(30, 0, Some(libc::ENOENT));
    if let Event::Connect(c) = &mut e {
        c.process.unit = None;
    }
    let mut st = state_with(&[e]);
    st.apply(&Event::ProcessExit { pid: 30, at: at(1) });
    let s = st.evaluate(at(2));
    assert_eq!(s.level, Level::Warn);
    assert!(s.clients.is_empty());
    assert_eq!(s.token_agent.errors_in_window.get("ENOENT"), Some(&1));
    assert_eq!(st.evaluate(at(301)).level, Level::Ok);
}

#[test]
fn compute_node_exit_while_healthy_is_not_crit() {
    let mut st = state_with(&[ok(10, 0)]);
    st.apply(&Event::ProcessExit { pid: 10, at: at(50) });
    let s = st.evaluate(at(51));
    assert_eq!(s.level, Level::Ok);
    assert!(s.clients.is_empty(), "exited clients are not late");
}

#[test]
fn app_log_errors_warn_the_host() {
    let mut st = State::new(settings());
    st.apply(&Event::AgentError(AgentError { at: at(10), message: "cannot reach IAM".into() }));
    let s = st.evaluate(at(11));
    assert_eq!(s.level, Level::Warn);
    assert!(s.reasons.iter().any(|r| r.contains("cannot reach IAM")));
    assert_eq!(st.evaluate(at(311)).level, Level::Ok);
}

#[test]
fn persisted_facts_round_trip_and_skip_gone_processes() {
    // sub-second times survive exactly
    let st = state_with(&[call_ms(10, 123, CallSource::Ebpf, Some(GrpcStatus::OK), Some(LIFE)), ok(11, 5)]);
    let facts = st.facts();
    let json = serde_json::to_string(&facts).unwrap();
    assert!(json.contains("\"version\":\"1\""), "{json}");
    let back: persist::Facts = serde_json::from_str(&json).unwrap();
    assert_eq!(back, facts);

    let mut restarted = State::new(settings());
    let n = restarted.restore(&back, |pid, exe| pid == 10 && exe == Some("/usr/bin/compute-node"));
    assert_eq!(n, 1, "pid 11 is gone");
    let s = restarted.evaluate(at(3600 + 121));
    assert_eq!(s.clients.len(), 1);
    assert_eq!(s.clients[0].last_success, Some(at(0) + Duration::from_millis(123)), "the refresh is not forgotten");
    assert_eq!(s.level, Level::Warn, "nor is the lateness");
    // what this run observed wins over old facts
    let mut fresh = state_with(&[ok(10, 3000)]);
    fresh.restore(&back, |_, _| true);
    assert_eq!(fresh.evaluate(at(3001)).clients.iter().find(|c| c.pid == 10).unwrap().last_success, Some(at(3000)));
}

#[test]
fn recent_errors_stay_bounded() {
    let mut st = State::new(settings());
    for i in 0..(client::MAX_RECENT_ERRORS as u64 + 100) {
        st.apply(&connect(10, i / 100, Some(libc::ENOENT)));
    }
    assert!(st.clients[&10].recent_errors.len() <= client::MAX_RECENT_ERRORS);
    assert_eq!(st.clients[&10].connect_errors["ENOENT"], client::MAX_RECENT_ERRORS as u64 + 100);
}

#[test]
fn snapshot_serializes_per_interface() {
    let st = state_with(&[ok(10, 0), connect(10, 1, Some(libc::ENOENT))]);
    let v = serde_json::to_value(st.evaluate(at(2))).unwrap();
    assert_eq!(v["level"], "WARN");
    assert!(v["generated_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["token_agent"]["socket"], "/run/ta.sock");
    let c = &v["clients"][0];
    assert_eq!(c["pid"], 10);
    assert_eq!(c["process"], "compute-node");
    assert_eq!(c["unit"], "yc-compute-node.service");
    assert_eq!(c["exe"], "/usr/bin/compute-node");
    assert!(c["last_success"].as_str().unwrap().ends_with('Z'));
    assert!(c["refresh_at"].is_string() && c["expires_at"].is_string());
    assert_eq!(c["level"], "WARN");
    assert_eq!(c["calls"]["OK"], 1);
    assert!(v["sources"]["ebpf"]["state"].is_string());
}

#[test]
fn a_restart_after_a_recovered_blip_loses_no_token() {
    // a token-agent release: UNAVAILABLE, then OK again; later compute-node restarts
    let mut st = state_with(&[ok(10, 0), unavailable(10, 100), ok(10, 105)]);
    st.apply(&Event::ProcessExit { pid: 10, at: at(300) });
    let s = st.evaluate(at(300));
    assert_ne!(s.level, Level::Crit, "{}", s.summary);
    // still failing (no success since the error): the token is lost
    let mut st = state_with(&[ok(10, 0), unavailable(10, 100)]);
    st.apply(&Event::ProcessExit { pid: 10, at: at(300) });
    assert_eq!(st.evaluate(at(300)).level, Level::Crit);
}

fn python(pid: u32) -> Process {
    Process { comm: "python3".into(), exe: Some("/usr/bin/python3".into()), ..proc(pid) }
}

#[test]
fn one_process_success_does_not_restore_another_process_token() {
    let mut st = state_with(&[ok(10, 0), unavailable(10, 100)]);
    st.apply(&Event::ProcessExit { pid: 10, at: at(110) });
    // the unit's Python process still gets a token: the Go process's is still lost
    let mut py = ok(30, 120);
    if let Event::Call(c) = &mut py {
        c.process = python(30);
    }
    st.apply(&py);
    let s = st.evaluate(at(121));
    assert_eq!(s.level, Level::Crit, "{}", s.summary);
    assert!(s.summary.contains("compute-node, pid 10"), "{}", s.summary);
    // the restarted Go process gets one: recovered (WARN until the error ages out)
    st.apply(&ok(20, 130));
    assert_eq!(st.evaluate(at(131)).level, Level::Warn);
    assert_eq!(st.evaluate(at(401)).level, Level::Ok);
}

#[test]
fn a_client_that_stopped_refreshing_does_not_pin_the_capture_hint() {
    let max = Duration::from_secs(900);
    // pid 50 refreshed at 0 (refresh_at 3600) and never again; pid 10 at 5000 (refresh_at 8600)
    let st = state_with(&[ok(50, 0), ok(10, 5000)]);
    assert_eq!(st.capture_inputs(at(3000), max).0, Some(at(3600)), "both ahead: the earliest");
    assert_eq!(st.capture_inputs(at(4000), max).0, Some(at(3600)), "pid 50 overdue, within the window");
    assert_eq!(st.capture_inputs(at(8500), max).0, Some(at(8600)), "pid 50 long overdue: pid 10's next refresh");
}

#[test]
fn records_of_no_nameable_process_are_never_late() {
    let mut e = ok(0, 0);
    if let Event::Call(c) = &mut e {
        c.process = Process::default();
    }
    let st = state_with(&[e]);
    let s = st.evaluate(at(3600 + 700));
    assert_eq!(s.level, Level::Ok, "{}", s.summary);
    // no token: no overdue gauge, no capture hint
    assert!(s.clients.iter().all(|c| c.last_success.is_none() && c.overdue_seconds == 0.0), "{:?}", s.clients);
    assert_eq!(st.capture_inputs(at(3600), Duration::from_secs(900)).0, None);
}
