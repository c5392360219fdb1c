use super::*;
use crate::protocol::http2::FrameType;
use crate::protocol::limits::MAX_FRAME_SIZE_LIMIT;
use crate::protocol::testutil as t;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Frame(FrameHeader, Vec<u8>),
    Oversized(FrameHeader),
    Data(u32, Vec<u8>),
    DataEnd(u32, bool),
    Desync(Desync),
}

#[derive(Default)]
struct Rec(Vec<Ev>);

impl FrameSink for Rec {
    fn frame(&mut self, h: &FrameHeader, frame: Frame<'_>) {
        let fragment = match frame {
            Frame::Headers(f) => f.fragment.0.to_vec(),
            Frame::Continuation(f) => f.fragment.0.to_vec(),
            _ => Vec::new(),
        };
        self.0.push(Ev::Frame(*h, fragment));
    }
    fn oversized(&mut self, h: &FrameHeader) {
        self.0.push(Ev::Oversized(*h));
    }
    fn data(&mut self, stream_id: u32, chunk: &[u8]) {
        // Normalise: consecutive pieces of one payload are merged.
        match self.0.last_mut() {
            Some(Ev::Data(s, bytes)) if *s == stream_id => bytes.extend_from_slice(chunk),
            _ => self.0.push(Ev::Data(stream_id, chunk.to_vec())),
        }
    }
    fn data_end(&mut self, h: &FrameHeader) {
        self.0
            .push(Ev::DataEnd(h.stream_id, h.has(flags::END_STREAM)));
    }
    fn desync(&mut self, cause: Desync) {
        self.0.push(Ev::Desync(cause));
    }
}

const MAX: u32 = 16_384;

/// A connection's client side exercising every frame kind; returns the bytes
/// and the offset where the PING frame starts.
fn sample() -> (Vec<u8>, usize) {
    let mut v = t::preface();
    v.extend(t::settings(&[(1, 4096), (5, 16_384)]));
    let block: Vec<u8> = (0..40).map(|i| 0x80 | (i % 61 + 1)).collect();
    v.extend(t::headers_split(1, &block, false, 3));
    v.extend(t::data_padded(1, &[b'm'; 100], 7, false));
    v.extend(t::data(1, b"", true));
    let ping_at = v.len();
    v.extend(t::ping(false));
    v.extend(t::window_update(0, 65_535));
    v.extend(t::frame(FrameType::Unknown(0xfa), 0xff, 0, b"ignored"));
    v.extend(t::rst_stream(5, 8));
    v.extend(t::goaway(5, 0));
    v.extend(t::data(3, &[b'z'; 1000], true));
    (v, ping_at)
}

fn run(r: &mut Reassembler, chunks: &[&[u8]]) -> Vec<Ev> {
    let mut rec = Rec::default();
    for c in chunks {
        r.push(c, MAX, &mut rec);
    }
    rec.0
}

#[test]
fn whole_stream_events() {
    let (bytes, _) = sample();
    let mut r = Reassembler::at_preface();
    let ev = run(&mut r, &[&bytes]);
    assert!(!ev.iter().any(|e| matches!(e, Ev::Desync(_))), "{ev:?}");
    assert!(ev.contains(&Ev::Data(1, vec![b'm'; 100])));
    assert!(ev.contains(&Ev::DataEnd(1, true)));
    assert!(ev.contains(&Ev::Data(3, vec![b'z'; 1000])));
    let fragments: Vec<u8> = ev
        .iter()
        .filter_map(|e| match e {
            Ev::Frame(_, f) => Some(f.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(fragments.len(), 40);
    let s = r.stats();
    assert_eq!(
        (s.frames, s.frames_unknown_type, s.desyncs, s.bytes_skipped),
        (12, 1, 0, 0)
    );
    assert_eq!(r.buffered(), 0);
}

#[test]
fn every_split_point_gives_the_same_events() {
    let (bytes, _) = sample();
    let whole = run(&mut Reassembler::at_preface(), &[&bytes]);
    for k in 0..=bytes.len() {
        let (a, b) = bytes.split_at(k);
        assert_eq!(
            run(&mut Reassembler::at_preface(), &[a, b]),
            whole,
            "split at {k}"
        );
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run(&mut Reassembler::at_preface(), &singles), whole);
}

#[test]
fn data_is_streamed_not_buffered() {
    let payload = vec![7u8; 1 << 20];
    let bytes = t::data(1, &payload, true);
    let mut r = Reassembler::at_frame_boundary();
    let mut rec = Rec::default();
    for c in bytes.chunks(4096) {
        r.push(c, MAX_FRAME_SIZE_LIMIT, &mut rec);
    }
    assert_eq!(rec.0, vec![Ev::Data(1, payload), Ev::DataEnd(1, true)]);
    assert!(r.stats().peak_buffered <= FRAME_HEADER_LEN);
}

#[test]
fn oversized_headers_are_skipped_by_length() {
    let big = vec![0x82u8; MAX_KEPT_PAYLOAD + 1];
    let mut bytes = t::headers(1, &big, true);
    bytes.extend(t::rst_stream(1, 8));
    let mut r = Reassembler::at_frame_boundary();
    let mut rec = Rec::default();
    r.push(&bytes, MAX_FRAME_SIZE_LIMIT, &mut rec);
    assert!(matches!(rec.0[0], Ev::Oversized(h) if h.ty == FrameType::Headers));
    assert!(matches!(rec.0[1], Ev::Frame(h, _) if h.ty == FrameType::RstStream));
    assert_eq!(r.stats().frames_oversized, 1);
    assert!(r.stats().peak_buffered <= FRAME_HEADER_LEN);
}

#[test]
fn gap_resynchronises_at_the_next_boundary() {
    let (bytes, ping_at) = sample();
    let mut r = Reassembler::at_preface();
    let mut rec = Rec::default();
    r.push(&bytes[..ping_at - 20], MAX, &mut rec); // cut inside the DATA frames
    r.gap(&mut rec);
    r.push(&bytes[ping_at..], MAX, &mut rec);
    assert!(rec.0.contains(&Ev::Desync(Desync::Gap)));
    assert!(rec
        .0
        .iter()
        .any(|e| matches!(e, Ev::Frame(h, _) if h.ty == FrameType::Ping)));
    assert!(rec.0.contains(&Ev::DataEnd(3, true)));
    // PING and WINDOW_UPDATE pass probation; the unknown frame type right
    // after is implausible while on probation and triggers a second hunt.
    assert_eq!((r.stats().desyncs, r.stats().resyncs), (2, 2));
}

#[test]
fn missing_preface_is_reported_then_frames_found() {
    let (bytes, ping_at) = sample();
    let mut r = Reassembler::at_preface();
    let ev = run(&mut r, &[&bytes[ping_at..]]);
    assert_eq!(ev[0], Ev::Desync(Desync::BadPreface));
    assert!(ev.contains(&Ev::DataEnd(3, true)));
}

#[test]
fn late_join_at_every_offset_recovers() {
    let (bytes, ping_at) = sample();
    for k in 0..=ping_at {
        let mut r = Reassembler::hunting();
        let ev = run(&mut r, &[&bytes[k..]]);
        let goaway = ev
            .iter()
            .any(|e| matches!(e, Ev::Frame(h, _) if h.ty == FrameType::GoAway));
        assert!(
            goaway && ev.contains(&Ev::DataEnd(3, true)),
            "offset {k}: {ev:?}"
        );
        assert!(r.stats().resyncs >= 1);
        assert!(r.buffered() <= HUNT_WINDOW);
    }
}

#[test]
fn garbage_never_grows_the_buffer() {
    let mut r = Reassembler::hunting();
    let mut rec = Rec::default();
    let garbage: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for c in garbage.chunks(777) {
        r.push(c, MAX, &mut rec);
        assert!(r.buffered() <= HUNT_WINDOW + FRAME_HEADER_LEN);
    }
    assert!(r.stats().peak_buffered <= HUNT_WINDOW + FRAME_HEADER_LEN);
}
