//! Property "fuzz" targets for `tokenwatch::protocol`: arbitrary and
//! mutated byte streams, random chunking and gaps, arbitrary HPACK blocks.
//! Nothing may panic, and every buffer stays under its documented cap.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use tokenwatch::protocol::hpack::Decoder;
use tokenwatch::protocol::limits::{MAX_CONNECTION_BUFFERED, MAX_HPACK_TABLE, MAX_OPEN_STREAMS};
use tokenwatch::protocol::{Connection, DecodedCall, Direction};

/// `testutil.rs` refers to `crate::protocol`, as it does inside the library.
mod protocol {
    pub use tokenwatch::protocol::*;
}
#[path = "../src/protocol/testutil.rs"]
mod testutil;

use testutil::{Exchange, MARKER};

const CASES: u32 = 2000;

fn at(i: usize) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i as u64)
}

fn dir(client: bool) -> Direction {
    if client {
        Direction::ClientToServer
    } else {
        Direction::ServerToClient
    }
}

fn connection(late: bool) -> Connection {
    if late {
        Connection::new_late_join()
    } else {
        Connection::new_from_start()
    }
}

fn check_bounds(conn: &Connection) {
    let s = conn.stats();
    assert!(s.buffered_bytes <= MAX_CONNECTION_BUFFERED, "{s:?}");
    assert!(s.peak_buffered_bytes <= MAX_CONNECTION_BUFFERED, "{s:?}");
    assert!(s.open_streams <= MAX_OPEN_STREAMS, "{s:?}");
    assert!(s.hpack_table_bytes <= 2 * MAX_HPACK_TABLE, "{s:?}");
}

fn check_call(c: &DecodedCall) {
    assert!(c.end >= c.start, "{c:?}");
    assert!(!format!("{c:?}").contains(MARKER));
}

/// A realistic connection: a few GetToken calls, one failing, one reset.
fn sample_exchange() -> Exchange {
    let mut x = Exchange::new(true);
    x.unary_ok(1, 1_767_225_600, 5);
    x.request(3);
    x.trailers(3, 14);
    x.unary_ok(5, 1_767_229_200, 6);
    x.request(7);
    x.s2c(testutil::rst_stream(7, 8));
    x.unary_ok(9, 1_767_232_800, 7);
    x
}

/// Random edits of a byte stream.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Edit::Flip(i, x)),
        (any::<usize>(), 1..40usize).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..20))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
    ]
}

fn apply(bytes: &mut Vec<u8>, e: &Edit) {
    if bytes.is_empty() {
        return;
    }
    match e {
        Edit::Flip(i, x) => {
            let i = i % bytes.len();
            bytes[i] ^= x;
        }
        Edit::Delete(i, n) => {
            let i = i % bytes.len();
            let end = (i + n).min(bytes.len());
            bytes.drain(i..end);
        }
        Edit::Insert(i, b) => {
            let i = i % bytes.len();
            bytes.splice(i..i, b.iter().copied());
        }
    }
}

/// Splits `bytes` at the given cut fractions.
fn cut(bytes: &[u8], cuts: &[u16]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| usize::from(*c) * bytes.len() / 65_536)
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut prev = 0;
    for p in points.into_iter().chain([bytes.len()]) {
        out.push(bytes[prev..p.max(prev)].to_vec());
        prev = p.max(prev);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_bytes_never_panic(
        late in any::<bool>(),
        chunks in prop::collection::vec(
            (any::<bool>(), prop::collection::vec(any::<u8>(), 0..256), prop::bool::weighted(0.15)),
            0..16,
        ),
    ) {
        let mut conn = connection(late);
        for (i, (client, bytes, gap)) in chunks.iter().enumerate() {
            for c in conn.feed(dir(*client), at(i), bytes, *gap) {
                check_call(&c);
            }
            check_bounds(&conn);
        }
    }

    #[test]
    fn mutated_exchange_never_panics_and_stays_bounded(
        late in any::<bool>(),
        edits in prop::collection::vec(edit(), 0..6),
        cuts in prop::collection::vec(any::<u16>(), 0..12),
        gaps in prop::collection::vec(prop::bool::weighted(0.1), 64),
        skip in 0..200usize,
    ) {
        let x = sample_exchange();
        let mut conn = connection(late);
        let mut n = 0;
        for (i, (d, bytes)) in x.chunks.iter().enumerate() {
            let mut bytes = bytes.clone();
            if i == 0 && late {
                bytes.drain(..skip.min(bytes.len()));
            }
            for e in edits.iter().filter(|_| i % 3 == 1) {
                apply(&mut bytes, e);
            }
            for piece in cut(&bytes, &cuts) {
                for c in conn.feed(*d, at(i), &piece, gaps[n % gaps.len()]) {
                    check_call(&c);
                }
                n += 1;
                check_bounds(&conn);
            }
        }
    }

    #[test]
    fn chunking_never_changes_the_calls(cuts in prop::collection::vec(any::<u16>(), 0..16)) {
        let x = sample_exchange();
        let mut whole = Connection::new_from_start();
        let mut split = Connection::new_from_start();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (i, (d, bytes)) in x.chunks.iter().enumerate() {
            a.extend(whole.feed(*d, at(i), bytes, false));
            for piece in cut(bytes, &cuts) {
                b.extend(split.feed(*d, at(i), &piece, false));
            }
        }
        prop_assert_eq!(a.len(), 5);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn hpack_arbitrary_blocks_never_panic(
        late in any::<bool>(),
        settings in prop::option::of(0..100_000u32),
        blocks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..16),
    ) {
        let mut d = if late { Decoder::new_late() } else { Decoder::new() };
        if let Some(s) = settings {
            d.set_settings_max(s);
        }
        for b in &blocks {
            if let Ok(fields) = d.decode(b) {
                prop_assert!(fields.len() <= b.len());
            }
            prop_assert!(d.table().size() <= MAX_HPACK_TABLE);
            prop_assert!(d.table().size() <= d.table().max_size());
        }
    }

    #[test]
    fn hpack_structured_blocks_never_panic(
        late in any::<bool>(),
        ops in prop::collection::vec(
            (0..4u8, 0..200usize, prop::collection::vec(any::<u8>(), 0..40), any::<bool>()),
            0..40,
        ),
    ) {
        // Well-formed representations with arbitrary indices and sizes.
        let mut block = Vec::new();
        for (kind, index, value, huffman) in &ops {
            match kind {
                0 => testutil::int(&mut block, 7, 0x80, *index),
                1 | 2 => {
                    let (prefix, first) = if *kind == 1 { (6, 0x40) } else { (4, 0x00) };
                    testutil::int(&mut block, prefix, first, index % 80);
                    if index % 80 == 0 {
                        testutil::string(&mut block, b"x-name", *huffman);
                    }
                    testutil::string(&mut block, value, *huffman);
                }
                _ => testutil::int(&mut block, 5, 0x20, index * 50),
            }
        }
        let mut d = if late { Decoder::new_late() } else { Decoder::new() };
        for _ in 0..2 {
            let _ = d.decode(&block);
            prop_assert!(d.table().size() <= MAX_HPACK_TABLE);
        }
    }
}
