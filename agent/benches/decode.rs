//! Decoding throughput of a realistic captured token-agent connection:
//! many GetToken calls (Huffman-coded request headers with dynamic-table
//! references, response headers, a ~1 KB message carrying a token and
//! `expires_at`, trailers), fed chunk by chunk as the capture delivers them.
//! Reported as bytes/s by criterion (group `decode`).

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokenwatch::protocol::Connection;

/// `testutil.rs` refers to `crate::protocol`, as it does inside the library.
mod protocol {
    pub use tokenwatch::protocol::*;
}
#[path = "../src/protocol/testutil.rs"]
mod testutil;

use testutil::{data, get_token_response, grpc_message, window_update, Exchange};

const CALLS: u32 = 1000;

fn token() -> String {
    let mut t = String::from("t1.9euelZqTESTTOKENMARKER");
    while t.len() < 900 {
        t.push_str("aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789-_");
    }
    t.truncate(900);
    t.push_str(".sig");
    t
}

/// The captured chunks and where the last 90% of calls start.
fn capture() -> (Exchange, usize) {
    let token = token();
    let mut x = Exchange::new(true);
    let mut late_from = 0;
    for i in 0..CALLS {
        if i == CALLS / 10 {
            late_from = x.chunks.len();
        }
        let stream_id = 2 * i + 1;
        x.request(stream_id);
        x.response_headers(stream_id);
        let msg = grpc_message(
            false,
            &get_token_response(&token, 1_767_225_600 + i64::from(i), 123_456_789),
        );
        x.s2c(data(stream_id, &msg, false));
        x.trailers(stream_id, 0);
        x.c2s(window_update(0, msg.len() as u32));
    }
    (x, late_from)
}

fn feed_all(conn: &mut Connection, x: &Exchange, from: usize, at: SystemTime) -> usize {
    let mut calls = 0;
    for (dir, bytes) in &x.chunks[from..] {
        calls += conn.feed(*dir, at, bytes, false).len();
    }
    calls
}

fn decode(c: &mut Criterion) {
    let (x, late_from) = capture();
    let at = UNIX_EPOCH + Duration::from_secs(1_767_000_000);
    let total: usize = x.chunks.iter().map(|(_, b)| b.len()).sum();
    let late_total: usize = x.chunks[late_from..].iter().map(|(_, b)| b.len()).sum();

    // Sanity: every call decodes, with its expiry.
    let mut conn = Connection::new_from_start();
    assert_eq!(feed_all(&mut conn, &x, 0, at), CALLS as usize);
    assert_eq!(conn.stats().hpack_unknown_refs, 0);

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("get_token_stream", |b| {
        b.iter(|| {
            let mut conn = Connection::new_from_start();
            black_box(feed_all(&mut conn, &x, 0, at))
        })
    });
    g.throughput(Throughput::Bytes(late_total as u64));
    g.bench_function("get_token_stream_late_join", |b| {
        b.iter(|| {
            let mut conn = Connection::new_late_join();
            black_box(feed_all(&mut conn, &x, late_from, at))
        })
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
