//! Primitive representations (RFC 7541 §5): prefixed integers and string
//! literals. Input is a complete header block, so running out of bytes is
//! a [`HpackError::Truncated`] block, not a request for more.

use super::{huffman, HpackError};

/// Decodes an integer with an N-bit prefix (1..=8) from the first byte.
pub(super) fn decode_int(input: &[u8], prefix_bits: u8) -> Result<(u32, &[u8]), HpackError> {
    let (&first, mut rest) = input.split_first().ok_or(HpackError::Truncated)?;
    let mask = (1u16 << prefix_bits) - 1;
    let mut value = u64::from(u16::from(first) & mask);
    if value < u64::from(mask) {
        return Ok((value as u32, rest));
    }
    let mut shift = 0u32;
    loop {
        let (&b, tail) = rest.split_first().ok_or(HpackError::Truncated)?;
        rest = tail;
        value += u64::from(b & 0x7f) << shift;
        if value > u64::from(u32::MAX) {
            return Err(HpackError::IntegerOverflow);
        }
        if b & 0x80 == 0 {
            return Ok((value as u32, rest));
        }
        shift += 7;
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
    }
}

/// Decodes a string literal (H flag + 7-bit prefixed length + octets).
pub(super) fn decode_string(input: &[u8]) -> Result<(Vec<u8>, &[u8]), HpackError> {
    let huffman_coded = input.first().is_some_and(|b| b & 0x80 != 0);
    let (len, rest) = decode_int(input, 7)?;
    let len = len as usize;
    if rest.len() < len {
        return Err(HpackError::Truncated);
    }
    let (raw, rest) = rest.split_at(len);
    if huffman_coded {
        let mut out = Vec::with_capacity(len + len / 2);
        huffman::decode(raw, &mut out)?;
        Ok((out, rest))
    } else {
        Ok((raw.to_vec(), rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_integer_examples() {
        // C.1.1: 10 with a 5-bit prefix; C.1.2: 1337; C.1.3: 42 at an octet boundary.
        assert_eq!(decode_int(&[0b0000_1010], 5), Ok((10, &[][..])));
        assert_eq!(
            decode_int(&[0b0001_1111, 0b1001_1010, 0b0000_1010], 5),
            Ok((1337, &[][..]))
        );
        assert_eq!(decode_int(&[42, 0xff], 8), Ok((42, &[0xff][..])));
    }

    #[test]
    fn truncation_and_overflow() {
        assert_eq!(decode_int(&[0x1f, 0x9a], 5), Err(HpackError::Truncated));
        assert_eq!(decode_int(&[], 5), Err(HpackError::Truncated));
        assert_eq!(
            decode_int(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x7f], 5),
            Err(HpackError::IntegerOverflow)
        );
        assert_eq!(
            decode_int(&[0x1f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], 5),
            Err(HpackError::IntegerOverflow)
        );
        assert_eq!(
            decode_string(&[0x05, b'a', b'b']),
            Err(HpackError::Truncated)
        );
    }
}
