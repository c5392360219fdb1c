//! Whole-connection tests on hand-encoded gRPC exchanges.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::grpc::code;
use super::testutil::{self as t, Exchange, Repr, GET_TOKEN, MARKER, TOKEN};
use super::{Connection, ConnectionConfig, DecodedCall};

const SECS: i64 = 1_767_225_600;
const NANOS: u32 = 987_654_321;

fn ts(i: usize) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i as u64)
}

fn expiry(secs: i64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs as u64, nanos)
}

/// Feeds chunks `from..` in order, chunk `i` captured at `ts(i)`.
fn replay_from(conn: &mut Connection, x: &Exchange, from: usize) -> Vec<DecodedCall> {
    let mut calls = Vec::new();
    for (i, (dir, bytes)) in x.chunks.iter().enumerate().skip(from) {
        calls.extend(conn.feed(*dir, ts(i), bytes, false));
    }
    calls
}

fn replay(conn: &mut Connection, x: &Exchange) -> Vec<DecodedCall> {
    replay_from(conn, x, 0)
}

fn ok_call(stream_id: u32, start: usize, end: usize, expires_at: SystemTime) -> DecodedCall {
    DecodedCall {
        stream_id,
        method: Some(GET_TOKEN.into()),
        start: ts(start),
        end: ts(end),
        status: Some(code::OK),
        status_inferred: false,
        expires_at: Some(expires_at),
        reset: false,
    }
}

#[test]
fn ok_call_with_data_and_trailers() {
    for huffman in [false, true] {
        let mut x = Exchange::new(huffman);
        x.unary_ok(1, SECS, NANOS);
        let mut conn = Connection::new_from_start();
        assert_eq!(
            replay(&mut conn, &x),
            vec![ok_call(1, 4, 7, expiry(SECS, NANOS))]
        );
        let s = conn.stats();
        assert_eq!(
            (
                s.calls_completed,
                s.open_streams,
                s.desyncs,
                s.hpack_unknown_refs
            ),
            (1, 0, 0, 0)
        );
        assert_eq!(
            (s.header_blocks, s.header_blocks_lost, s.buffered_bytes),
            (3, 0, 0)
        );
    }
}

#[test]
fn expires_at_exact_with_message_split_over_data_frames() {
    for (secs, nanos) in [
        (SECS, NANOS),
        (SECS, 0),
        (0, 1),
        (253_402_300_799, 999_999_999),
    ] {
        let mut x = Exchange::new(true);
        x.request(1);
        x.response_headers(1);
        let msg = t::grpc_message(false, &t::get_token_response(TOKEN, secs, nanos));
        let (a, rest) = msg.split_at(3);
        let (b, c) = rest.split_at(rest.len() - 4);
        x.s2c(t::data(1, a, false));
        x.s2c(t::data_padded(1, b, 9, false));
        x.s2c(t::data(1, c, false));
        x.trailers(1, 0);
        let calls = replay(&mut Connection::new_from_start(), &x);
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls[0].expires_at,
            Some(expiry(secs, nanos)),
            "{secs}.{nanos}"
        );
        let since_epoch = calls[0]
            .expires_at
            .and_then(|e| e.duration_since(UNIX_EPOCH).ok());
        assert_eq!(
            since_epoch.map(|d| (d.as_secs(), d.subsec_nanos())),
            Some((secs as u64, nanos))
        );
    }
}

#[test]
fn configurable_expires_at_field() {
    let mut x = Exchange::new(false);
    x.request(1);
    x.response_headers(1);
    // Field 3 holds the timestamp; field 2 is some other submessage.
    let body = vec![
        0x0a, 2, b'x', b'y', 0x12, 2, 0x08, 0x05, 0x1a, 4, 0x08, 0x2a, 0x10, 0x07,
    ];
    x.s2c(t::data(1, &t::grpc_message(false, &body), false));
    x.trailers(1, 0);
    let cfg = ConnectionConfig {
        expires_at_field: 3,
        ..ConnectionConfig::default()
    };
    let calls = replay(&mut Connection::with_config(cfg, false), &x);
    assert_eq!(calls[0].expires_at, Some(expiry(42, 7)));
    let calls = replay(&mut Connection::new_from_start(), &x);
    assert_eq!(calls[0].expires_at, Some(expiry(5, 0)));
}

#[test]
fn trailers_only_unavailable_with_literal_status() {
    let mut x = Exchange::new(false);
    x.request(1);
    let mut block = Vec::new();
    x.server.field(&mut block, ":status", "200", Repr::Auto);
    x.server.field(
        &mut block,
        "content-type",
        "application/grpc",
        Repr::WithoutIndexing,
    );
    x.server
        .field(&mut block, "grpc-status", "14", Repr::WithoutIndexing);
    x.server.field(
        &mut block,
        "grpc-message",
        "token-agent is down",
        Repr::NeverIndexed,
    );
    x.s2c(t::headers(1, &block, true));
    let calls = replay(&mut Connection::new_from_start(), &x);
    let want = DecodedCall {
        status: Some(code::UNAVAILABLE),
        expires_at: None,
        end: ts(5),
        ..ok_call(1, 4, 5, UNIX_EPOCH)
    };
    assert_eq!(calls, vec![want]);
}

/// History before attach: a successful call and a failing one, so the
/// client's `:path` and the server's `grpc-status: 14` sit in the tables.
fn history() -> Exchange {
    let mut x = Exchange::new(false);
    x.unary_ok(1, SECS, NANOS);
    x.request(3);
    let fields = [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-status", "14"),
    ];
    let block = x.server.encode(&fields);
    x.s2c(t::headers(3, &block, true));
    x
}

#[test]
fn trailers_only_with_unknown_status_index_is_an_inferred_error() {
    let mut x = history();
    let attach = x.chunks.len();
    x.request(5); // `:path` is now an index into the pre-attach table
    let fields = [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-status", "14"),
    ];
    let block = x.server.encode(&fields);
    assert!(
        block.iter().all(|b| b & 0x80 != 0),
        "all indexed: {block:02x?}"
    );
    x.s2c(t::headers(5, &block, true));

    let mut conn = Connection::new_late_join();
    let calls = replay_from(&mut conn, &x, attach);
    let want = DecodedCall {
        stream_id: 5,
        method: None,
        start: ts(attach),
        end: ts(attach + 1),
        status: None,
        status_inferred: true,
        expires_at: None,
        reset: false,
    };
    assert_eq!(calls, vec![want]);
    let s = conn.stats();
    assert!(s.hpack_unknown_refs >= 3, "{s:?}");
    assert_eq!(s.calls_method_unknown, 1);
}

#[test]
fn late_join_ok_call_is_inferred_ok_with_exact_expiry() {
    let mut x = history();
    let attach = x.chunks.len();
    x.unary_ok(5, SECS + 3600, 0);
    let mut conn = Connection::new_late_join();
    let calls = replay_from(&mut conn, &x, attach);
    let want = DecodedCall {
        method: None,
        status: Some(code::OK),
        status_inferred: true,
        ..ok_call(5, attach, attach + 3, expiry(SECS + 3600, 0))
    };
    assert_eq!(calls, vec![want]);
}

/// What late join means for a Go-like client: `:path` was indexed before
/// attach and is sent as an index; each call inserts a new `grpc-timeout`.
/// The method stays unknown until the client's encoder has evicted its
/// `:path` entry and sends it as a literal again; status (inferred) and
/// `expires_at` decode from the first call on.
#[test]
fn late_join_method_known_once_the_client_reinserts_path() {
    let mut x = history();
    let attach = x.chunks.len();
    for n in 0..100u32 {
        let stream_id = 5 + 2 * n;
        x.request_with_timeout(stream_id, &format!("{}m", 4000 + n));
        x.response_headers(stream_id);
        let msg = t::grpc_message(false, &t::get_token_response(TOKEN, SECS, n));
        x.s2c(t::data(stream_id, &msg, false));
        x.trailers(stream_id, 0);
    }
    let calls = replay_from(&mut Connection::new_late_join(), &x, attach);
    assert_eq!(calls.len(), 100);
    for (n, c) in calls.iter().enumerate() {
        assert_eq!(
            (c.status, c.expires_at),
            (Some(code::OK), Some(expiry(SECS, n as u32)))
        );
    }
    let first_known = calls
        .iter()
        .position(|c| c.method.is_some())
        .expect("method learnt");
    // Client table at attach: 341 octets (`:path` 83, authority 51,
    // content-type 60, user-agent 56, te 42, grpc-timeout 49); 49 octets per
    // call evict `:path` during call 77; call 78 re-sends it as a literal.
    assert_eq!(first_known, 77);
    assert!(calls[first_known..]
        .iter()
        .all(|c| c.method.as_deref() == Some(GET_TOKEN)));
    assert!(calls[..first_known].iter().all(|c| c.method.is_none()));
}

#[test]
fn rst_stream_from_either_side() {
    let mut x = Exchange::new(true);
    x.request(1);
    x.response_headers(1);
    x.s2c(t::rst_stream(1, 7)); // REFUSED_STREAM
    x.request(3);
    x.c2s(t::rst_stream(3, 8)); // client CANCEL
    let calls = replay(&mut Connection::new_from_start(), &x);
    let refused = DecodedCall {
        status: Some(code::UNAVAILABLE),
        status_inferred: true,
        expires_at: None,
        reset: true,
        ..ok_call(1, 4, 6, UNIX_EPOCH)
    };
    let cancelled = DecodedCall {
        stream_id: 3,
        status: Some(code::CANCELLED),
        start: ts(7),
        end: ts(8),
        ..refused.clone()
    };
    assert_eq!(calls, vec![refused, cancelled]);
    assert_eq!(Connection::new_from_start().stats().calls_reset, 0);
}

#[test]
fn two_concurrent_streams() {
    let mut x = Exchange::new(true);
    x.request(1);
    x.request(3);
    x.response_headers(3);
    x.response_headers(1);
    let m1 = t::grpc_message(false, &t::get_token_response(TOKEN, SECS, 1));
    let m3 = t::grpc_message(false, &t::get_token_response(TOKEN, SECS + 1, 3));
    let (a, b) = m1.split_at(40);
    x.s2c(t::data(1, a, false));
    x.s2c(t::data(3, &m3, false));
    x.s2c(t::data(1, b, false));
    x.trailers(3, 0);
    x.trailers(1, 0);
    let calls = replay(&mut Connection::new_from_start(), &x);
    assert_eq!(
        calls,
        vec![
            ok_call(3, 5, 11, expiry(SECS + 1, 3)),
            ok_call(1, 4, 12, expiry(SECS, 1))
        ]
    );
}

#[test]
fn every_chunk_fed_byte_by_byte_gives_the_same_calls() {
    let mut x = Exchange::new(true);
    x.unary_ok(1, SECS, NANOS);
    x.unary_ok(3, SECS + 1, NANOS);
    let whole = replay(&mut Connection::new_from_start(), &x);
    assert_eq!(whole.len(), 2);
    let mut conn = Connection::new_from_start();
    let mut calls = Vec::new();
    for (i, (dir, bytes)) in x.chunks.iter().enumerate() {
        for b in bytes.chunks(1) {
            calls.extend(conn.feed(*dir, ts(i), b, false));
        }
    }
    assert_eq!(calls, whole);
}

/// Attaching at any byte offset: no panic, never a wrong value, and the
/// calls that start after the attach point decode.
#[test]
fn joining_mid_stream_at_every_offset() {
    let mut x = Exchange::new(true);
    let streams = [1u32, 3, 5, 7, 9];
    for (i, s) in streams.iter().enumerate() {
        x.unary_ok(*s, SECS + i as i64, NANOS);
    }
    let total: usize = x.chunks.iter().map(|(_, b)| b.len()).sum();
    let last_request_chunk = x.chunks.len() - 4;
    let last_start: usize = x.chunks[..last_request_chunk]
        .iter()
        .map(|(_, b)| b.len())
        .sum();
    for k in 0..total {
        let mut conn = Connection::new_late_join();
        let mut calls = Vec::new();
        let mut offset = 0;
        for (i, (dir, bytes)) in x.chunks.iter().enumerate() {
            let end = offset + bytes.len();
            if end > k {
                let from = k.saturating_sub(offset);
                calls.extend(conn.feed(*dir, ts(i), &bytes[from..], false));
            }
            offset = end;
        }
        for c in &calls {
            let i = streams
                .iter()
                .position(|s| *s == c.stream_id)
                .expect("known stream");
            assert!(
                c.method.is_none() || c.method.as_deref() == Some(GET_TOKEN),
                "k={k} {c:?}"
            );
            assert!(
                c.expires_at.is_none() || c.expires_at == Some(expiry(SECS + i as i64, NANOS)),
                "k={k} {c:?}"
            );
            assert!(
                c.status.is_none() || c.status == Some(code::OK),
                "k={k} {c:?}"
            );
        }
        if k <= last_start {
            let last = calls.iter().find(|c| c.stream_id == 9);
            let last = last.unwrap_or_else(|| panic!("k={k}: last call missing: {calls:?}"));
            assert_eq!(last.status, Some(code::OK), "k={k}");
            assert_eq!(last.expires_at, Some(expiry(SECS + 4, NANOS)), "k={k}");
        }
    }
}

#[test]
fn gap_in_response_taints_the_open_call_then_recovers() {
    let mut x = Exchange::new(false);
    x.unary_ok(1, SECS, NANOS);
    x.unary_ok(3, SECS + 1, NANOS);
    let mut conn = Connection::new_from_start();
    let mut calls = Vec::new();
    for (i, (dir, bytes)) in x.chunks.iter().enumerate() {
        calls.extend(match i {
            6 => conn.feed(*dir, ts(i), &bytes[..bytes.len() / 2], false), // DATA of call 1 cut short
            7 => conn.feed(*dir, ts(i), bytes, true),
            _ => conn.feed(*dir, ts(i), bytes, false),
        });
    }
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0].stream_id, calls[0].status, calls[0].expires_at),
        (1, Some(0), None)
    );
    assert_eq!(calls[1].expires_at, Some(expiry(SECS + 1, NANOS)));
    assert_eq!(calls[1].status, Some(code::OK));
    let s = conn.stats();
    assert_eq!((s.gaps, s.desyncs, s.resyncs), (1, 1, 1));
}

#[test]
fn goaway_refuses_streams_above_last() {
    let mut x = Exchange::new(true);
    x.request(1);
    x.request(3);
    x.request(5);
    x.s2c(t::goaway(1, 0));
    let calls = replay(&mut Connection::new_from_start(), &x);
    let ids: Vec<(u32, Option<u32>, bool)> = calls
        .iter()
        .map(|c| (c.stream_id, c.status, c.reset))
        .collect();
    assert_eq!(
        ids,
        vec![
            (3, Some(code::UNAVAILABLE), true),
            (5, Some(code::UNAVAILABLE), true)
        ]
    );
}

#[test]
fn compressed_message_and_missing_trailers() {
    let mut x = Exchange::new(true);
    x.request(1);
    x.response_headers(1);
    x.s2c(t::data(1, &t::grpc_message(true, b"gzipped"), false));
    x.trailers(1, 0);
    x.request(3);
    x.response_headers(3);
    x.s2c(t::data(
        3,
        &t::grpc_message(false, &t::get_token_response(TOKEN, SECS, 0)),
        true,
    ));
    let mut conn = Connection::new_from_start();
    let calls = replay(&mut conn, &x);
    assert_eq!(
        (calls[0].status, calls[0].expires_at),
        (Some(code::OK), None)
    );
    assert_eq!(conn.stats().messages_compressed, 1);
    assert_eq!(
        (calls[1].status, calls[1].status_inferred),
        (Some(code::INTERNAL), true)
    );
    assert_eq!(calls[1].expires_at, Some(expiry(SECS, 0)));
}

#[test]
fn open_streams_are_capped() {
    let mut x = Exchange::new(false);
    for s in (1..20).step_by(2) {
        x.request(s);
    }
    let cfg = ConnectionConfig {
        max_open_streams: 4,
        ..ConnectionConfig::default()
    };
    let mut conn = Connection::with_config(cfg, false);
    assert!(replay(&mut conn, &x).is_empty());
    let s = conn.stats();
    assert_eq!((s.open_streams, s.streams_evicted), (4, 6));
}

#[test]
fn token_never_appears_in_debug_output() {
    let mut x = history();
    x.unary_ok(5, SECS, NANOS);
    let all: Vec<u8> = x
        .chunks
        .iter()
        .flat_map(|(_, b)| b.iter().copied())
        .collect();
    assert!(
        all.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
        "the input carries the token"
    );

    let mut debug = String::new();
    // Fresh, late-joined at several offsets (the hunt window then holds
    // token bytes), and with a gap inside a message.
    for (late, skip) in [(false, 0usize), (true, 3), (true, 7), (true, 150)] {
        let mut conn = if late {
            Connection::new_late_join()
        } else {
            Connection::new_from_start()
        };
        for (i, (dir, bytes)) in x.chunks.iter().enumerate() {
            let from = if i == 6 { skip.min(bytes.len()) } else { 0 };
            let calls = conn.feed(*dir, ts(i), &bytes[from..], from > 0);
            debug += &format!("{calls:?}");
            if i == 6 {
                debug += &format!("{conn:?}"); // mid-stream state
            }
        }
        debug += &format!("{:?}{conn:?}", conn.stats());
    }
    // Errors from the frame and HPACK layers on the same bytes.
    debug += &format!("{:?}", super::http2::parse_frame(&all[24..], 16_384));
    debug += &format!("{:?}", super::hpack::Decoder::new().decode(&all));
    assert!(debug.contains("Some(SystemTime") || debug.contains("expires_at"));
    assert!(!debug.contains(MARKER), "token leaked into Debug output");
    assert!(!debug.contains(&TOKEN[..20]));
}
