//! Finding a frame boundary again: after a gap, after garbage, or when we
//! attached to a connection mid-stream.
//!
//! A candidate offset must hold a *plausible* header (see
//! [`FrameHeader::is_plausible`]) and be confirmed by what follows it: the
//! next header must be plausible too, or the candidate frame must end
//! exactly where the captured chunk ends (captured chunks are whole
//! `write()`s, so frames tend to end with them). The client preface is also
//! a boundary. The reassembler then keeps the connection on probation for a
//! few frames, and hunts again if one of them is implausible.
//!
//! Scanning costs O(window) per chunk while hunting, and nothing once synced.

use super::{parse_header, FrameHeader, FRAME_HEADER_LEN, PREFACE};

/// Outcome of scanning the hunt window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scan {
    /// A confirmed frame header starts at this offset.
    Frame(usize),
    /// The client preface starts at this offset.
    Preface(usize),
    /// Undecided: bytes before `keep_from` can be dropped; wait for more.
    NeedMore { keep_from: usize },
}

/// Scans `window` for a boundary. `max_len` bounds candidate frame lengths;
/// `at_chunk_end` says the window ends where the captured data ends.
pub(super) fn scan(window: &[u8], max_len: u32, at_chunk_end: bool) -> Scan {
    // The first undecided candidate: bytes from there on must be kept. A
    // confirmed candidate further on still wins, so one false candidate
    // claiming a long frame cannot stall decoding until that many bytes come.
    let mut pending: Option<usize> = None;
    for i in 0..window.len() {
        let rest = &window[i..];
        if rest.starts_with(PREFACE) {
            return Scan::Preface(i);
        }
        if rest.len() < PREFACE.len() && PREFACE.starts_with(rest) {
            return Scan::NeedMore {
                keep_from: pending.unwrap_or(i),
            };
        }
        if rest.len() < FRAME_HEADER_LEN {
            return Scan::NeedMore {
                keep_from: pending.unwrap_or(i),
            };
        }
        if !quick_filter(rest, max_len) {
            continue;
        }
        let Ok((h, after)) = parse_header(rest) else {
            continue; // unreachable: 9 bytes always parse
        };
        if !h.is_plausible(max_len) {
            continue;
        }
        match confirm(&h, after, max_len, at_chunk_end) {
            Some(true) => return Scan::Frame(i),
            Some(false) => {}
            None => {
                pending.get_or_insert(i);
            }
        }
    }
    Scan::NeedMore {
        keep_from: pending.unwrap_or(window.len()),
    }
}

/// Cheap necessary conditions of [`FrameHeader::is_plausible`], checked on
/// raw bytes first: most offsets of garbage fail here.
fn quick_filter(b: &[u8], max_len: u32) -> bool {
    let len = u32::from_be_bytes([0, b[0], b[1], b[2]]);
    len <= max_len && b[3] <= 9 && b[5] & 0x80 == 0
}

/// `Some(true)`: confirmed; `Some(false)`: refuted; `None`: need more bytes.
fn confirm(h: &FrameHeader, after: &[u8], max_len: u32, at_chunk_end: bool) -> Option<bool> {
    let len = h.length as usize;
    if after.len() == len && at_chunk_end {
        return Some(true);
    }
    match after.get(len..).map(parse_header) {
        Some(Ok((next, _))) => Some(next.is_plausible(max_len)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{flags, FrameType};
    use super::*;
    use crate::protocol::testutil::frame;


    #[test]
    fn finds_confirmed_frame_after_garbage() {
        let mut w = b"ken-bytes-without-structure".to_vec();
        let at = w.len();
        w.extend(frame(
            FrameType::Headers,
            flags::END_HEADERS,
            1,
            &[0x82, 0x86],
        ));
        w.extend(frame(FrameType::Data, 0, 1, b"hello"));
        assert_eq!(scan(&w, 16_384, false), Scan::Frame(at));
    }

    #[test]
    fn frame_ending_at_chunk_end_is_accepted_only_there() {
        let w = frame(FrameType::RstStream, 0, 3, &[0, 0, 0, 8]);
        assert_eq!(scan(&w, 16_384, true), Scan::Frame(0));
        assert_eq!(scan(&w, 16_384, false), Scan::NeedMore { keep_from: 0 });
    }

    #[test]
    fn preface_and_partial_preface() {
        let mut w = b"xx".to_vec();
        w.extend_from_slice(PREFACE);
        assert_eq!(scan(&w, 16_384, false), Scan::Preface(2));
        assert_eq!(
            scan(&w[..10], 16_384, false),
            Scan::NeedMore { keep_from: 2 }
        );
    }
}
