//! Routing one direction's frames: header blocks (HEADERS/PUSH_PROMISE +
//! CONTINUATION) into its HPACK decoder, then everything into call assembly.

use std::time::SystemTime;

use super::grpc::{Calls, HeaderBlock, Out};
use super::hpack::Decoder;
use super::http2::{flags, Desync, Frame, FrameHeader, FrameSink, FrameType};
use super::limits::{DEFAULT_MAX_FRAME_SIZE, MAX_FRAME_SIZE_LIMIT, MAX_HEADER_BLOCK};
use super::scratch::Scratch;
use super::Direction;

/// A header block being assembled from HEADERS/PUSH_PROMISE + CONTINUATION.
#[derive(Debug)]
pub(super) struct PendingBlock {
    pub(super) stream_id: u32,
    pub(super) end_stream: bool,
    pub(super) push_promise: bool,
    pub(super) bytes: Scratch,
    /// Part of the block was not kept (oversized): it cannot be decoded.
    pub(super) lost: bool,
}

/// Connection-level counters kept by the router.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) gaps: u64,
    pub(super) header_blocks: u64,
    pub(super) header_blocks_lost: u64,
}

/// Routes one direction's frames into HPACK and call assembly.
pub(super) struct Sink<'c> {
    pub(super) dir: Direction,
    pub(super) at: SystemTime,
    pub(super) hpack: &'c mut Decoder,
    pub(super) block: &'c mut Option<PendingBlock>,
    pub(super) peak_block: &'c mut usize,
    pub(super) other_hpack: &'c mut Decoder,
    pub(super) other_max_frame: &'c mut u32,
    pub(super) calls: &'c mut Calls,
    pub(super) counters: &'c mut Counters,
    pub(super) out: &'c mut Out,
}

impl Sink<'_> {
    fn begin_block(
        &mut self,
        stream_id: u32,
        end_stream: bool,
        push_promise: bool,
        fragment: Option<&[u8]>,
        end_headers: bool,
    ) {
        if self.block.take().is_some() {
            // The previous block never got its END_HEADERS.
            self.lose_block();
        }
        let b = PendingBlock {
            stream_id,
            end_stream,
            push_promise,
            bytes: Scratch::default(),
            lost: false,
        };
        self.append(b, fragment, end_headers);
    }

    fn continue_block(&mut self, stream_id: u32, fragment: Option<&[u8]>, end_headers: bool) {
        match self.block.take() {
            Some(b) if b.stream_id == stream_id => self.append(b, fragment, end_headers),
            // A CONTINUATION without its start, or interleaved: state is unknown.
            _ => self.lose_block(),
        }
    }

    fn append(&mut self, mut b: PendingBlock, fragment: Option<&[u8]>, end_headers: bool) {
        match fragment {
            Some(f) if !b.lost && b.bytes.len() + f.len() <= MAX_HEADER_BLOCK => {
                b.bytes.extend_from_slice(f);
                *self.peak_block = (*self.peak_block).max(b.bytes.len());
            }
            _ => {
                b.lost = true;
                b.bytes.clear();
            }
        }
        if end_headers {
            self.finish_block(b);
        } else {
            *self.block = Some(b);
        }
    }

    fn lose_block(&mut self) {
        self.counters.header_blocks_lost += 1;
        self.hpack.lose_sync();
    }

    fn finish_block(&mut self, b: PendingBlock) {
        self.counters.header_blocks += 1;
        let decoded = if b.lost {
            None
        } else {
            self.hpack.decode(b.bytes.as_slice()).ok()
        };
        let block = match decoded {
            Some(fields) => HeaderBlock {
                fields,
                complete: true,
            },
            None => {
                if b.lost {
                    self.lose_block();
                } else {
                    self.counters.header_blocks_lost += 1; // decode() already lost sync
                }
                HeaderBlock::default()
            }
        };
        if b.push_promise {
            return; // decoded only to keep the HPACK table in step
        }
        match self.dir {
            Direction::ClientToServer => {
                self.calls.on_request_headers(b.stream_id, &block, self.at)
            }
            Direction::ServerToClient => {
                self.calls
                    .on_response_headers(b.stream_id, b.end_stream, &block, self.at, self.out)
            }
        }
    }
}

impl FrameSink for Sink<'_> {
    fn frame(&mut self, _header: &FrameHeader, frame: Frame<'_>) {
        match frame {
            Frame::Headers(f) => self.begin_block(
                f.stream_id,
                f.end_stream,
                false,
                Some(f.fragment.0),
                f.end_headers,
            ),
            Frame::PushPromise(f) => {
                self.begin_block(f.stream_id, false, true, Some(f.fragment.0), f.end_headers)
            }
            Frame::Continuation(f) => {
                self.continue_block(f.stream_id, Some(f.fragment.0), f.end_headers)
            }
            Frame::Settings(s) if !s.ack => {
                // Settings bound what the *other* direction may send.
                if let Some(v) = s.header_table_size() {
                    self.other_hpack.set_settings_max(v);
                }
                if let Some(v) = s.max_frame_size() {
                    *self.other_max_frame = v.clamp(DEFAULT_MAX_FRAME_SIZE, MAX_FRAME_SIZE_LIMIT);
                }
            }
            Frame::RstStream(r) => {
                self.calls
                    .on_reset(r.stream_id, r.error_code, self.at, self.out)
            }
            Frame::GoAway(g) if self.dir == Direction::ServerToClient => {
                self.calls.on_goaway(g.last_stream_id, self.at, self.out)
            }
            _ => {}
        }
    }

    fn oversized(&mut self, h: &FrameHeader) {
        let (end_stream, end_headers) = (h.has(flags::END_STREAM), h.has(flags::END_HEADERS));
        match h.ty {
            FrameType::Headers => {
                self.begin_block(h.stream_id, end_stream, false, None, end_headers)
            }
            FrameType::PushPromise => self.begin_block(h.stream_id, false, true, None, end_headers),
            FrameType::Continuation => self.continue_block(h.stream_id, None, end_headers),
            _ => {}
        }
    }

    fn data(&mut self, stream_id: u32, chunk: &[u8]) {
        if self.dir == Direction::ServerToClient {
            self.calls.on_response_data(stream_id, chunk);
        }
    }

    fn data_end(&mut self, h: &FrameHeader) {
        if self.dir == Direction::ServerToClient {
            self.calls.on_response_data_end(
                h.stream_id,
                h.has(flags::END_STREAM),
                self.at,
                self.out,
            );
        }
    }

    fn desync(&mut self, _cause: Desync) {
        if self.block.take().is_some() {
            self.counters.header_blocks_lost += 1;
        }
        self.hpack.lose_sync();
        if self.dir == Direction::ServerToClient {
            self.calls.taint_open();
        }
    }
}
