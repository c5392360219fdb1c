//! Per-direction streaming reassembler: captured chunks in, frames out.
//!
//! Non-DATA payloads are buffered until complete (up to
//! [`MAX_KEPT_PAYLOAD`]; larger ones are skipped by length and reported as
//! oversized). DATA payloads are never stored: they are handed to the sink
//! slice by slice, padding stripped. When alignment is lost (a gap, a
//! malformed or implausible header, a wrong preface) the reassembler tells
//! the sink and hunts for the next frame boundary (see `hunt.rs`); it never
//! gives up on the connection.

use std::fmt;

use super::hunt::{self, Scan};
use super::{flags, parse_header, parse_payload, Frame, FrameHeader, FrameType, InvalidFrame};
use super::{FRAME_HEADER_LEN, PREFACE};
use crate::protocol::limits::{HUNT_MAX_FRAME_LEN, HUNT_WINDOW, MAX_KEPT_PAYLOAD};
use crate::protocol::scratch::Scratch;

/// Receives what the reassembler finds, in stream order.
pub trait FrameSink {
    /// A complete non-DATA frame.
    fn frame(&mut self, header: &FrameHeader, frame: Frame<'_>);
    /// A non-DATA frame too large to keep; its payload was skipped.
    fn oversized(&mut self, header: &FrameHeader);
    /// Part of a DATA payload (padding stripped); may be called many times.
    fn data(&mut self, stream_id: u32, chunk: &[u8]);
    /// The DATA frame described by `header` is complete.
    fn data_end(&mut self, header: &FrameHeader);
    /// Alignment was lost: frames may have been missed (header blocks
    /// included), any DATA frame in progress was cut short.
    fn desync(&mut self, cause: Desync);
}

/// Why alignment was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desync {
    /// The capture reported lost bytes.
    Gap,
    /// The client side did not start with the connection preface.
    BadPreface,
    /// A header or payload a real peer could not have sent.
    Malformed(InvalidFrame),
    /// A well-formed but implausible header while on probation after a resync.
    Implausible,
}

/// Counters of one reassembler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblerStats {
    pub bytes: u64,
    pub frames: u64,
    pub frames_unknown_type: u64,
    pub frames_oversized: u64,
    /// Times alignment was lost.
    pub desyncs: u64,
    /// Times a boundary was found again.
    pub resyncs: u64,
    /// Bytes dropped while hunting for a boundary.
    pub bytes_skipped: u64,
    /// Most bytes held at once.
    pub peak_buffered: usize,
}

#[derive(Clone, Copy)]
enum State {
    Preface {
        matched: usize,
    },
    Header {
        buf: [u8; FRAME_HEADER_LEN],
        have: usize,
    },
    Payload {
        header: FrameHeader,
    },
    DataPadLen {
        header: FrameHeader,
    },
    Data {
        header: FrameHeader,
        data_left: u32,
        pad_left: u32,
    },
    Skip {
        left: u32,
    },
    Hunt,
}

const HEADER: State = State::Header {
    buf: [0; FRAME_HEADER_LEN],
    have: 0,
};
/// Frames after a resync that must look plausible, not merely well-formed.
const PROBATION_FRAMES: u8 = 3;

pub struct Reassembler {
    state: State,
    payload: Scratch,
    hunt: Scratch,
    probation: u8,
    stats: ReassemblerStats,
}

impl Reassembler {
    fn with_state(state: State) -> Self {
        Self {
            state,
            payload: Scratch::default(),
            hunt: Scratch::default(),
            probation: 0,
            stats: Default::default(),
        }
    }

    /// Client → server side of a connection seen from its start.
    pub fn at_preface() -> Self {
        Self::with_state(State::Preface { matched: 0 })
    }

    /// Server → client side of a connection seen from its start.
    pub fn at_frame_boundary() -> Self {
        Self::with_state(HEADER)
    }

    /// Either side of a connection joined mid-stream.
    pub fn hunting() -> Self {
        Self::with_state(State::Hunt)
    }

    pub fn stats(&self) -> ReassemblerStats {
        self.stats
    }

    /// Captured bytes held right now.
    pub fn buffered(&self) -> usize {
        let header = match self.state {
            State::Header { have, .. } => have,
            _ => 0,
        };
        header + self.payload.len() + self.hunt.len()
    }

    pub fn is_hunting(&self) -> bool {
        matches!(self.state, State::Hunt)
    }

    /// Bytes were lost before the next chunk.
    pub fn gap(&mut self, sink: &mut impl FrameSink) {
        self.stats.bytes_skipped += self.hunt.len() as u64;
        self.hunt.clear();
        self.desync(Desync::Gap, sink);
    }

    /// Feeds the next captured bytes. `max_frame_size` is the limit the
    /// receiving peer advertised (or the protocol maximum when unknown).
    pub fn push(&mut self, input: &[u8], max_frame_size: u32, sink: &mut impl FrameSink) {
        self.stats.bytes += input.len() as u64;
        let mut input = input;
        loop {
            if self.is_hunting() {
                let take = HUNT_WINDOW.saturating_sub(self.hunt.len()).min(input.len());
                self.hunt.extend_from_slice(&input[..take]);
                input = &input[take..];
                self.note_buffered();
                if !self.scan_hunt(max_frame_size, input.is_empty()) && input.is_empty() {
                    return;
                }
            } else if !self.hunt.is_empty() {
                // Replay the bytes from the boundary the hunt found.
                let replay = std::mem::take(&mut self.hunt);
                let n = self.consume(replay.as_slice(), max_frame_size, sink);
                self.hunt.extend_from_slice(&replay.as_slice()[n..]);
            } else if input.is_empty() {
                return;
            } else {
                let n = self.consume(input, max_frame_size, sink);
                input = &input[n..];
            }
        }
    }

    /// Scans the hunt window; true when a boundary was found.
    fn scan_hunt(&mut self, max_frame_size: u32, at_chunk_end: bool) -> bool {
        let max_len = max_frame_size.min(HUNT_MAX_FRAME_LEN);
        let (skip, probation) = match hunt::scan(self.hunt.as_slice(), max_len, at_chunk_end) {
            Scan::Frame(at) => (at, PROBATION_FRAMES),
            Scan::Preface(at) => (at + PREFACE.len(), 0),
            Scan::NeedMore { keep_from } => {
                // A full window always decides its first offset; dropping at
                // least one byte then guarantees progress regardless.
                let keep_from = if self.hunt.len() >= HUNT_WINDOW {
                    keep_from.max(1)
                } else {
                    keep_from
                };
                self.stats.bytes_skipped += keep_from as u64;
                self.hunt.drain_front(keep_from);
                return false;
            }
        };
        let preface_bytes = if probation == 0 { PREFACE.len() } else { 0 };
        self.stats.bytes_skipped += (skip - preface_bytes) as u64;
        self.hunt.drain_front(skip);
        self.stats.resyncs += 1;
        self.probation = probation;
        self.state = HEADER;
        true
    }

    /// Runs the frame state machine over `input` until it is used up or
    /// alignment is lost; returns the bytes consumed.
    fn consume(&mut self, input: &[u8], max_frame_size: u32, sink: &mut impl FrameSink) -> usize {
        let mut pos = 0;
        while pos < input.len() {
            let rest = &input[pos..];
            match self.state {
                State::Hunt => return pos,
                State::Preface { matched } => {
                    let n = (PREFACE.len() - matched).min(rest.len());
                    if rest[..n] != PREFACE[matched..matched + n] {
                        self.stats.bytes_skipped += matched as u64;
                        self.desync(Desync::BadPreface, sink);
                        return pos;
                    }
                    pos += n;
                    let matched = matched + n;
                    self.state = if matched == PREFACE.len() {
                        HEADER
                    } else {
                        State::Preface { matched }
                    };
                }
                State::Header { mut buf, have } => {
                    let n = (FRAME_HEADER_LEN - have).min(rest.len());
                    buf[have..have + n].copy_from_slice(&rest[..n]);
                    pos += n;
                    self.state = State::Header {
                        buf,
                        have: have + n,
                    };
                    if have + n == FRAME_HEADER_LEN {
                        self.on_header(&buf, max_frame_size, sink);
                    }
                }
                State::Payload { header } => {
                    let want = (header.length as usize).saturating_sub(self.payload.len());
                    let n = want.min(rest.len());
                    self.payload.extend_from_slice(&rest[..n]);
                    pos += n;
                    self.note_buffered();
                    if n == want {
                        self.finish_payload(&header, sink);
                    }
                }
                State::DataPadLen { header } => {
                    pos += 1;
                    let pad = u32::from(rest[0]);
                    match header.length.saturating_sub(1).checked_sub(pad) {
                        Some(data_left) => {
                            self.state = State::Data {
                                header,
                                data_left,
                                pad_left: pad,
                            };
                            self.maybe_end_data(sink);
                        }
                        None => self.desync(Desync::Malformed(InvalidFrame::Padding), sink),
                    }
                }
                State::Data {
                    header,
                    data_left,
                    pad_left,
                } => {
                    if data_left > 0 {
                        let n = rest.len().min(data_left as usize);
                        sink.data(header.stream_id, &rest[..n]);
                        pos += n;
                        self.state = State::Data {
                            header,
                            data_left: data_left - n as u32,
                            pad_left,
                        };
                    } else {
                        let n = rest.len().min(pad_left as usize);
                        pos += n;
                        self.state = State::Data {
                            header,
                            data_left,
                            pad_left: pad_left - n as u32,
                        };
                    }
                    self.maybe_end_data(sink);
                }
                State::Skip { left } => {
                    let n = rest.len().min(left as usize);
                    pos += n;
                    self.state = if n as u32 == left {
                        HEADER
                    } else {
                        State::Skip {
                            left: left - n as u32,
                        }
                    };
                }
            }
        }
        pos
    }

    fn on_header(
        &mut self,
        buf: &[u8; FRAME_HEADER_LEN],
        max_frame_size: u32,
        sink: &mut impl FrameSink,
    ) {
        let Ok((h, _)) = parse_header(buf) else {
            return self.desync(Desync::Implausible, sink);
        };
        let verdict = match h.check_well_formed(max_frame_size) {
            Err(e) => Err(Desync::Malformed(e)),
            Ok(()) if self.probation > 0 && !h.is_plausible(max_frame_size) => {
                Err(Desync::Implausible)
            }
            Ok(()) => Ok(()),
        };
        if let Err(cause) = verdict {
            self.desync(cause, sink);
            // Hunt again from the byte after this false header start.
            self.stats.bytes_skipped += 1;
            self.hunt.extend_from_slice(&buf[1..]);
            return;
        }
        self.stats.frames += 1;
        self.probation = self.probation.saturating_sub(1);
        let len = h.length;
        self.state = match h.ty {
            FrameType::Data if h.has(flags::PADDED) => State::DataPadLen { header: h },
            FrameType::Data => State::Data {
                header: h,
                data_left: len,
                pad_left: 0,
            },
            FrameType::Unknown(_) => {
                self.stats.frames_unknown_type += 1;
                State::Skip { left: len }
            }
            _ if len as usize > MAX_KEPT_PAYLOAD => {
                self.stats.frames_oversized += 1;
                sink.oversized(&h);
                State::Skip { left: len }
            }
            _ => State::Payload { header: h },
        };
        // Zero-length payloads complete without further input.
        match self.state {
            State::Payload { header } if len == 0 => self.finish_payload(&header, sink),
            State::Data { .. } => self.maybe_end_data(sink),
            State::Skip { left: 0 } => self.state = HEADER,
            _ => {}
        }
    }

    fn finish_payload(&mut self, header: &FrameHeader, sink: &mut impl FrameSink) {
        let parsed =
            parse_payload(header, self.payload.as_slice()).map(|frame| sink.frame(header, frame));
        self.payload.clear();
        match parsed {
            Ok(()) => self.state = HEADER,
            Err(e) => self.desync(Desync::Malformed(e), sink),
        }
    }

    fn maybe_end_data(&mut self, sink: &mut impl FrameSink) {
        if let State::Data {
            header,
            data_left: 0,
            pad_left: 0,
        } = self.state
        {
            self.state = HEADER;
            sink.data_end(&header);
        }
    }

    fn desync(&mut self, cause: Desync, sink: &mut impl FrameSink) {
        self.stats.desyncs += 1;
        self.payload.clear();
        self.probation = 0;
        self.state = State::Hunt;
        sink.desync(cause);
    }

    fn note_buffered(&mut self) {
        self.stats.peak_buffered = self.stats.peak_buffered.max(self.buffered());
    }
}

impl fmt::Debug for Reassembler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Preface { .. } => "preface",
            State::Header { .. } => "header",
            State::Payload { .. } => "payload",
            State::DataPadLen { .. } | State::Data { .. } => "data",
            State::Skip { .. } => "skip",
            State::Hunt => "hunt",
        };
        f.debug_struct("Reassembler")
            .field("state", &state)
            .field("buffered", &self.buffered())
            .field("stats", &self.stats)
            .finish()
    }
}

#[cfg(test)]
#[path = "reassembler_tests.rs"]
mod tests;
