//! Small fixed-layout frames: PRIORITY, RST_STREAM, GOAWAY, WINDOW_UPDATE,
//! PING (RFC 9113 §6.3, §6.4, §6.8, §6.9, §6.7).

use nom::bytes::complete::take;
use nom::number::complete::{be_u32, be_u8};
use nom::Parser;

use super::{flags, FrameHeader, FrameType, InvalidFrame};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    pub exclusive: bool,
    pub dependency: u32,
    pub weight: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RstStream {
    pub stream_id: u32,
    pub error_code: u32,
}

/// GOAWAY; the opaque debug data is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoAway {
    pub last_stream_id: u32,
    pub error_code: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowUpdate {
    pub stream_id: u32,
    pub increment: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    pub ack: bool,
    pub opaque: [u8; 8],
}

type R<'a, T> = nom::IResult<&'a [u8], T>;

pub(super) fn parse_priority_fields(input: &[u8]) -> R<'_, Priority> {
    (be_u32, be_u8)
        .map(|(dep, weight)| Priority {
            exclusive: dep & 0x8000_0000 != 0,
            dependency: dep & 0x7fff_ffff,
            weight,
        })
        .parse(input)
}

fn bad(h: &FrameHeader) -> InvalidFrame {
    InvalidFrame::Length {
        ty: h.ty,
        len: h.length,
    }
}

pub(super) fn parse_priority(h: &FrameHeader, payload: &[u8]) -> Result<Priority, InvalidFrame> {
    match parse_priority_fields(payload) {
        Ok(([], p)) => Ok(p),
        _ => Err(bad(h)),
    }
}

pub(super) fn parse_rst_stream(h: &FrameHeader, payload: &[u8]) -> Result<RstStream, InvalidFrame> {
    let parsed: R<'_, u32> = be_u32(payload);
    match parsed {
        Ok(([], error_code)) => Ok(RstStream {
            stream_id: h.stream_id,
            error_code,
        }),
        _ => Err(bad(h)),
    }
}

pub(super) fn parse_goaway(h: &FrameHeader, payload: &[u8]) -> Result<GoAway, InvalidFrame> {
    let parsed: R<'_, (u32, u32)> = (be_u32, be_u32).parse(payload);
    let (_debug_data, (last, error_code)) = parsed.map_err(|_| bad(h))?;
    Ok(GoAway {
        last_stream_id: last & 0x7fff_ffff,
        error_code,
    })
}

pub(super) fn parse_window_update(
    h: &FrameHeader,
    payload: &[u8],
) -> Result<WindowUpdate, InvalidFrame> {
    let parsed: R<'_, u32> = be_u32(payload);
    match parsed {
        Ok(([], inc)) => Ok(WindowUpdate {
            stream_id: h.stream_id,
            increment: inc & 0x7fff_ffff,
        }),
        _ => Err(bad(h)),
    }
}

pub(super) fn parse_ping(h: &FrameHeader, payload: &[u8]) -> Result<Ping, InvalidFrame> {
    let parsed: R<'_, &[u8]> = take(8usize).parse(payload);
    match parsed {
        Ok(([], bytes)) => {
            let mut opaque = [0u8; 8];
            opaque.copy_from_slice(bytes);
            Ok(Ping {
                ack: h.has(flags::ACK),
                opaque,
            })
        }
        _ => Err(InvalidFrame::Length {
            ty: FrameType::Ping,
            len: h.length,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(length: u32, ty: FrameType, stream_id: u32) -> FrameHeader {
        FrameHeader {
            length,
            ty,
            flags: 0,
            stream_id,
            reserved: false,
        }
    }

    #[test]
    fn fixed_layouts() {
        let rst = parse_rst_stream(&hdr(4, FrameType::RstStream, 5), &[0, 0, 0, 8]);
        assert_eq!(
            rst,
            Ok(RstStream {
                stream_id: 5,
                error_code: 8
            })
        );
        assert!(parse_rst_stream(&hdr(3, FrameType::RstStream, 5), &[0, 0, 8]).is_err());
        let ga = parse_goaway(
            &hdr(10, FrameType::GoAway, 0),
            &[0x80, 0, 0, 7, 0, 0, 0, 2, b'h', b'i'],
        );
        assert_eq!(
            ga,
            Ok(GoAway {
                last_stream_id: 7,
                error_code: 2
            })
        );
        let wu = parse_window_update(&hdr(4, FrameType::WindowUpdate, 0), &[0x80, 0, 1, 0]);
        assert_eq!(
            wu,
            Ok(WindowUpdate {
                stream_id: 0,
                increment: 256
            })
        );
        let ping = parse_ping(&hdr(8, FrameType::Ping, 0), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(ping.map(|p| p.opaque[7]), Ok(8));
        let p = parse_priority(&hdr(5, FrameType::Priority, 3), &[0, 0, 0, 1, 255]);
        assert_eq!(
            p,
            Ok(Priority {
                exclusive: false,
                dependency: 1,
                weight: 255
            })
        );
    }
}
