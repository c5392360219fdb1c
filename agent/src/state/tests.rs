use super::*;

const T0: u64 = 1_780_000_000;

fn at(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + s)
}

fn settings() -> Settings {
    Settings {
        socket: "/run/ta.sock".into(),
        error_window: Duration::from_secs(300),
        compute_node_units: vec!["yc-compute-node.service".into()],
    }
}

fn connect(pid: u32, s: u64, errno: Option<i32>) -> Event {
    Event::Connect(ConnectObserved {
        at: at(s),
        process: Process {
            pid,
            comm: "compute-node".into(),
            exe: Some("/usr/bin/compute-node".into()),
            unit: Some("yc-compute-node.service".into()),
        },
        tid: pid,
        uid: 0,
        gid: 0,
        fd: 7,
        errno,
        latency: Duration::from_micros(20),
    })
}

#[test]
fn nothing_observed_is_ok_with_unknown_reachability() {
    let s = State::new(settings()).evaluate(at(0));
    assert_eq!(s.level, Level::Ok);
    assert!(s.clients.is_empty());
    assert_eq!(s.token_agent.reachable, None);
}

#[test]
fn successful_connects_are_ok() {
    let mut st = State::new(settings());
    st.apply(&connect(10, 0, None));
    st.apply(&connect(10, 5, None));
    let s = st.evaluate(at(6));
    assert_eq!(s.level, Level::Ok);
    assert_eq!(s.clients.len(), 1);
    assert_eq!(s.clients[0].connects_ok, 2);
    assert_eq!(s.clients[0].client, "yc-compute-node.service");
    assert_eq!(s.token_agent.reachable, Some(true));
}

#[test]
fn failed_connect_warns_until_the_window_passes_to_the_second() {
    let mut st = State::new(settings());
    st.apply(&connect(10, 100, Some(libc::ENOENT)));
    let s = st.evaluate(at(100));
    assert_eq!(s.level, Level::Warn);
    assert_eq!(s.token_agent.errors_in_window.get("ENOENT"), Some(&1));
    assert_eq!(s.token_agent.reachable, Some(false));
    assert!(s.reasons.iter().any(|r| r.contains("do not restart yc-compute-node")), "{:?}", s.reasons);
    // still inside the 300 s window at +300 s, out of it one second later
    assert_eq!(st.evaluate(at(400)).level, Level::Warn);
    let later = st.evaluate(at(401));
    assert_eq!(later.level, Level::Ok);
    assert!(later.token_agent.errors_in_window.is_empty());
    // the total stays
    assert_eq!(later.clients[0].connect_errors.get("ENOENT"), Some(&1));
}

#[test]
fn errors_are_counted_by_errno_and_reachability_follows_the_latest() {
    let mut st = State::new(settings());
    st.apply(&connect(10, 0, Some(libc::ENOENT)));
    st.apply(&connect(11, 1, Some(libc::ECONNREFUSED)));
    st.apply(&connect(11, 2, Some(libc::ECONNREFUSED)));
    let s = st.evaluate(at(3));
    assert_eq!(s.token_agent.errors_in_window.get("ECONNREFUSED"), Some(&2));
    assert_eq!(s.clients.len(), 2);
    st.apply(&connect(10, 4, None));
    assert_eq!(st.evaluate(at(5)).token_agent.reachable, Some(true));
    // an out-of-order older event does not override the latest outcome
    st.apply(&connect(12, 3, Some(libc::ENOENT)));
    assert_eq!(st.evaluate(at(5)).token_agent.reachable, Some(true));
}

#[test]
fn recent_errors_stay_bounded() {
    let mut st = State::new(settings());
    for i in 0..(MAX_RECENT_ERRORS as u64 + 100) {
        st.apply(&connect(10, i / 100, Some(libc::ENOENT)));
    }
    assert!(st.clients[&10].recent_errors.len() <= MAX_RECENT_ERRORS);
    assert_eq!(st.clients[&10].connect_errors["ENOENT"], MAX_RECENT_ERRORS as u64 + 100);
}

#[test]
fn snapshot_serializes_per_interface() {
    let mut st = State::new(settings());
    st.apply(&connect(10, 0, Some(libc::ENOENT)));
    let v = serde_json::to_value(st.evaluate(at(1))).unwrap();
    assert_eq!(v["level"], "WARN");
    assert!(v["generated_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["token_agent"]["socket"], "/run/ta.sock");
    assert_eq!(v["clients"][0]["pid"], 10);
    assert_eq!(v["clients"][0]["process"], "compute-node");
    assert_eq!(v["clients"][0]["unit"], "yc-compute-node.service");
    assert!(v["clients"][0]["last_success"].is_null());
    assert!(v["sources"]["ebpf"]["state"].is_string());
}
