//! The client connection preface (RFC 9113 §3.4).

use nom::bytes::streaming::tag;
use nom::Parser;

use super::{FrameError, InvalidFrame};

/// What every HTTP/2 client sends first.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Consumes the preface; `Incomplete` while the input is a proper prefix of it.
pub fn parse_preface(input: &[u8]) -> Result<&[u8], FrameError> {
    let parsed: nom::IResult<&[u8], &[u8]> = tag(&PREFACE[..]).parse(input);
    match parsed {
        Ok((rest, _)) => Ok(rest),
        Err(nom::Err::Incomplete(_)) => Err(FrameError::Incomplete(PREFACE.len() - input.len())),
        Err(_) => Err(InvalidFrame::Preface.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preface_prefix_is_incomplete_and_mismatch_invalid() {
        assert_eq!(
            parse_preface(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nX"),
            Ok(&b"X"[..])
        );
        assert_eq!(parse_preface(b"PRI * HT"), Err(FrameError::Incomplete(16)));
        assert_eq!(
            parse_preface(b"GET / HTTP/1.1\r\n"),
            Err(InvalidFrame::Preface.into())
        );
    }
}
