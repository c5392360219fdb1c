//! DATA (RFC 9113 §6.1) and the padding shared with HEADERS/PUSH_PROMISE.
//!
//! The [`super::Reassembler`] streams DATA payloads without storing them; the
//! whole-payload parser here serves [`super::parse_frame`] and tests.

use nom::number::complete::be_u8;

use super::{flags, FrameHeader, InvalidFrame, Opaque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFrame<'a> {
    pub stream_id: u32,
    pub end_stream: bool,
    /// Payload without padding. `Debug` shows only its length.
    pub data: Opaque<'a>,
}

/// Strips the PADDED envelope: pad length byte up front, padding at the end.
pub(super) fn strip_padding<'a>(
    h: &FrameHeader,
    payload: &'a [u8],
) -> Result<&'a [u8], InvalidFrame> {
    if !h.has(flags::PADDED) {
        return Ok(payload);
    }
    let parsed: nom::IResult<&[u8], u8> = be_u8(payload);
    let (rest, pad) = parsed.map_err(|_| InvalidFrame::Padding)?;
    let keep = rest
        .len()
        .checked_sub(usize::from(pad))
        .ok_or(InvalidFrame::Padding)?;
    Ok(&rest[..keep])
}

pub(super) fn parse<'a>(h: &FrameHeader, payload: &'a [u8]) -> Result<DataFrame<'a>, InvalidFrame> {
    Ok(DataFrame {
        stream_id: h.stream_id,
        end_stream: h.has(flags::END_STREAM),
        data: Opaque(strip_padding(h, payload)?),
    })
}

#[cfg(test)]
mod tests {
    use super::super::FrameType;
    use super::*;

    #[test]
    fn padding_is_stripped_and_overlong_padding_rejected() {
        let h = FrameHeader {
            length: 6,
            ty: FrameType::Data,
            flags: flags::PADDED,
            stream_id: 1,
            reserved: false,
        };
        let d = parse(&h, &[2, b'a', b'b', b'c', 0, 0]).expect("data");
        assert_eq!(d.data.0, b"abc");
        assert_eq!(parse(&h, &[6, 0, 0, 0, 0, 0]), Err(InvalidFrame::Padding));
        assert_eq!(
            parse(&h, &[5, 0, 0, 0, 0, 0]).map(|d| d.data.0.len()),
            Ok(0)
        );
    }
}
