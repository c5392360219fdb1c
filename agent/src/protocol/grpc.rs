//! gRPC call assembly per stream.
//!
//! A call starts with the request HEADERS and ends with the response
//! trailers (HEADERS with END_STREAM), a RST_STREAM, a GOAWAY that excludes
//! it, or a response DATA with END_STREAM (no trailers: INTERNAL).

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::hpack::HeaderField;
use super::limits::MAX_METHOD_LEN;
use super::message::{MessageScanner, Outcome};
use super::status::{self, Ending};

/// gRPC status codes (unknown values stay representable as plain `u32`).
pub mod code {
    pub const OK: u32 = 0;
    pub const CANCELLED: u32 = 1;
    pub const UNKNOWN: u32 = 2;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const PERMISSION_DENIED: u32 = 7;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const UNAUTHENTICATED: u32 = 16;
}

/// One completed gRPC call. Carries no token bytes by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedCall {
    pub stream_id: u32,
    /// The `:path` as sent (`/package.Service/Method`); `None` when it could
    /// not be decoded (e.g. an HPACK index inserted before we attached).
    pub method: Option<String>,
    /// When the request HEADERS were captured.
    pub start: SystemTime,
    /// When the ending frame was captured.
    pub end: SystemTime,
    /// gRPC status code; `None` = undecodable.
    pub status: Option<u32>,
    /// `status` was concluded, not read from `grpc-status`: `Some(0)` for
    /// DATA followed by undecodable trailers; a mapped code for RST_STREAM,
    /// GOAWAY, HTTP errors or missing trailers; `None` for an error whose
    /// code is unknown (Trailers-Only with an undecodable status).
    /// `status: None` with `status_inferred: false` means nothing is known
    /// (response bytes were lost).
    pub status_inferred: bool,
    /// `expires_at` of the first response message, when decodable.
    pub expires_at: Option<SystemTime>,
    /// Ended by RST_STREAM (either side) or refused by GOAWAY.
    pub reset: bool,
}

/// A decoded header block; `complete` is false when the block was lost
/// (oversized, undecodable) and `fields` may then be partial.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderBlock {
    pub fields: Vec<HeaderField>,
    pub complete: bool,
}

impl HeaderBlock {
    /// Value of the first known field called `name`.
    pub fn find(&self, name: &[u8]) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|f| f.name() == Some(name))
            .and_then(HeaderField::value)
    }

    /// Complete and without unknown references.
    pub fn is_fully_known(&self) -> bool {
        self.complete && !self.fields.iter().any(HeaderField::is_unknown)
    }
}

#[derive(Debug)]
struct Call {
    start: SystemTime,
    method: Option<String>,
    response_headers: bool,
    http_status: Option<u16>,
    data_seen: bool,
    tainted: bool,
    message: MessageScanner,
}

/// Counters of call assembly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CallStats {
    pub completed: u64,
    pub reset: u64,
    pub evicted: u64,
    pub orphan_frames: u64,
    pub methods_unknown: u64,
    pub statuses_inferred: u64,
    pub messages_compressed: u64,
    pub messages_undecodable: u64,
}

/// Open calls of one connection, oldest (lowest stream id) first.
#[derive(Debug)]
pub(crate) struct Calls {
    open: BTreeMap<u32, Call>,
    expires_at_field: u32,
    max_open: usize,
    pub(crate) stats: CallStats,
}

pub(crate) type Out = Vec<DecodedCall>;

impl Calls {
    pub(crate) fn new(expires_at_field: u32, max_open: usize) -> Self {
        Self {
            open: BTreeMap::new(),
            expires_at_field,
            max_open: max_open.max(1),
            stats: CallStats::default(),
        }
    }

    pub(crate) fn open_count(&self) -> usize {
        self.open.len()
    }

    pub(crate) fn on_request_headers(
        &mut self,
        stream_id: u32,
        block: &HeaderBlock,
        at: SystemTime,
    ) {
        if self.open.contains_key(&stream_id) {
            return; // request trailers: nothing we need
        }
        while self.open.len() >= self.max_open {
            self.open.pop_first();
            self.stats.evicted += 1;
        }
        let method = block
            .find(b":path")
            .filter(|p| p.len() <= MAX_METHOD_LEN)
            .and_then(|p| String::from_utf8(p.to_vec()).ok());
        let call = Call {
            start: at,
            method,
            response_headers: false,
            http_status: None,
            data_seen: false,
            tainted: false,
            message: MessageScanner::new(self.expires_at_field),
        };
        self.open.insert(stream_id, call);
    }

    pub(crate) fn on_response_headers(
        &mut self,
        stream_id: u32,
        end_stream: bool,
        block: &HeaderBlock,
        at: SystemTime,
        out: &mut Out,
    ) {
        let Some(call) = self.open.get_mut(&stream_id) else {
            self.stats.orphan_frames += 1;
            return;
        };
        let trailers_only = !call.response_headers;
        if trailers_only {
            call.response_headers = true;
            call.http_status = status::read_http_status(block);
        }
        if !end_stream {
            return;
        }
        let ending = Ending {
            trailers_only,
            data_seen: call.data_seen,
            tainted: call.tainted,
            http_status: call.http_status,
        };
        let (st, inferred) = status::resolve(status::read_status(block), ending);
        self.finish(stream_id, at, st, inferred, false, out);
    }

    pub(crate) fn on_response_data(&mut self, stream_id: u32, bytes: &[u8]) {
        if let Some(call) = self.open.get_mut(&stream_id) {
            call.data_seen |= !bytes.is_empty();
            call.message.feed(bytes);
        }
    }

    /// A response DATA frame ended.
    pub(crate) fn on_response_data_end(
        &mut self,
        stream_id: u32,
        end_stream: bool,
        at: SystemTime,
        out: &mut Out,
    ) {
        if !self.open.contains_key(&stream_id) {
            self.stats.orphan_frames += 1;
        } else if end_stream {
            // Stream closed without trailers: clients report INTERNAL.
            self.finish(stream_id, at, Some(code::INTERNAL), true, false, out);
        }
    }

    pub(crate) fn on_reset(
        &mut self,
        stream_id: u32,
        error_code: u32,
        at: SystemTime,
        out: &mut Out,
    ) {
        if self.open.contains_key(&stream_id) {
            self.finish(
                stream_id,
                at,
                Some(status::from_rst(error_code)),
                true,
                true,
                out,
            );
        }
    }

    /// Server GOAWAY: streams above `last_stream_id` were never processed.
    pub(crate) fn on_goaway(&mut self, last_stream_id: u32, at: SystemTime, out: &mut Out) {
        let refused: Vec<u32> = self
            .open
            .range(last_stream_id.saturating_add(1)..)
            .map(|(&id, _)| id)
            .collect();
        for id in refused {
            self.finish(id, at, Some(code::UNAVAILABLE), true, true, out);
        }
    }

    /// Response bytes were lost: open calls can no longer be judged by
    /// what we did (not) see.
    pub(crate) fn taint_open(&mut self) {
        for call in self.open.values_mut() {
            call.tainted = true;
            call.message.mark_lost();
        }
    }

    fn finish(
        &mut self,
        stream_id: u32,
        at: SystemTime,
        st: Option<u32>,
        inferred: bool,
        reset: bool,
        out: &mut Out,
    ) {
        let Some(call) = self.open.remove(&stream_id) else {
            return;
        };
        let s = &mut self.stats;
        s.completed += 1;
        s.reset += u64::from(reset);
        s.statuses_inferred += u64::from(inferred);
        s.methods_unknown += u64::from(call.method.is_none());
        let expires_at = match call.message.outcome() {
            Outcome::Expires(t) => Some(t),
            Outcome::Compressed => {
                s.messages_compressed += 1;
                None
            }
            Outcome::Undecodable => {
                s.messages_undecodable += 1;
                None
            }
            Outcome::Pending | Outcome::NoExpiry => None,
        };
        out.push(DecodedCall {
            stream_id,
            method: call.method,
            start: call.start,
            end: at,
            status: st,
            status_inferred: inferred,
            expires_at,
            reset,
        });
    }
}
