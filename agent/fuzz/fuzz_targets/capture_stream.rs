//! Any bytes as a captured connection to token-agent: the HTTP/2 + HPACK +
//! gRPC decoder that runs on what the eBPF probes copy out of any process.
//!
//! Input: one flags byte (bit 0: joined late), then chunks as the probes
//! deliver them, each a header byte (bit 0: server → client; bits 1 and 2
//! both set: bytes were lost before it), a little-endian u16 length (capped
//! to what is left and to 4 KiB) and its bytes.
//! Beyond "never panics": every buffer stays under its documented cap and
//! every call is well-formed.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use tokenwatch::protocol::limits::{MAX_CONNECTION_BUFFERED, MAX_HPACK_TABLE, MAX_METHOD_LEN, MAX_OPEN_STREAMS};
use tokenwatch::protocol::{Connection, Direction};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else { return };
    let mut conn = if flags & 1 == 1 { Connection::new_late_join() } else { Connection::new_from_start() };
    let mut i = 0u64;
    while let [h, lo, hi, tail @ ..] = rest {
        let dir = if h & 1 == 1 { Direction::ServerToClient } else { Direction::ClientToServer };
        let gap = h & 6 == 6;
        let len = (u16::from_le_bytes([*lo, *hi]) as usize).min(4096).min(tail.len());
        let (chunk, after) = tail.split_at(len);
        rest = after;
        i += 1;
        let at = UNIX_EPOCH + Duration::from_secs(1_795_615_200 + i);
        for c in conn.feed(dir, at, chunk, gap) {
            assert!(c.end >= c.start, "{c:?}");
            assert!(c.method.as_ref().is_none_or(|m| m.len() <= MAX_METHOD_LEN), "{c:?}");
        }
        let s = conn.stats();
        assert!(s.buffered_bytes <= MAX_CONNECTION_BUFFERED, "{s:?}");
        assert!(s.peak_buffered_bytes <= MAX_CONNECTION_BUFFERED, "{s:?}");
        assert!(s.open_streams <= MAX_OPEN_STREAMS, "{s:?}");
        assert!(s.hpack_table_bytes <= 2 * MAX_HPACK_TABLE, "{s:?}");
    }
});
