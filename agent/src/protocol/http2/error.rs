//! Frame parse results: "need more bytes" is not "invalid".

use super::FrameType;

/// Why a frame could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The input is a valid prefix; at least this many more bytes are needed.
    #[error("need {0} more bytes")]
    Incomplete(usize),
    /// The bytes cannot be a well-formed frame.
    #[error(transparent)]
    Invalid(#[from] InvalidFrame),
}

/// A frame a conforming peer could not have sent (a connection error in
/// RFC 9113 terms); for a passive observer it means lost alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidFrame {
    #[error("{ty:?} frame with invalid length {len}")]
    Length { ty: FrameType, len: u32 },
    #[error("{0:?} frame on stream 0")]
    StreamZero(FrameType),
    #[error("{0:?} frame on stream other than 0")]
    StreamNonZero(FrameType),
    #[error("padding length exceeds the frame payload")]
    Padding,
    #[error("frame length {len} exceeds the max frame size {max}")]
    TooLarge { len: u32, max: u32 },
    #[error("not the HTTP/2 client connection preface")]
    Preface,
}
