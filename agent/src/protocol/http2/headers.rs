//! HEADERS, CONTINUATION and PUSH_PROMISE (RFC 9113 §6.2, §6.10, §6.6):
//! the frames carrying header-block fragments.

use nom::number::complete::be_u32;

use super::control::{parse_priority_fields, Priority};
use super::data::strip_padding;
use super::{flags, FrameHeader, FrameType, InvalidFrame, Opaque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadersFrame<'a> {
    pub stream_id: u32,
    pub end_stream: bool,
    pub end_headers: bool,
    pub priority: Option<Priority>,
    /// HPACK bytes; `Debug` shows only the length.
    pub fragment: Opaque<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContinuationFrame<'a> {
    pub stream_id: u32,
    pub end_headers: bool,
    pub fragment: Opaque<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushPromiseFrame<'a> {
    pub stream_id: u32,
    pub promised_stream_id: u32,
    pub end_headers: bool,
    pub fragment: Opaque<'a>,
}

pub(super) fn parse_headers<'a>(
    h: &FrameHeader,
    payload: &'a [u8],
) -> Result<HeadersFrame<'a>, InvalidFrame> {
    let body = strip_padding(h, payload)?;
    let (body, priority) = if h.has(flags::PRIORITY) {
        let (rest, p) = parse_priority_fields(body).map_err(|_| InvalidFrame::Length {
            ty: FrameType::Headers,
            len: h.length,
        })?;
        (rest, Some(p))
    } else {
        (body, None)
    };
    Ok(HeadersFrame {
        stream_id: h.stream_id,
        end_stream: h.has(flags::END_STREAM),
        end_headers: h.has(flags::END_HEADERS),
        priority,
        fragment: Opaque(body),
    })
}

pub(super) fn parse_continuation<'a>(h: &FrameHeader, payload: &'a [u8]) -> ContinuationFrame<'a> {
    ContinuationFrame {
        stream_id: h.stream_id,
        end_headers: h.has(flags::END_HEADERS),
        fragment: Opaque(payload),
    }
}

pub(super) fn parse_push_promise<'a>(
    h: &FrameHeader,
    payload: &'a [u8],
) -> Result<PushPromiseFrame<'a>, InvalidFrame> {
    let body = strip_padding(h, payload)?;
    let parsed: nom::IResult<&[u8], u32> = be_u32(body);
    let (rest, promised) = parsed.map_err(|_| InvalidFrame::Length {
        ty: FrameType::PushPromise,
        len: h.length,
    })?;
    Ok(PushPromiseFrame {
        stream_id: h.stream_id,
        promised_stream_id: promised & 0x7fff_ffff,
        end_headers: h.has(flags::END_HEADERS),
        fragment: Opaque(rest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_priority_headers() {
        let f = flags::PADDED | flags::PRIORITY | flags::END_HEADERS;
        let h = FrameHeader {
            length: 10,
            ty: FrameType::Headers,
            flags: f,
            stream_id: 3,
            reserved: false,
        };
        // pad=2, E|dep=1, weight=15, fragment 0x82, padding 0 0
        let payload = [2, 0x80, 0, 0, 1, 15, 0x82, 0x86, 0, 0];
        let hf = parse_headers(&h, &payload).expect("headers");
        assert_eq!(hf.fragment.0, &[0x82, 0x86]);
        assert_eq!(
            hf.priority,
            Some(Priority {
                exclusive: true,
                dependency: 1,
                weight: 15
            })
        );
        assert!(hf.end_headers && !hf.end_stream);
        // Padding eating into the priority block.
        assert!(parse_headers(&h, &[9, 0, 0, 0, 1, 15, 0, 0, 0, 0]).is_err());
    }
}
