//! A whole frame: dispatch from the header's type to the payload parsers.

use std::fmt;

use super::{control, data, headers, parse_header, settings, FrameError, FrameHeader, FrameType};
use super::{ContinuationFrame, DataFrame, GoAway, HeadersFrame, InvalidFrame, Ping, Priority};
use super::{PushPromiseFrame, RstStream, SettingsFrame, WindowUpdate};

/// Borrowed payload bytes whose `Debug` shows only the length: DATA may carry
/// the token and header fragments may carry credentials.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Opaque<'a>(pub &'a [u8]);

impl fmt::Debug for Opaque<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

/// One parsed frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    Data(DataFrame<'a>),
    Headers(HeadersFrame<'a>),
    Priority {
        stream_id: u32,
        priority: Priority,
    },
    RstStream(RstStream),
    Settings(SettingsFrame),
    PushPromise(PushPromiseFrame<'a>),
    Ping(Ping),
    GoAway(GoAway),
    WindowUpdate(WindowUpdate),
    Continuation(ContinuationFrame<'a>),
    /// Unknown types must be ignored (RFC 9113 §4.1).
    Unknown {
        ty: u8,
        stream_id: u32,
    },
}

/// Parses a complete payload (`payload.len() == h.length`).
pub fn parse_payload<'a>(h: &FrameHeader, payload: &'a [u8]) -> Result<Frame<'a>, InvalidFrame> {
    Ok(match h.ty {
        FrameType::Data => Frame::Data(data::parse(h, payload)?),
        FrameType::Headers => Frame::Headers(headers::parse_headers(h, payload)?),
        FrameType::Priority => Frame::Priority {
            stream_id: h.stream_id,
            priority: control::parse_priority(h, payload)?,
        },
        FrameType::RstStream => Frame::RstStream(control::parse_rst_stream(h, payload)?),
        FrameType::Settings => Frame::Settings(settings::parse(h, payload)?),
        FrameType::PushPromise => Frame::PushPromise(headers::parse_push_promise(h, payload)?),
        FrameType::Ping => Frame::Ping(control::parse_ping(h, payload)?),
        FrameType::GoAway => Frame::GoAway(control::parse_goaway(h, payload)?),
        FrameType::WindowUpdate => Frame::WindowUpdate(control::parse_window_update(h, payload)?),
        FrameType::Continuation => Frame::Continuation(headers::parse_continuation(h, payload)),
        FrameType::Unknown(ty) => Frame::Unknown {
            ty,
            stream_id: h.stream_id,
        },
    })
}

/// Parses one whole frame from the front of `input` (header checked as
/// well-formed against `max_frame_size`), returning it and the rest.
pub fn parse_frame(
    input: &[u8],
    max_frame_size: u32,
) -> Result<(FrameHeader, Frame<'_>, &[u8]), FrameError> {
    let (h, rest) = parse_header(input)?;
    h.check_well_formed(max_frame_size)?;
    let len = h.length as usize;
    if rest.len() < len {
        return Err(FrameError::Incomplete(len - rest.len()));
    }
    let (payload, rest) = rest.split_at(len);
    Ok((h, parse_payload(&h, payload)?, rest))
}

#[cfg(test)]
mod tests {
    use super::super::flags;
    use super::*;

    #[test]
    fn whole_frame_incomplete_then_complete() {
        let h = FrameHeader {
            length: 3,
            ty: FrameType::Data,
            flags: flags::END_STREAM,
            stream_id: 1,
            reserved: false,
        };
        let mut bytes = h.encode().to_vec();
        bytes.extend_from_slice(b"abc");
        bytes.push(0xee);
        assert_eq!(
            parse_frame(&bytes[..10], 16_384).err(),
            Some(FrameError::Incomplete(2))
        );
        let (_, frame, rest) = parse_frame(&bytes, 16_384).expect("frame");
        assert_eq!(rest, &[0xee]);
        match frame {
            Frame::Data(d) => {
                assert_eq!(d.data.0, b"abc");
                assert!(d.end_stream);
                assert_eq!(
                    format!("{d:?}"),
                    "DataFrame { stream_id: 1, end_stream: true, data: <3 bytes> }"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_type_is_representable() {
        let h = FrameHeader {
            length: 2,
            ty: FrameType::Unknown(0xbb),
            flags: 0,
            stream_id: 0,
            reserved: false,
        };
        let mut bytes = h.encode().to_vec();
        bytes.extend_from_slice(&[1, 2]);
        let (_, frame, _) = parse_frame(&bytes, 16_384).expect("frame");
        assert_eq!(
            frame,
            Frame::Unknown {
                ty: 0xbb,
                stream_id: 0
            }
        );
    }
}
