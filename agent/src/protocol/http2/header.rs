//! The 9-byte frame header (RFC 9113 §4.1) and the checks applied to it.

use nom::number::streaming::{be_u24, be_u32, be_u8};
use nom::Parser;

use super::{FrameError, InvalidFrame};

/// Length of every frame header.
pub const FRAME_HEADER_LEN: usize = 9;

/// Frame flags (RFC 9113 §6).
pub mod flags {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// Frame type; unknown types stay representable (and are skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    Data,
    Headers,
    Priority,
    RstStream,
    Settings,
    PushPromise,
    Ping,
    GoAway,
    WindowUpdate,
    Continuation,
    Unknown(u8),
}

impl FrameType {
    pub fn from_u8(b: u8) -> Self {
        match b {
            0 => Self::Data,
            1 => Self::Headers,
            2 => Self::Priority,
            3 => Self::RstStream,
            4 => Self::Settings,
            5 => Self::PushPromise,
            6 => Self::Ping,
            7 => Self::GoAway,
            8 => Self::WindowUpdate,
            9 => Self::Continuation,
            other => Self::Unknown(other),
        }
    }

    pub fn to_u8(self) -> u8 {
        match self {
            Self::Data => 0,
            Self::Headers => 1,
            Self::Priority => 2,
            Self::RstStream => 3,
            Self::Settings => 4,
            Self::PushPromise => 5,
            Self::Ping => 6,
            Self::GoAway => 7,
            Self::WindowUpdate => 8,
            Self::Continuation => 9,
            Self::Unknown(b) => b,
        }
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub length: u32,
    pub ty: FrameType,
    pub flags: u8,
    pub stream_id: u32,
    /// The reserved bit before the stream id (must be ignored by receivers).
    pub reserved: bool,
}

impl FrameHeader {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Wire form, for tests and synthetic streams.
    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let l = self.length.to_be_bytes();
        let s = ((self.stream_id & 0x7fff_ffff) | (u32::from(self.reserved) << 31)).to_be_bytes();
        [
            l[1],
            l[2],
            l[3],
            self.ty.to_u8(),
            self.flags,
            s[0],
            s[1],
            s[2],
            s[3],
        ]
    }

    /// Checks a real peer enforces as connection errors (RFC 9113 §6):
    /// failing one means we are not looking at a frame boundary.
    pub fn check_well_formed(&self, max_len: u32) -> Result<(), InvalidFrame> {
        let (ty, len) = (self.ty, self.length);
        if len > max_len {
            return Err(InvalidFrame::TooLarge { len, max: max_len });
        }
        let bad_len = Err(InvalidFrame::Length { ty, len });
        let on_stream = matches!(
            ty,
            FrameType::Data
                | FrameType::Headers
                | FrameType::Priority
                | FrameType::RstStream
                | FrameType::PushPromise
                | FrameType::Continuation
        );
        if on_stream && self.stream_id == 0 {
            return Err(InvalidFrame::StreamZero(ty));
        }
        let on_connection = matches!(
            ty,
            FrameType::Settings | FrameType::Ping | FrameType::GoAway
        );
        if on_connection && self.stream_id != 0 {
            return Err(InvalidFrame::StreamNonZero(ty));
        }
        let min_len = match ty {
            FrameType::Data | FrameType::PushPromise if self.has(flags::PADDED) => 1,
            FrameType::Headers => {
                u32::from(self.has(flags::PADDED)) + 5 * u32::from(self.has(flags::PRIORITY))
            }
            _ => 0,
        };
        let len_ok = len >= min_len
            && match ty {
                FrameType::Priority => len == 5,
                FrameType::RstStream | FrameType::WindowUpdate => len == 4,
                FrameType::Settings => len.is_multiple_of(6) && !(self.has(flags::ACK) && len != 0),
                FrameType::Ping => len == 8,
                FrameType::GoAway => len >= 8,
                FrameType::PushPromise => len >= 4 + min_len,
                _ => true,
            };
        if len_ok {
            Ok(())
        } else {
            bad_len
        }
    }

    /// Stricter than [`Self::check_well_formed`]: what a gRPC peer plausibly
    /// sends (known type, only defined flags, reserved bit clear,
    /// client-initiated odd stream ids, no server push). Used to find a frame
    /// boundary when resynchronising.
    pub fn is_plausible(&self, max_len: u32) -> bool {
        if self.reserved || self.check_well_formed(max_len).is_err() {
            return false;
        }
        let odd = self.stream_id % 2 == 1;
        let (allowed, stream_ok) = match self.ty {
            FrameType::Data => (flags::END_STREAM | flags::PADDED, odd),
            FrameType::Headers => (
                flags::END_STREAM | flags::END_HEADERS | flags::PADDED | flags::PRIORITY,
                odd,
            ),
            FrameType::Priority | FrameType::RstStream => (0, odd),
            FrameType::Settings | FrameType::Ping => (flags::ACK, true),
            FrameType::GoAway => (0, true),
            FrameType::WindowUpdate => (0, self.stream_id == 0 || odd),
            FrameType::Continuation => (flags::END_HEADERS, odd),
            FrameType::PushPromise | FrameType::Unknown(_) => return false,
        };
        stream_ok && self.flags & !allowed == 0
    }
}

/// Parses a frame header; [`FrameError::Incomplete`] on fewer than 9 bytes.
pub fn parse_header(input: &[u8]) -> Result<(FrameHeader, &[u8]), FrameError> {
    let parsed: nom::IResult<&[u8], _> = (be_u24, be_u8, be_u8, be_u32).parse(input);
    match parsed {
        Ok((rest, (length, ty, flags, sid))) => Ok((
            FrameHeader {
                length,
                ty: FrameType::from_u8(ty),
                flags,
                stream_id: sid & 0x7fff_ffff,
                reserved: sid & 0x8000_0000 != 0,
            },
            rest,
        )),
        // Only truncation can fail here: every 9 bytes form some header.
        Err(_) => Err(FrameError::Incomplete(
            FRAME_HEADER_LEN - input.len().min(FRAME_HEADER_LEN),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(length: u32, ty: FrameType, flags: u8, stream_id: u32) -> FrameHeader {
        FrameHeader {
            length,
            ty,
            flags,
            stream_id,
            reserved: false,
        }
    }

    #[test]
    fn parses_and_encodes_round_trip() {
        let h = FrameHeader {
            reserved: true,
            ..hdr(0x01_0203, FrameType::Headers, 0x25, 7)
        };
        let bytes = h.encode();
        assert_eq!(bytes, [1, 2, 3, 1, 0x25, 0x80, 0, 0, 7]);
        let (parsed, rest) = parse_header(&bytes).expect("header");
        assert_eq!(parsed, h);
        assert!(rest.is_empty());
    }

    #[test]
    fn short_input_is_incomplete_not_invalid() {
        let bytes = hdr(4, FrameType::RstStream, 0, 1).encode();
        for n in 0..FRAME_HEADER_LEN {
            assert_eq!(
                parse_header(&bytes[..n]),
                Err(FrameError::Incomplete(9 - n))
            );
        }
    }

    #[test]
    fn well_formed_rules() {
        let max = 16_384;
        assert!(hdr(8, FrameType::Ping, 0, 0).check_well_formed(max).is_ok());
        assert!(hdr(7, FrameType::Ping, 0, 0)
            .check_well_formed(max)
            .is_err());
        assert!(hdr(8, FrameType::Ping, 0, 1)
            .check_well_formed(max)
            .is_err());
        assert!(hdr(6, FrameType::Settings, flags::ACK, 0)
            .check_well_formed(max)
            .is_err());
        assert!(hdr(12, FrameType::Settings, 0, 0)
            .check_well_formed(max)
            .is_ok());
        assert!(hdr(10, FrameType::Data, 0, 0)
            .check_well_formed(max)
            .is_err());
        assert!(hdr(0, FrameType::Data, flags::PADDED, 1)
            .check_well_formed(max)
            .is_err());
        assert!(hdr(5, FrameType::Headers, flags::PRIORITY, 1)
            .check_well_formed(max)
            .is_ok());
        assert!(
            hdr(5, FrameType::Headers, flags::PRIORITY | flags::PADDED, 1)
                .check_well_formed(max)
                .is_err()
        );
        assert!(hdr(max + 1, FrameType::Data, 0, 1)
            .check_well_formed(max)
            .is_err());
        assert!(hdr(3, FrameType::Unknown(0xfa), 0xff, 2)
            .check_well_formed(max)
            .is_ok());
    }

    #[test]
    fn plausibility_is_stricter() {
        let max = 16_384;
        assert!(hdr(10, FrameType::Data, flags::END_STREAM, 1).is_plausible(max));
        assert!(!hdr(10, FrameType::Data, 0x2, 1).is_plausible(max));
        assert!(!hdr(10, FrameType::Data, 0, 2).is_plausible(max));
        assert!(!hdr(3, FrameType::Unknown(0xfa), 0, 1).is_plausible(max));
        assert!(!hdr(4, FrameType::PushPromise, 0, 1).is_plausible(max));
        assert!(hdr(4, FrameType::WindowUpdate, 0, 0).is_plausible(max));
        let reserved = FrameHeader {
            reserved: true,
            ..hdr(4, FrameType::WindowUpdate, 0, 0)
        };
        assert!(!reserved.is_plausible(max));
    }
}
