//! HTTP/2 framing (RFC 9113 §4, §6): one file per frame family, plus the
//! streaming [`Reassembler`] that turns captured chunks into frames.
//!
//! Parsers return [`FrameError::Incomplete`] when they need more bytes and
//! [`FrameError::Invalid`] when the bytes cannot be a well-formed frame; the
//! two are never conflated.
mod control;
mod data;
mod error;
mod frame;
mod header;
mod headers;
mod hunt;
mod preface;
mod reassembler;
mod settings;

pub use control::{GoAway, Ping, Priority, RstStream, WindowUpdate};
pub use data::DataFrame;
pub use error::{FrameError, InvalidFrame};
pub use frame::{parse_frame, parse_payload, Frame, Opaque};
pub use header::{flags, parse_header, FrameHeader, FrameType, FRAME_HEADER_LEN};
pub use headers::{ContinuationFrame, HeadersFrame, PushPromiseFrame};
pub use preface::{parse_preface, PREFACE};
pub use reassembler::{Desync, FrameSink, Reassembler, ReassemblerStats};
pub use settings::{setting, Setting, SettingsFrame};
