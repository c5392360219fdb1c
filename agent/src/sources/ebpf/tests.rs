use std::{
    collections::HashSet,
    io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokenwatch_common::{
    connect_flags, data_flags, direction, op, CloseEvent, ConnectEvent, DataHeader, EventHeader, EventKind,
    ProcessEvent, COMM_LEN, DATA_HEADER_LEN, EVENT_VERSION, SUN_PATH_MAX,
};

use super::{
    capture::{call_event, Tracker},
    decode::{self, Clock, Record, RecordError},
    discover::{client_inodes, parse_dump, scan_proc, socket_inode, UnixSock},
    errors::{capability_hint, kernel_error, verifier_complaint, CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN},
    hooks::{self, Group, Hook, Kind},
    load::{format_has_group_dead, probe_config},
    window::{
        connections_on_demand, steps, want_capture, CaptureHint, Reason, Step, Switch, Transition, WindowInputs,
        WindowPolicy,
    },
    *,
};
use crate::{
    config::CaptureMode,
    events::{CallObserved, CallSource, ConnectObserved, GrpcStatus, Process},
    protocol::{ConnectionConfig, DecodedCall},
};

const CLOCK: Clock = Clock { realtime_minus_monotonic_ns: 1_700_000_000_000_000_000 };
const METHOD: &str = "/yandex.cloud.priv.iam.v1.TokenAgent/GetToken";
const TOKEN: &str = "t1.secret-token-value";

fn bytes_of<T>(v: &T) -> Vec<u8> {
    // SAFETY: test-only view of plain data as bytes.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

fn fake_describe(pid: u32, comm: &str) -> Process {
    Process { pid, comm: comm.to_string(), exe: Some("/usr/bin/compute-node".into()), unit: None }
}

fn header(kind: EventKind, len: usize, ts_ns: u64) -> EventHeader {
    EventHeader { kind: kind as u16, version: EVENT_VERSION, len: len as u32, tgid: 4242, tid: 4243, ts_ns }
}

fn connect_event(ret: i32) -> ConnectEvent {
    let mut comm = [0u8; COMM_LEN];
    comm[..12].copy_from_slice(b"compute-node");
    ConnectEvent {
        header: header(EventKind::Connect, size_of::<ConnectEvent>(), 5_000_000_123),
        uid: 1000,
        gid: 1001,
        fd: 7,
        ret,
        latency_ns: 1_500,
        comm,
        flags: if ret == 0 { connect_flags::TRACKED } else { 0 },
        _pad: 0,
    }
}

/// A data record of `payload` at `stream_off` (one record per syscall).
fn data_record(dir: u8, stream_off: u64, payload: &[u8], ts_ns: u64) -> Vec<u8> {
    let head = DataHeader {
        header: header(EventKind::Data, DATA_HEADER_LEN + payload.len(), ts_ns),
        stream_off,
        fd: 7,
        uid: 1000,
        syscall_len: payload.len() as u32,
        chunk_off: 0,
        data_len: payload.len() as u32,
        direction: dir,
        op: if dir == direction::TX { op::WRITEV } else { op::READ },
        flags: data_flags::LAST,
        _pad: 0,
    };
    let mut b = bytes_of(&head);
    b.extend_from_slice(payload);
    b
}

// ---- records ----

#[test]
fn parses_a_connect_record_into_the_event() {
    let bytes = bytes_of(&connect_event(-111));
    let Ok(Record::Connect(ev)) = decode::parse(&bytes) else { panic!("not a connect") };
    assert_eq!(
        decode::connect_observed(&ev, &CLOCK, fake_describe),
        ConnectObserved {
            at: UNIX_EPOCH + Duration::from_nanos(1_700_000_005_000_000_123),
            process: fake_describe(4242, "compute-node"),
            tid: 4243,
            uid: 1000,
            gid: 1001,
            fd: 7,
            errno: Some(libc::ECONNREFUSED),
            latency: Duration::from_nanos(1_500),
        }
    );
    let mut raw = connect_event(0);
    raw.comm = *b"0123456789abcdef"; // no NUL at all
    let Ok(Record::Connect(ev)) = decode::parse(&bytes_of(&raw)) else { panic!("not a connect") };
    let c = decode::connect_observed(&ev, &CLOCK, fake_describe);
    assert_eq!((c.errno, c.process.comm.as_str()), (None, "0123456789abcdef"));
}

#[test]
fn parses_data_close_and_process_records() {
    let bytes = data_record(direction::RX, 10, b"hello", 1);
    let Ok(Record::Data { head, payload }) = decode::parse(&bytes) else { panic!("not data") };
    assert_eq!((head.stream_off, head.direction, payload), (10, direction::RX, &b"hello"[..]));

    let close = CloseEvent { header: header(EventKind::Close, size_of::<CloseEvent>(), 1), fd: 9, _pad: 0 };
    assert_eq!(decode::parse(&bytes_of(&close)), Ok(Record::Close(close)));

    for (kind, exec) in [(EventKind::ProcessExit, false), (EventKind::Exec, true)] {
        let ev = ProcessEvent { header: header(kind, size_of::<ProcessEvent>(), 1), comm: [0; COMM_LEN] };
        assert_eq!(decode::parse(&bytes_of(&ev)), Ok(Record::ProcessGone { event: ev, exec }));
    }
}

#[test]
fn rejects_bad_records_without_panicking() {
    let good = bytes_of(&connect_event(0));
    assert_eq!(decode::parse(&[]), Err(RecordError::Short(0)));
    assert_eq!(decode::parse(&good[..10]), Err(RecordError::Short(10)));
    // truncated record whose header claims the full length
    assert_eq!(decode::parse(&good[..40]), Err(RecordError::BadLen { header: 72, actual: 40 }));
    let mut raw = connect_event(0);
    raw.header.len = 24; // too small for a connect record
    assert_eq!(decode::parse(&bytes_of(&raw)), Err(RecordError::BadLen { header: 24, actual: 72 }));
    raw.header.len = 3;
    assert_eq!(decode::parse(&bytes_of(&raw)), Err(RecordError::BadLen { header: 3, actual: 72 }));
    let mut raw = connect_event(0);
    raw.header.kind = 999;
    assert_eq!(decode::parse(&bytes_of(&raw)), Err(RecordError::UnknownKind(999)));
    let mut raw = connect_event(0);
    raw.header.version = EVENT_VERSION + 1;
    assert_eq!(decode::parse(&bytes_of(&raw)), Err(RecordError::Version { kind: 1, version: EVENT_VERSION + 1 }));
    // trailing bytes beyond the header's length are ignored
    let mut long = good.clone();
    long.extend_from_slice(&[0xff; 8]);
    assert!(decode::parse(&long).is_ok());
    // a data record whose data_len disagrees with its length
    let mut data = data_record(direction::TX, 0, b"abc", 1);
    data[DATA_HEADER_LEN - 8..DATA_HEADER_LEN - 4].copy_from_slice(&2u32.to_ne_bytes());
    assert!(matches!(decode::parse(&data), Err(RecordError::BadLen { .. })));
}

#[test]
fn clock_converts_monotonic_to_wall() {
    let clock = Clock::now();
    let diff = clock.wall(decode::ktime_now()).duration_since(SystemTime::now()).unwrap_or_else(|e| e.duration());
    assert!(diff < Duration::from_secs(1), "{diff:?}");
}

// ---- load ----

#[test]
fn probe_config_holds_the_path() {
    let c = probe_config(Path::new("/run/token-agent.sock"), 77).unwrap();
    assert_eq!(c.self_tgid, 77);
    assert_eq!(c.socket_path_len, 21);
    assert_eq!(&c.socket_path[..21], b"/run/token-agent.sock");
    assert!(c.socket_path[21..].iter().all(|&b| b == 0));
    let long = "/".repeat(SUN_PATH_MAX + 1);
    assert!(matches!(probe_config(Path::new(&long), 1), Err(EbpfError::SocketPath { .. })));
    assert!(probe_config(Path::new(&"/".repeat(SUN_PATH_MAX)), 1).is_ok());
    assert!(matches!(probe_config(Path::new(""), 1), Err(EbpfError::SocketPath { .. })));
}

#[test]
fn group_dead_is_detected_from_the_format_file() {
    let new = "\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n";
    assert!(format_has_group_dead(new));
    assert!(!format_has_group_dead("\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n"));
    assert!(!format_has_group_dead("\tfield:bool group_dead;\toffset:36;\tsize:1;\tsigned:0;\n"));
}

const CAPTURED: [&str; 8] = ["write", "writev", "sendto", "sendmsg", "read", "readv", "recvfrom", "recvmsg"];

#[test]
fn every_capture_syscall_has_an_enter_and_an_exit_tracepoint() {
    let capture = hooks::selected(Group::Capture, Kind::Tracepoint);
    for sc in CAPTURED {
        let (enter, exit) = (format!("syscalls/sys_enter_{sc}"), format!("syscalls/sys_exit_{sc}"));
        assert!(capture.iter().any(|p| p.label() == enter && p.program == format!("io_enter_{sc}")), "{sc}");
        assert!(capture.iter().any(|p| p.label() == exit && p.program == "io_exit"), "{sc}");
    }
    assert_eq!(capture.len(), 16);
    // exits attach first (and detach last): an enter seen always has its exit seen
    let order: Vec<_> = capture.iter().map(|p| p.program).collect();
    assert!(order[..8].iter().all(|p| *p == "io_exit") && order[8..].iter().all(|p| p.starts_with("io_enter_")), "{order:?}");
}

#[test]
fn every_capture_syscall_has_an_fexit_on_its_wrapper() {
    let capture = hooks::selected(Group::Capture, Kind::Trampoline);
    assert_eq!(capture.len(), 8);
    for sc in CAPTURED {
        let p = capture.iter().find(|p| p.program == format!("fexit_{sc}")).unwrap_or_else(|| panic!("{sc}"));
        assert_eq!(p.hook, Hook::Fexit(sc));
        assert_eq!(p.label(), format!("fexit/{}", hooks::wrapper(sc)));
    }
}

#[test]
fn connections_on_either_kind_cover_connect_enter_exit_and_close() {
    let labels = |kind| hooks::selected(Group::Connections, kind).iter().map(|p| p.label()).collect::<Vec<_>>();
    assert_eq!(
        labels(Kind::Tracepoint),
        ["syscalls/sys_exit_connect", "syscalls/sys_enter_connect", "syscalls/sys_enter_close"]
    );
    let (connect, close) = (hooks::wrapper("connect"), hooks::wrapper("close"));
    assert_eq!(labels(Kind::Trampoline), [format!("fexit/{connect}"), format!("fentry/{connect}"), format!("fentry/{close}")]);
    // the process probes exist once, whatever the kind
    for kind in [Kind::Tracepoint, Kind::Trampoline] {
        let process: Vec<_> = hooks::selected(Group::Process, kind).iter().map(|p| p.program).collect();
        assert_eq!(process, ["sched_process_exit", "sched_process_exec"]);
    }
}

#[test]
fn syscall_argument_offsets_come_from_pt_regs_members() {
    // x86_64's struct pt_regs: r15 … r8 (0–56), ax, cx, dx, si, di, orig_ax, …
    let names = ["r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di"];
    let members: Vec<(String, u32)> = names.iter().enumerate().map(|(i, n)| (n.to_string(), i as u32 * 64)).collect();
    assert_eq!(hooks::arg_offsets(&members, ["di", "si", "dx", "r10"]), Ok([112, 104, 96, 56]));
    let e = hooks::arg_offsets(&members, ["di", "si", "dx", "x0"]).unwrap_err();
    assert!(e.contains("no member x0"), "{e}");
    let odd = vec![("di".to_string(), 36u32)];
    assert!(hooks::arg_offsets(&odd, ["di", "di", "di", "di"]).unwrap_err().contains("not 8-byte aligned"));
}

#[test]
fn configured_tracepoints_never_try_trampolines() {
    let why = hooks::trampolines(crate::config::HookPreference::Tracepoint).err().expect("refused");
    assert!(why.contains("hooks = \"tracepoint\""), "{why}");
}

#[test]
fn the_choice_reads_with_its_reason() {
    let t = hooks::Choice { kind: Kind::Trampoline, fallback: None };
    assert_eq!(t.describe("capture"), "capture via fentry/fexit");
    let f = hooks::Choice { kind: Kind::Tracepoint, fallback: Some("no kernel BTF".into()) };
    assert_eq!(f.describe("connect/close"), "connect/close via syscall tracepoints (fentry/fexit: no kernel BTF)");
}

// ---- errors ----

#[test]
fn capability_hints_name_what_is_missing() {
    assert_eq!(capability_hint(Some(0)), "missing CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)");
    assert_eq!(capability_hint(Some(1 << CAP_BPF)), "missing CAP_PERFMON (or CAP_SYS_ADMIN)");
    assert!(capability_hint(Some(1 << CAP_SYS_ADMIN)).contains("policy"));
    assert!(capability_hint(Some((1 << CAP_BPF) | (1 << CAP_PERFMON))).contains("policy"));
    assert!(capability_hint(None).contains("CAP_BPF"));
}

#[test]
fn verifier_complaint_skips_statistics() {
    let log = "0: (b7) r0 = 0\nR1 invalid mem access 'scalar'\nprocessed 12 insns (limit 1000000)\n\n";
    assert_eq!(verifier_complaint(log, &io::Error::from_raw_os_error(13)), "R1 invalid mem access 'scalar'");
    assert!(verifier_complaint("", &io::Error::from_raw_os_error(13)).contains("Permission denied"));
}

#[test]
fn error_messages_are_one_line() {
    let errs = [
        EbpfError::NotBuilt,
        kernel_error("x", &io::Error::from_raw_os_error(libc::EPERM)),
        kernel_error("y", &io::Error::other("a\nb")),
    ];
    for e in errs {
        assert!(!e.to_string().contains('\n'), "{e}");
    }
    assert!(EbpfError::NotBuilt.to_string().contains("cargo xtask build"));
    assert!(kernel_error("x", &io::Error::from_raw_os_error(libc::EPERM)).to_string().contains("EPERM"));
}

// ---- window ----

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn inputs() -> WindowInputs {
    WindowInputs {
        started_at: t(0),
        last_tracked_connect: None,
        unsettled_connections: 0,
        hint: CaptureHint::default(),
    }
}

#[test]
fn capture_window_table() {
    let p = WindowPolicy::default(); // 30 s after connect, 120 s start, 60 s lead, 15 min overdue
    let a = CaptureMode::Adaptive;
    let connect = WindowInputs { last_tracked_connect: Some(t(100)), ..inputs() };
    let start = WindowInputs { unsettled_connections: 2, ..inputs() };
    let refresh = WindowInputs { hint: CaptureHint { next_refresh_at: Some(t(1000)), failing: false }, ..inputs() };
    let failing = WindowInputs { hint: CaptureHint { next_refresh_at: None, failing: true }, ..inputs() };
    let table: &[(&str, CaptureMode, &WindowInputs, u64, Option<Reason>)] = &[
        ("nothing going on", a, &inputs(), 500, None),
        ("off never captures", CaptureMode::Off, &failing, 500, None),
        ("always always does", CaptureMode::Always, &inputs(), 500, Some(Reason::Always)),
        ("at a connect", a, &connect, 100, Some(Reason::Connect)),
        ("29 s after", a, &connect, 129, Some(Reason::Connect)),
        ("30 s after: over", a, &connect, 130, None),
        ("clock stepped back before the connect", a, &connect, 90, Some(Reason::Connect)),
        ("start, connections unsettled", a, &start, 119, Some(Reason::Startup)),
        ("start window capped", a, &start, 120, None),
        ("start, all settled", a, &inputs(), 10, None),
        ("61 s before refresh_at", a, &refresh, 939, None),
        ("60 s before refresh_at", a, &refresh, 940, Some(Reason::Refresh)),
        ("at refresh_at", a, &refresh, 1000, Some(Reason::Refresh)),
        ("overdue 14:59", a, &refresh, 1899, Some(Reason::Refresh)),
        ("overdue 15:00: given up", a, &refresh, 1900, None),
        ("errors persist", a, &failing, 5000, Some(Reason::Failing)),
    ];
    for (what, mode, i, now, want) in table {
        assert_eq!(want_capture(*mode, t(*now), i, &p), *want, "{what}");
        if *mode == a {
            // `windows` opens exactly adaptive's windows; only what they attach differs
            assert_eq!(want_capture(CaptureMode::Windows, t(*now), i, &p), *want, "windows: {what}");
        }
    }
}

#[test]
fn connect_close_move_with_the_window_only_in_windows_mode_on_tracepoints() {
    use CaptureMode::*;
    let table = [
        (Windows, Kind::Tracepoint, true, true),
        // trampolines cost other syscalls nothing: attached for the whole run, as in adaptive
        (Windows, Kind::Trampoline, true, false),
        // no capture programs: no window would ever open, so no connect would ever be seen
        (Windows, Kind::Tracepoint, false, false),
        (Adaptive, Kind::Tracepoint, true, false),
        (Always, Kind::Tracepoint, true, false),
        (Off, Kind::Tracepoint, false, false),
    ];
    for (mode, kind, capture_loaded, want) in table {
        assert_eq!(
            connections_on_demand(mode, kind, capture_loaded),
            want,
            "{mode:?} {kind:?} capture {capture_loaded}"
        );
    }
}

#[test]
fn a_window_attaches_connect_close_and_rediscovers_before_capturing() {
    use Step::*;
    assert_eq!(steps(Transition::Attach, true), [AttachConnections, Rediscover, AttachCapture]);
    assert_eq!(steps(Transition::Detach, true), [DetachCapture, DetachConnections]);
    assert_eq!(steps(Transition::Attach, false), [AttachCapture]);
    assert_eq!(steps(Transition::Detach, false), [DetachCapture]);
}

#[test]
fn windows_mode_walks_idle_open_idle_with_connect_close_inside_the_window() {
    use Step::*;
    // the window follows a refresh hint; connect/close move with every transition
    let p = WindowPolicy { linger: Duration::from_secs(10), ..WindowPolicy::default() };
    let refresh = WindowInputs { hint: CaptureHint { next_refresh_at: Some(t(1000)), failing: false }, ..inputs() };
    let mut sw = Switch::default();
    let mut attached = Vec::new();
    let mut log = Vec::new();
    for (now, i) in [(500, inputs()), (940, refresh), (1000, refresh), (1001, inputs()), (1011, inputs())] {
        let want = want_capture(CaptureMode::Windows, t(now), &i, &p).is_some();
        if let Some(tr) = sw.step(t(now), want, p.linger) {
            for s in steps(tr, true) {
                match s {
                    AttachConnections | AttachCapture => attached.push(*s),
                    DetachCapture => assert_eq!(attached.pop(), Some(AttachCapture), "capture detached first"),
                    DetachConnections => assert_eq!(attached.pop(), Some(AttachConnections)),
                    Rediscover => {
                        assert_eq!(attached, [AttachConnections], "discovery with connect/close on, capture off")
                    }
                }
            }
            sw.set_attached(tr == Transition::Attach);
            log.push((now, tr));
        }
    }
    assert_eq!(log, [(940, Transition::Attach), (1011, Transition::Detach)]);
    assert!(attached.is_empty(), "between windows nothing is attached: {attached:?}");
}

#[test]
fn status_says_where_connect_close_are() {
    let on_demand = attach::Attachments::new(Ok(()), Kind::Tracepoint, true, "/s".into());
    assert_eq!(on_demand.detail("base"), "base; capture idle, connect/close detached");
    let adaptive = attach::Attachments::new(Ok(()), Kind::Tracepoint, false, "/s".into());
    assert_eq!(adaptive.detail("base"), "base; capture idle");
    let unloaded = attach::Attachments::new(Err("unavailable: x".into()), Kind::Tracepoint, false, "/s".into());
    assert_eq!(unloaded.detail("base"), "base; capture unavailable: x");
}

#[test]
fn switch_attaches_at_once_and_detaches_after_lingering() {
    let linger = Duration::from_secs(10);
    let mut s = Switch::default();
    assert_eq!(s.step(t(0), false, linger), None, "nothing to detach");
    assert_eq!(s.step(t(1), true, linger), Some(Transition::Attach));
    // the attach failed: asked again
    assert_eq!(s.step(t(2), true, linger), Some(Transition::Attach));
    s.set_attached(true);
    assert_eq!(s.step(t(3), true, linger), None);
    assert_eq!(s.step(t(12), false, linger), None, "9 s since last wanted");
    assert_eq!(s.step(t(13), false, linger), Some(Transition::Detach));
    s.set_attached(false);
    assert_eq!(s.step(t(14), false, linger), None);
    assert!(!s.attached());
}

// ---- discovery ----

fn nlmsg(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&[0; 10]);
    m.extend_from_slice(body);
    while m.len() % 4 != 0 {
        m.push(0);
    }
    m
}

fn diag_msg(kind: u8, state: u8, inode: u32, name: Option<&[u8]>, peer: Option<u32>) -> Vec<u8> {
    let mut b = vec![libc::AF_UNIX as u8, kind, state, 0];
    b.extend_from_slice(&inode.to_ne_bytes());
    b.extend_from_slice(&[0; 8]);
    let mut attr = |t: u16, data: &[u8]| {
        b.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&t.to_ne_bytes());
        b.extend_from_slice(data);
        while b.len() % 4 != 0 {
            b.push(0);
        }
    };
    if let Some(n) = name {
        attr(0, n);
    }
    if let Some(p) = peer {
        attr(2, &p.to_ne_bytes());
    }
    b
}

#[test]
fn sock_diag_dump_finds_the_clients_of_the_watched_socket() {
    let path = b"/run/ta.sock";
    let stream = libc::SOCK_STREAM as u8;
    let mut dump = Vec::new();
    dump.extend(nlmsg(20, &diag_msg(stream, 10, 100, Some(path), None))); // the listener
    dump.extend(nlmsg(20, &diag_msg(stream, 1, 101, Some(b"/run/ta.sock\0"), Some(201)))); // accepted
    dump.extend(nlmsg(20, &diag_msg(stream, 1, 201, None, Some(101)))); // its client
    dump.extend(nlmsg(20, &diag_msg(stream, 1, 102, Some(b"/run/other.sock"), Some(202)))); // another server
    dump.extend(nlmsg(20, &diag_msg(libc::SOCK_DGRAM as u8, 1, 103, Some(path), Some(203)))); // not a stream
    let mut socks = Vec::new();
    assert!(!parse_dump(&dump, &mut socks).unwrap());
    assert_eq!(socks.len(), 4);
    assert_eq!(socks[1], UnixSock { inode: 101, state: 1, name: Some(path.to_vec()), peer: Some(201) });
    assert!(parse_dump(&nlmsg(3, &[0; 4]), &mut socks).unwrap(), "NLMSG_DONE ends the dump");
    assert_eq!(client_inodes(&socks, |n| n == path), HashSet::from([201]));
    let err = parse_dump(&nlmsg(2, &(-libc::EPERM).to_ne_bytes()), &mut socks).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    assert!(
        parse_dump(&[40, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut socks).is_err(),
        "length past the end"
    );
}

#[test]
fn proc_scan_maps_inodes_to_processes() {
    let root = tempfile::tempdir().unwrap();
    let link = |pid: &str, fd: &str, target: &str| {
        let dir = root.path().join(pid).join("fd");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(target, dir.join(fd)).unwrap();
    };
    link("10", "3", "socket:[201]");
    link("10", "4", "socket:[999]");
    link("11", "7", "socket:[201]"); // inherited by a child: both tracked
    link("12", "5", "/dev/null");
    link("13", "6", "socket:[202]"); // the agent itself
    std::fs::create_dir_all(root.path().join("self")).unwrap();
    let found = scan_proc(root.path(), &HashSet::from([201, 202]), 13);
    let pairs: Vec<_> = found.iter().map(|f| (f.pid, f.fd, f.inode)).collect();
    assert_eq!(pairs, [(10, 3, 201), (11, 7, 201)]);
    assert_eq!(socket_inode(b"socket:[12345]"), Some(12345));
    assert_eq!(socket_inode(b"pipe:[12345]"), None);
    assert_eq!(socket_inode(b"socket:[x]"), None);
}

#[test]
fn discovery_of_a_real_socket_pair_works() {
    // This process is excluded, so a child holds the client end.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ta.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut child = std::process::Command::new("python3")
        .args(["-c", "import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print(s.fileno(), flush=True); time.sleep(30)"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (_server, _) = listener.accept().unwrap();
    let mut line = String::new();
    io::BufRead::read_line(&mut io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let found = discover::discover(&path, std::process::id());
    let _ = child.kill();
    let _ = child.wait();
    let found = found.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].pid, found[0].fd), (child.id(), line.trim().parse::<i32>().unwrap()));
}

// ---- capture: HTTP/2 bytes of one GetToken call ----

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK literal without indexing, new name.
fn lit(name: &str, value: &str) -> Vec<u8> {
    let mut b = vec![0x00, name.len() as u8];
    b.extend_from_slice(name.as_bytes());
    b.push(value.len() as u8);
    b.extend_from_slice(value.as_bytes());
    b
}

/// HPACK literal with incremental indexing of `:path` (static name index 4).
fn path_indexed(value: &str) -> Vec<u8> {
    let mut b = vec![0x44, value.len() as u8];
    b.extend_from_slice(value.as_bytes());
    b
}

fn grpc_message(proto: &[u8]) -> Vec<u8> {
    let mut m = vec![0];
    m.extend_from_slice(&(proto.len() as u32).to_be_bytes());
    m.extend_from_slice(proto);
    m
}

/// The request side of a call on `stream`; `path` is the HPACK for `:path`.
fn request(stream: u32, path: &[u8], preface: bool) -> Vec<u8> {
    let mut b = Vec::new();
    if preface {
        b.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        b.extend(frame(4, 0, 0, &[]));
    }
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
    block.extend_from_slice(path);
    block.extend(lit("content-type", "application/grpc"));
    b.extend(frame(1, 0x4, stream, &block));
    b.extend(frame(0, 0x1, stream, &grpc_message(&[0x0a, 4, b't', b'a', b'g', b'1'])));
    b
}

/// The response side: OK with `expires_at` seconds, or a Trailers-Only error.
fn response(stream: u32, settings: bool, expires: Option<u64>, status: &str) -> Vec<u8> {
    let mut b = Vec::new();
    if settings {
        b.extend(frame(4, 0, 0, &[]));
        b.extend(frame(4, 0x1, 0, &[]));
    }
    match expires {
        Some(secs) => {
            b.extend(frame(1, 0x4, stream, &[&[0x88][..], &lit("content-type", "application/grpc")].concat()));
            let mut ts = vec![0x08];
            let mut v = secs;
            while v >= 0x80 {
                ts.push((v as u8) | 0x80);
                v >>= 7;
            }
            ts.push(v as u8);
            let mut proto = vec![0x0a, TOKEN.len() as u8];
            proto.extend_from_slice(TOKEN.as_bytes());
            proto.extend_from_slice(&[0x12, ts.len() as u8]);
            proto.extend(ts);
            b.extend(frame(0, 0, stream, &grpc_message(&proto)));
            b.extend(frame(1, 0x5, stream, &lit("grpc-status", status)));
        }
        None => {
            let block = [&[0x88][..], &lit("content-type", "application/grpc"), &lit("grpc-status", status)].concat();
            b.extend(frame(1, 0x5, stream, &block));
        }
    }
    b
}

/// Feeds `tracker` a record as the kernel would send it.
fn feed(tracker: &mut Tracker, dir: u8, off: u64, bytes: &[u8], ts_ns: u64) -> Vec<Event> {
    let rec = data_record(dir, off, bytes, ts_ns);
    let Ok(Record::Data { head, payload }) = decode::parse(&rec) else { panic!("not data") };
    tracker.on_data(&head, payload, &CLOCK, |pid| fake_describe(pid, "orphan"))
}

fn calls(events: Vec<Event>) -> Vec<CallObserved> {
    events
        .into_iter()
        .map(|e| match e {
            Event::Call(c) => c,
            other => panic!("not a call: {other:?}"),
        })
        .collect()
}

const EXPIRES: u64 = 1_800_036_000;

#[test]
fn a_connection_seen_from_its_start_yields_full_calls() {
    let mut tr = Tracker::new(ConnectionConfig::default());
    tr.capture_attached(1_000);
    tr.on_connect(&connect_event(0), CLOCK.wall(5_000_000_123), fake_describe(4242, "compute-node"), Some(55));
    assert_eq!(tr.last_tracked_connect(), Some(CLOCK.wall(5_000_000_123)));

    let req = request(1, &path_indexed(METHOD), true);
    assert!(feed(&mut tr, direction::TX, 0, &req, 6_000_000_000).is_empty());
    let resp = response(1, true, Some(EXPIRES), "0");
    // the response arrives in two reads
    let (a, b) = resp.split_at(20);
    assert!(feed(&mut tr, direction::RX, 0, a, 6_000_500_000).is_empty());
    let got = calls(feed(&mut tr, direction::RX, a.len() as u64, b, 6_001_000_000));
    assert_eq!(
        got,
        [CallObserved {
            source: CallSource::Ebpf,
            at: CLOCK.wall(6_001_000_000),
            duration: Some(Duration::from_millis(1)),
            process: fake_describe(4242, "compute-node"),
            uid: Some(1000),
            method: Some(METHOD.into()),
            status: Some(GrpcStatus::OK),
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(EXPIRES)),
            request_id: None,
            error: None,
        }]
    );
    // the second call refers to :path through the dynamic table: still known
    let off = req.len() as u64;
    feed(&mut tr, direction::TX, off, &request(3, &[0xbe], false), 7_000_000_000);
    let got = calls(feed(&mut tr, direction::RX, resp.len() as u64, &response(3, false, None, "14"), 7_000_100_000));
    assert_eq!((got[0].method.as_deref(), got[0].status), (Some(METHOD), Some(GrpcStatus::UNAVAILABLE)));
    assert_eq!((tr.stats().from_start, tr.stats().late_joins, tr.stats().calls), (1, 0, 2));
    let dbg = format!("{:?}", got);
    assert!(!dbg.contains(TOKEN));
}

#[test]
fn a_late_joined_connection_cannot_name_a_method_indexed_before() {
    let mut tr = Tracker::new(ConnectionConfig::default());
    // connected while capture was detached: attached only later
    tr.on_connect(&connect_event(0), CLOCK.wall(5_000_000_123), fake_describe(4242, "compute-node"), Some(55));
    tr.capture_attached(5_500_000_000);
    let (tx0, rx0) = (900, 700); // bytes moved before the probes were attached
    feed(&mut tr, direction::TX, tx0, &request(5, &[0xbe], false), 6_000_000_000);
    let got = calls(feed(&mut tr, direction::RX, rx0, &response(5, false, Some(EXPIRES), "0"), 6_002_000_000));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].method, None, "the :path index points into the unknown part of the table");
    assert_eq!(got[0].status, Some(GrpcStatus::OK));
    assert_eq!(got[0].expires_at, Some(UNIX_EPOCH + Duration::from_secs(EXPIRES)));
    assert_eq!(tr.stats().late_joins, 1);
}

#[test]
fn discovered_connections_settle_after_a_call_and_gaps_are_flagged() {
    let mut tr = Tracker::new(ConnectionConfig::default());
    assert!(tr.on_discovered((4242, 7), 55, || fake_describe(4242, "python3")));
    assert!(!tr.on_discovered((4242, 7), 55, || panic!("known already")));
    assert_eq!(tr.unsettled(), 1);
    tr.capture_attached(1);
    feed(&mut tr, direction::TX, 100, &request(7, &path_indexed(METHOD), false), 2_000);
    let got = calls(feed(&mut tr, direction::RX, 50, &response(7, false, Some(EXPIRES), "0"), 3_000));
    assert_eq!(got[0].method.as_deref(), Some(METHOD), "a literal :path decodes after a late join");
    assert_eq!(got[0].process.comm, "python3");
    assert_eq!(tr.unsettled(), 0);
    // bytes lost between two records: the next chunk is a gap
    feed(&mut tr, direction::TX, 100 + 5000, b"\0\0\0\x04\0\0\0\0\0", 4_000);
    assert_eq!(tr.stats().gaps, 1);
}

#[test]
fn exits_closes_and_revalidation_forget_connections() {
    let mut tr = Tracker::new(ConnectionConfig::default());
    tr.on_connect(&connect_event(0), t(0), fake_describe(4242, "a"), Some(55));
    assert!(tr.on_discovered((4242, 8), 56, || fake_describe(4242, "a")));
    assert!(tr.on_discovered((99, 3), 57, || fake_describe(99, "b")));
    assert!(tr.on_discovered((98, 3), 58, || fake_describe(98, "c")));
    let mut fds = tr.on_process_gone(4242);
    fds.sort();
    assert_eq!(fds, [7, 8]);
    tr.on_close((99, 3));
    assert_eq!(tr.connections(), 1);
    // /proc shows fd 3 of 98 as another socket now (a dup2 over it)
    assert_eq!(tr.revalidate(|_| Some(77), |_| true), [(98, 3)]);
    assert_eq!(tr.connections(), 0);
    // a failed connect is not tracked
    tr.on_connect(&connect_event(-2), t(0), fake_describe(4242, "a"), None);
    assert_eq!(tr.connections(), 0);
}

#[test]
fn an_unidentified_socket_stays_tracked_only_when_vouched_for() {
    let mut tr = Tracker::new(ConnectionConfig::default());
    // connects handled after their fds had gone: inode unknown
    tr.on_connect(&connect_event(0), t(0), fake_describe(4242, "a"), None);
    let mut other = connect_event(0);
    other.fd = 9;
    tr.on_connect(&other, t(0), fake_describe(4242, "a"), None);
    assert_eq!(tr.connections(), 2);
    // the periodic check (close probe attached) trusts what is at the fd
    assert!(tr.revalidate(|_| Some(500), |_| true).is_empty());
    let mut tr2 = Tracker::new(ConnectionConfig::default());
    tr2.on_connect(&connect_event(0), t(0), fake_describe(4242, "a"), None);
    tr2.on_connect(&other, t(0), fake_describe(4242, "a"), None);
    // at a window's open: only the socket discovery found among the clients stays
    let stale = tr2.revalidate(|(_, fd)| Some(if fd == 9 { 600 } else { 500 }), |inode| inode == 600);
    assert_eq!(stale, [(4242, 7)]);
    assert_eq!(tr2.connections(), 1);
    // identified now: later checks compare inodes as usual
    assert_eq!(tr2.revalidate(|_| Some(601), |_| true), [(4242, 9)]);
}

#[test]
fn calls_with_nothing_known_are_not_reported() {
    let call = DecodedCall {
        stream_id: 1,
        method: None,
        start: t(0),
        end: t(1),
        status: None,
        status_inferred: false,
        expires_at: None,
        reset: false,
    };
    let p = fake_describe(1, "x");
    assert_eq!(call_event(call.clone(), &p, 0), None);
    let inferred_error = DecodedCall { status_inferred: true, ..call };
    let Some(Event::Call(c)) = call_event(inferred_error, &p, 0) else { panic!("no event") };
    assert_eq!((c.status, c.duration), (None, Some(Duration::from_secs(1))));
}

/// `run` is spawned on a multi-threaded runtime.
#[allow(dead_code)]
fn assert_send() {
    fn is_send<T: Send>(_: T) {}
    fn check(s: EbpfSource, tx: tokio::sync::mpsc::Sender<Event>, h: crate::sources::Health) {
        let (_hints_tx, hints) = tokio::sync::watch::channel(CaptureHint::default());
        is_send(s.run(tx.clone(), h.clone()));
        is_send(run_with_retry(PathBuf::new(), Settings::default(), tx, h, hints, Duration::ZERO));
    }
    let _ = check;
}
