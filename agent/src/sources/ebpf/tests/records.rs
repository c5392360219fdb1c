//! Ring-buffer records → typed records.
use super::*;

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
    let secret = data_record(direction::RX, 0, b"t1.SECRET-TOKEN-BYTES", 1);
    let debug = format!("{:?}", decode::parse(&secret).expect("data"));
    assert!(!debug.contains("SECRET") && !debug.contains("83, 69, 67") && debug.contains("payload_len: 21"), "{debug}");

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
