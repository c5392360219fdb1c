//! The HPACK Huffman code (RFC 7541 §5.2, Appendix B).
//!
//! Decoding walks a binary tree built at compile time from the code table,
//! one bit at a time: simple, allocation-free, and header strings are a tiny
//! share of the traffic.

use super::huffman_table::CODES;
use super::HpackError;

const LEAF: u16 = 0x8000;
const EOS: u16 = 256;
/// A complete prefix code with 257 symbols has 256 internal nodes.
const NODES: usize = 256;

/// `TREE[node][bit]`: the child node index, or `LEAF | symbol`. Node 0 is
/// the root; 0 as a child means "absent" (cannot happen for a complete code).
static TREE: [[u16; 2]; NODES] = build_tree();

const fn build_tree() -> [[u16; 2]; NODES] {
    let mut tree = [[0u16; 2]; NODES];
    let mut next = 1;
    let mut sym = 0;
    while sym < CODES.len() {
        let (code, len) = CODES[sym];
        let mut node = 0;
        let mut bit = len as u32;
        while bit > 1 {
            bit -= 1;
            let b = ((code >> bit) & 1) as usize;
            if tree[node][b] == 0 {
                tree[node][b] = next as u16;
                next += 1;
            }
            node = tree[node][b] as usize;
        }
        tree[node][(code & 1) as usize] = LEAF | sym as u16;
        sym += 1;
    }
    assert!(next == NODES, "Huffman table is not a complete prefix code");
    tree
}

/// Appends the decoded bytes of `input` to `out`. Rejects the EOS symbol,
/// padding longer than 7 bits, and padding that is not all ones.
pub fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    let mut node = 0usize;
    let mut pending_bits = 0u32;
    let mut pending_ones = true;
    for &byte in input {
        for shift in (0..8).rev() {
            let bit = (byte >> shift) & 1;
            let next = TREE[node][usize::from(bit)];
            pending_bits += 1;
            pending_ones &= bit == 1;
            if next & LEAF != 0 {
                let sym = next & !LEAF;
                if sym == EOS {
                    return Err(HpackError::InvalidHuffman);
                }
                out.push(sym as u8);
                node = 0;
                pending_bits = 0;
                pending_ones = true;
            } else if next == 0 {
                return Err(HpackError::InvalidHuffman);
            } else {
                node = usize::from(next);
            }
        }
    }
    if pending_bits > 7 || !pending_ones {
        return Err(HpackError::InvalidHuffman);
    }
    Ok(())
}

/// Appends the Huffman encoding of `input` to `out` (padded with ones).
pub fn encode(input: &[u8], out: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut bits: u32 = 0;
    for &b in input {
        let (code, len) = CODES[usize::from(b)];
        acc = (acc << len) | u64::from(code);
        bits += u32::from(len);
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1u64 << bits) - 1;
    }
    if bits > 0 {
        out.push(((acc << (8 - bits)) | (0xff >> bits)) as u8);
    }
}

/// Length in bytes of the Huffman encoding of `input`.
pub fn encoded_len(input: &[u8]) -> usize {
    let bits: usize = input
        .iter()
        .map(|&b| usize::from(CODES[usize::from(b)].1))
        .sum();
    bits.div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn round_trips_every_byte_alone_and_together() {
        let all: Vec<u8> = (0..=255).collect();
        for b in &all {
            let mut enc = Vec::new();
            encode(&[*b], &mut enc);
            assert_eq!(enc.len(), encoded_len(&[*b]));
            let mut dec = Vec::new();
            decode(&enc, &mut dec).expect("decode");
            assert_eq!(dec, [*b]);
        }
        let mut enc = Vec::new();
        encode(&all, &mut enc);
        let mut dec = Vec::new();
        decode(&enc, &mut dec).expect("decode");
        assert_eq!(dec, all);
    }

    #[test]
    fn rfc_examples() {
        for (h, s) in [
            ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
            ("a8eb 1064 9cbf", "no-cache"),
            ("6402", "302"),
            (
                "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
                "https://www.example.com",
            ),
        ] {
            let mut out = Vec::new();
            decode(&hex(h), &mut out).expect("decode");
            assert_eq!(out, s.as_bytes());
            let mut enc = Vec::new();
            encode(s.as_bytes(), &mut enc);
            assert_eq!(enc, hex(h));
        }
    }

    #[test]
    fn rejects_bad_padding_and_eos() {
        let mut out = Vec::new();
        // '0' is 00000 (5 bits); padding with zeros is invalid.
        assert_eq!(decode(&[0x00], &mut out), Err(HpackError::InvalidHuffman));
        // A full byte of ones is padding longer than 7 bits.
        assert_eq!(
            decode(&[0x07, 0xff], &mut Vec::new()),
            Err(HpackError::InvalidHuffman)
        );
        // EOS (30 ones) inside a string.
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xfc], &mut Vec::new()),
            Err(HpackError::InvalidHuffman)
        );
        // Go's fuzz crash input.
        assert!(decode(b"00\x91\xff\xff\xff\xff\xc8", &mut Vec::new()).is_err());
    }
}
