//! One captured connection: both directions' reassemblers and HPACK
//! decoders, and the open calls. Frame routing lives in `routing.rs`.

use std::time::SystemTime;

use super::grpc::{Calls, DecodedCall};
use super::hpack::Decoder;
use super::http2::Reassembler;
use super::limits::{DEFAULT_MAX_FRAME_SIZE, MAX_FRAME_SIZE_LIMIT, MAX_OPEN_STREAMS};
use super::routing::{Counters, PendingBlock, Sink};
use super::{DecodeStats, Direction};

/// Knobs of the decoder; defaults fit token-agent's GetToken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// Response protobuf field holding a `google.protobuf.Timestamp`.
    pub expires_at_field: u32,
    /// Open calls kept; the oldest is dropped (and counted) beyond this.
    pub max_open_streams: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            expires_at_field: 2,
            max_open_streams: MAX_OPEN_STREAMS,
        }
    }
}

/// One direction's decoding state.
#[derive(Debug)]
struct Side {
    reasm: Reassembler,
    hpack: Decoder,
    block: Option<PendingBlock>,
    /// Largest frame this direction may carry (the receiver's setting).
    max_frame: u32,
    peak_block: usize,
}

/// Per-connection decoding state. `Debug` shows sizes and counters only:
/// captured bytes (which may hold the token) are never printed.
#[derive(Debug)]
pub struct Connection {
    /// [client → server, server → client].
    sides: [Side; 2],
    calls: Calls,
    counters: Counters,
}

impl Connection {
    /// A connection seen from its start (connect / the client preface).
    pub fn new_from_start() -> Self {
        Self::with_config(ConnectionConfig::default(), false)
    }

    /// A connection that was already running when we attached.
    pub fn new_late_join() -> Self {
        Self::with_config(ConnectionConfig::default(), true)
    }

    pub fn with_config(config: ConnectionConfig, late_join: bool) -> Self {
        let side = |reasm: Reassembler| Side {
            reasm,
            hpack: if late_join {
                Decoder::new_late()
            } else {
                Decoder::new()
            },
            block: None,
            max_frame: if late_join {
                MAX_FRAME_SIZE_LIMIT
            } else {
                DEFAULT_MAX_FRAME_SIZE
            },
            peak_block: 0,
        };
        let (c2s, s2c) = if late_join {
            (Reassembler::hunting(), Reassembler::hunting())
        } else {
            (Reassembler::at_preface(), Reassembler::at_frame_boundary())
        };
        Self {
            sides: [side(c2s), side(s2c)],
            calls: Calls::new(config.expires_at_field, config.max_open_streams),
            counters: Counters::default(),
        }
    }

    /// Feeds one captured chunk; returns the calls it completed. Never panics.
    pub fn feed(
        &mut self,
        dir: Direction,
        at: SystemTime,
        bytes: &[u8],
        gap_before: bool,
    ) -> Vec<DecodedCall> {
        let mut out = Vec::new();
        let [c2s, s2c] = &mut self.sides;
        let (this, other) = match dir {
            Direction::ClientToServer => (c2s, s2c),
            Direction::ServerToClient => (s2c, c2s),
        };
        let Side {
            reasm,
            hpack,
            block,
            max_frame,
            peak_block,
        } = this;
        let max_frame = *max_frame;
        let mut sink = Sink {
            dir,
            at,
            hpack,
            block,
            peak_block,
            other_hpack: &mut other.hpack,
            other_max_frame: &mut other.max_frame,
            calls: &mut self.calls,
            counters: &mut self.counters,
            out: &mut out,
        };
        if gap_before {
            sink.counters.gaps += 1;
            reasm.gap(&mut sink);
        }
        reasm.push(bytes, max_frame, &mut sink);
        out
    }

    pub fn stats(&self) -> DecodeStats {
        let mut s = DecodeStats {
            gaps: self.counters.gaps,
            header_blocks: self.counters.header_blocks,
            header_blocks_lost: self.counters.header_blocks_lost,
            open_streams: self.calls.open_count(),
            ..DecodeStats::default()
        };
        for side in &self.sides {
            let r = side.reasm.stats();
            s.bytes += r.bytes;
            s.frames += r.frames;
            s.frames_unknown_type += r.frames_unknown_type;
            s.frames_oversized += r.frames_oversized;
            s.desyncs += r.desyncs;
            s.resyncs += r.resyncs;
            s.bytes_skipped += r.bytes_skipped;
            let h = side.hpack.stats();
            s.hpack_unknown_refs += h.unknown_refs;
            s.hpack_invalid_refs += h.invalid_refs;
            s.hpack_errors += h.errors;
            s.hpack_lost_sync += h.lost_sync;
            let block = side.block.as_ref().map_or(0, |b| b.bytes.len());
            s.buffered_bytes += side.reasm.buffered() + block;
            s.peak_buffered_bytes += r.peak_buffered + side.peak_block;
            s.hpack_table_bytes += side.hpack.table().size();
            s.hpack_unknown_entries_bound += side.hpack.table().unknown_entries_bound();
        }
        let c = self.calls.stats;
        s.calls_completed = c.completed;
        s.calls_reset = c.reset;
        s.calls_method_unknown = c.methods_unknown;
        s.calls_status_inferred = c.statuses_inferred;
        s.streams_evicted = c.evicted;
        s.orphan_frames = c.orphan_frames;
        s.messages_compressed = c.messages_compressed;
        s.messages_undecodable = c.messages_undecodable;
        s
    }
}
