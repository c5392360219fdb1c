//! Test-only builders: raw frames, a small HPACK encoder, GetToken messages,
//! scripted exchanges. Compiled into unit tests (`#[cfg(test)]`), and
//! included by `agent/tests/protocol_props.rs` and `agent/benches/decode.rs`
//! through `#[path]` (they provide `crate::protocol` as a re-export).
#![allow(dead_code)]

use std::collections::VecDeque;

use crate::protocol::hpack::{huffman, STATIC_TABLE};
use crate::protocol::http2::{flags, FrameHeader, FrameType, PREFACE};
use crate::protocol::Direction;

pub const GET_TOKEN: &str = "/yandex.cloud.priv.iam.v1.TokenAgent/GetToken";
/// Shaped like an IAM token; `TESTTOKENMARKER` must never show up in output.
pub const TOKEN: &str = concat!(
    "t1.9euelZqTESTTOKENMARKERzJ6Sk5aVl4yQnJqTz-3rnpWamJGRiZGZi4qNjZOMypGTjO_8",
    ".",
    "aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789-_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789-_aBcDeFgH"
);
pub const MARKER: &str = "TESTTOKENMARKER";

// ---- frames -------------------------------------------------------------

pub fn frame(ty: FrameType, fl: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let h = FrameHeader {
        length: payload.len() as u32,
        ty,
        flags: fl,
        stream_id,
        reserved: false,
    };
    let mut v = h.encode().to_vec();
    v.extend_from_slice(payload);
    v
}

pub fn preface() -> Vec<u8> {
    PREFACE.to_vec()
}

pub fn settings(params: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in params {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(FrameType::Settings, 0, 0, &p)
}

pub fn settings_ack() -> Vec<u8> {
    frame(FrameType::Settings, flags::ACK, 0, &[])
}

fn end_stream(e: bool) -> u8 {
    if e {
        flags::END_STREAM
    } else {
        0
    }
}

pub fn headers(stream_id: u32, block: &[u8], end: bool) -> Vec<u8> {
    frame(
        FrameType::Headers,
        flags::END_HEADERS | end_stream(end),
        stream_id,
        block,
    )
}

/// HEADERS (padded, with priority) followed by CONTINUATIONs: `pieces` fragments.
pub fn headers_split(stream_id: u32, block: &[u8], end: bool, pieces: usize) -> Vec<u8> {
    let size = block.len().div_ceil(pieces.max(1)).max(1);
    let mut chunks: Vec<&[u8]> = block.chunks(size).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let last = if i + 1 == chunks.len() {
            flags::END_HEADERS
        } else {
            0
        };
        if i == 0 {
            let mut p = vec![3, 0, 0, 0, 0, 16]; // pad 3, priority: dep 0, weight 16
            p.extend_from_slice(c);
            p.extend_from_slice(&[0, 0, 0]);
            let fl = flags::PADDED | flags::PRIORITY | end_stream(end) | last;
            out.extend(frame(FrameType::Headers, fl, stream_id, &p));
        } else {
            out.extend(frame(FrameType::Continuation, last, stream_id, c));
        }
    }
    out
}

pub fn data(stream_id: u32, payload: &[u8], end: bool) -> Vec<u8> {
    frame(FrameType::Data, end_stream(end), stream_id, payload)
}

pub fn data_padded(stream_id: u32, payload: &[u8], pad: u8, end: bool) -> Vec<u8> {
    let mut p = vec![pad];
    p.extend_from_slice(payload);
    p.extend(std::iter::repeat_n(0, usize::from(pad)));
    frame(
        FrameType::Data,
        flags::PADDED | end_stream(end),
        stream_id,
        &p,
    )
}

pub fn rst_stream(stream_id: u32, code: u32) -> Vec<u8> {
    frame(FrameType::RstStream, 0, stream_id, &code.to_be_bytes())
}

pub fn goaway(last_stream_id: u32, code: u32) -> Vec<u8> {
    let mut p = last_stream_id.to_be_bytes().to_vec();
    p.extend_from_slice(&code.to_be_bytes());
    frame(FrameType::GoAway, 0, 0, &p)
}

pub fn window_update(stream_id: u32, inc: u32) -> Vec<u8> {
    frame(FrameType::WindowUpdate, 0, stream_id, &inc.to_be_bytes())
}

pub fn ping(ack: bool) -> Vec<u8> {
    frame(
        FrameType::Ping,
        if ack { flags::ACK } else { 0 },
        0,
        &[1, 2, 3, 4, 5, 6, 7, 8],
    )
}

// ---- HPACK encoder ------------------------------------------------------

/// Prefixed integer (RFC 7541 §5.1); `first` holds the representation bits.
pub fn int(out: &mut Vec<u8>, prefix_bits: u8, first: u8, value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut v = value - max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

pub fn string(out: &mut Vec<u8>, s: &[u8], use_huffman: bool) {
    if use_huffman {
        int(out, 7, 0x80, huffman::encoded_len(s));
        huffman::encode(s, out);
    } else {
        int(out, 7, 0, s.len());
        out.extend_from_slice(s);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr {
    /// Indexed when the pair is in a table, else literal with incremental
    /// indexing (what Go's encoder does for everything not sensitive).
    Auto,
    WithoutIndexing,
    NeverIndexed,
}

/// A small HPACK encoder mirroring its dynamic table.
#[derive(Debug, Clone)]
pub struct Encoder {
    table: VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
    max_size: usize,
    pub huffman: bool,
}

impl Encoder {
    pub fn new(use_huffman: bool) -> Self {
        Self {
            table: VecDeque::new(),
            size: 0,
            max_size: 4096,
            huffman: use_huffman,
        }
    }

    pub fn encode(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, v) in fields {
            self.field(&mut out, n, v, Repr::Auto);
        }
        out
    }

    /// (index of the exact pair, index of the name), 1-based HPACK indices.
    fn find(&self, name: &[u8], value: &[u8]) -> (Option<usize>, Option<usize>) {
        let statics = STATIC_TABLE
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()));
        let dynamics = self.table.iter().map(|(n, v)| (n.as_slice(), v.as_slice()));
        let mut name_idx = None;
        for (i, (n, v)) in statics.chain(dynamics).enumerate() {
            if n == name {
                if v == value {
                    return (Some(i + 1), Some(i + 1));
                }
                name_idx.get_or_insert(i + 1);
            }
        }
        (None, name_idx)
    }

    pub fn field(&mut self, out: &mut Vec<u8>, name: &str, value: &str, repr: Repr) {
        let (n, v) = (name.as_bytes(), value.as_bytes());
        let (exact, by_name) = self.find(n, v);
        let (prefix, first) = match repr {
            Repr::Auto => {
                if let Some(i) = exact {
                    return int(out, 7, 0x80, i);
                }
                (6, 0x40)
            }
            Repr::WithoutIndexing => (4, 0x00),
            Repr::NeverIndexed => (4, 0x10),
        };
        int(out, prefix, first, by_name.unwrap_or(0));
        if by_name.is_none() {
            string(out, n, self.huffman);
        }
        string(out, v, self.huffman);
        if repr == Repr::Auto {
            self.insert(n.to_vec(), v.to_vec());
        }
    }

    /// Emits a dynamic table size update and applies it.
    pub fn size_update(&mut self, out: &mut Vec<u8>, max_size: usize) {
        int(out, 5, 0x20, max_size);
        self.max_size = max_size;
        self.evict(0);
    }

    fn insert(&mut self, n: Vec<u8>, v: Vec<u8>) {
        let size = 32 + n.len() + v.len();
        if size > self.max_size {
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        self.size += size;
        self.table.push_front((n, v));
    }

    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= 32 + n.len() + v.len(),
                None => break,
            }
        }
    }
}

// ---- gRPC / protobuf ----------------------------------------------------

pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `GetTokenResponse { iam_token = 1; expires_at = 2 }`.
pub fn get_token_response(token: &str, seconds: i64, nanos: u32) -> Vec<u8> {
    let mut ts = vec![0x08];
    varint(&mut ts, seconds as u64);
    ts.push(0x10);
    varint(&mut ts, u64::from(nanos));
    let mut m = vec![0x0a];
    varint(&mut m, token.len() as u64);
    m.extend_from_slice(token.as_bytes());
    m.push(0x12);
    varint(&mut m, ts.len() as u64);
    m.extend(ts);
    m
}

/// `GetTokenRequest { tag = 1 }`.
pub fn get_token_request(tag: &str) -> Vec<u8> {
    let mut m = vec![0x0a];
    varint(&mut m, tag.len() as u64);
    m.extend_from_slice(tag.as_bytes());
    m
}

/// 5-byte gRPC prefix + body.
pub fn grpc_message(compressed: bool, body: &[u8]) -> Vec<u8> {
    let mut v = vec![u8::from(compressed)];
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

pub fn request_fields(timeout: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "POST".into()),
        (":scheme", "http".into()),
        (":path", GET_TOKEN.into()),
        (":authority", "localhost".into()),
        ("content-type", "application/grpc".into()),
        ("user-agent", "grpc-go/1.60.1".into()),
        ("te", "trailers".into()),
        ("grpc-timeout", timeout.into()),
    ]
}

pub fn response_fields() -> Vec<(&'static str, String)> {
    vec![
        (":status", "200".into()),
        ("content-type", "application/grpc".into()),
    ]
}

pub fn trailer_fields(status: u32) -> Vec<(&'static str, String)> {
    vec![
        ("grpc-status", status.to_string()),
        ("grpc-message", String::new()),
    ]
}

/// A scripted connection: chunks in capture order, as the peers wrote them.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub chunks: Vec<(Direction, Vec<u8>)>,
    pub client: Encoder,
    pub server: Encoder,
}

impl Exchange {
    /// Preface and SETTINGS exchange, as a connection starts.
    pub fn new(use_huffman: bool) -> Self {
        let mut x = Self {
            chunks: Vec::new(),
            client: Encoder::new(use_huffman),
            server: Encoder::new(use_huffman),
        };
        let mut c = preface();
        c.extend(settings(&[(2, 0), (4, 4_194_304)]));
        x.c2s(c);
        x.s2c(settings(&[(5, 16_384)]));
        x.c2s(settings_ack());
        x.s2c(settings_ack());
        x
    }

    pub fn c2s(&mut self, bytes: Vec<u8>) {
        self.chunks.push((Direction::ClientToServer, bytes));
    }

    pub fn s2c(&mut self, bytes: Vec<u8>) {
        self.chunks.push((Direction::ServerToClient, bytes));
    }

    pub fn request(&mut self, stream_id: u32) {
        self.request_with_timeout(stream_id, "4999m");
    }

    /// Request with a given `grpc-timeout` (Go's encoder indexes each new value).
    pub fn request_with_timeout(&mut self, stream_id: u32, timeout: &str) {
        let fields = request_fields(timeout);
        let refs: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let block = self.client.encode(&refs);
        let mut c = headers(stream_id, &block, false);
        c.extend(data(
            stream_id,
            &grpc_message(false, &get_token_request("compute")),
            true,
        ));
        self.c2s(c);
    }

    pub fn response_headers(&mut self, stream_id: u32) {
        let fields = response_fields();
        let refs: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let block = self.server.encode(&refs);
        self.s2c(headers(stream_id, &block, false));
    }

    pub fn trailers(&mut self, stream_id: u32, status: u32) {
        let fields = trailer_fields(status);
        let refs: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let block = self.server.encode(&refs);
        self.s2c(headers(stream_id, &block, true));
    }

    /// A whole successful GetToken: request, headers, message, trailers.
    pub fn unary_ok(&mut self, stream_id: u32, seconds: i64, nanos: u32) {
        self.request(stream_id);
        self.response_headers(stream_id);
        let msg = grpc_message(false, &get_token_response(TOKEN, seconds, nanos));
        self.s2c(data(stream_id, &msg, false));
        self.trailers(stream_id, 0);
    }

    /// All bytes of one direction, concatenated.
    pub fn bytes(&self, dir: Direction) -> Vec<u8> {
        self.chunks
            .iter()
            .filter(|(d, _)| *d == dir)
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }
}
