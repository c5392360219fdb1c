//! Captured HTTP/2 bytes of GetToken calls → call events.
use super::*;

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
