//! Line splitting over a byte stream fed in arbitrary chunks.
//!
//! - A line ends at `\n`; a trailing `\r` is dropped too. A partial last line
//!   waits in the splitter for its newline ([`Splitter::finish`] hands it out
//!   when the caller leaves the file for good).
//! - A line longer than `max` is cut: its first `max` bytes are emitted (once
//!   the newline arrives, so every emitted line ends on a line boundary and
//!   its `end_offset` is a safe checkpoint), the rest is skipped.
//! - NUL bytes at the start of a line are skipped and counted: `copytruncate`
//!   with a writer that does not use `O_APPEND` leaves a hole of zeros before
//!   the writer's next line.
use memchr::memchr;

/// One line out of the splitter: bytes without the terminator, the file
/// offset just past its `\n`, and whether it was cut.
pub type Emit<'a> = (&'a [u8], u64, bool);

#[derive(Debug)]
pub struct Splitter {
    buf: Vec<u8>,
    /// The pending line is longer than `max`: `buf` holds its first `max`
    /// bytes, everything else up to the newline is skipped.
    cut: bool,
    max: usize,
    /// NUL bytes skipped so far.
    pub nul_skipped: u64,
}

impl Splitter {
    pub fn new(max: usize) -> Self {
        Self { buf: Vec::new(), cut: false, max: max.max(1), nul_skipped: 0 }
    }

    /// Bytes of the pending partial line held (at most `max`).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Splits `data`, which starts at file offset `base`, calling `emit` for
    /// each complete line.
    pub fn feed(&mut self, data: &[u8], base: u64, mut emit: impl FnMut(Emit<'_>)) {
        let mut i = 0;
        while i < data.len() {
            if self.buf.is_empty() && !self.cut {
                let nuls = data[i..].iter().take_while(|&&b| b == 0).count();
                self.nul_skipped += nuls as u64;
                i += nuls;
                if i == data.len() {
                    break;
                }
            }
            let rest = &data[i..];
            match memchr(b'\n', rest) {
                Some(p) => {
                    let seg = &rest[..p];
                    let end = base + (i + p + 1) as u64;
                    if self.buf.is_empty() && !self.cut {
                        let take = seg.len().min(self.max);
                        emit((strip_cr(&seg[..take]), end, take < seg.len()));
                    } else {
                        self.push(seg);
                        emit((strip_cr(&self.buf), end, self.cut));
                        self.buf.clear();
                        self.cut = false;
                    }
                    i += p + 1;
                }
                None => {
                    self.push(rest);
                    i = data.len();
                }
            }
        }
    }

    /// Hands out the pending partial line (when leaving a file): `None` when
    /// nothing is pending.
    pub fn finish(&mut self) -> Option<(Vec<u8>, bool)> {
        if self.buf.is_empty() && !self.cut {
            return None;
        }
        let cut = std::mem::replace(&mut self.cut, false);
        let mut line = std::mem::take(&mut self.buf);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Some((line, cut))
    }

    fn push(&mut self, seg: &[u8]) {
        if self.cut {
            return;
        }
        let take = seg.len().min(self.max - self.buf.len());
        self.buf.extend_from_slice(&seg[..take]);
        self.cut = take < seg.len();
    }
}

fn strip_cr(s: &[u8]) -> &[u8] {
    s.strip_suffix(b"\r").unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> (Vec<(Vec<u8>, u64, bool)>, Splitter) {
        let mut s = Splitter::new(max);
        let mut out = Vec::new();
        let mut base = 0u64;
        for c in chunks {
            s.feed(c, base, |(l, end, cut)| out.push((l.to_vec(), end, cut)));
            base += c.len() as u64;
        }
        (out, s)
    }

    #[test]
    fn lines_across_chunks_with_offsets() {
        let (out, mut s) = split(&[b"ab", b"c\nde", b"f\r\n", b"gh"], 100);
        assert_eq!(out, vec![(b"abc".to_vec(), 4, false), (b"def".to_vec(), 9, false)]);
        assert_eq!(s.pending(), 2);
        assert_eq!(s.finish(), Some((b"gh".to_vec(), false)));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn long_lines_are_cut_at_max_and_skipped_to_the_newline() {
        let (out, _) = split(&[b"0123456789\nabc", b"defgh", b"ij\n", b"1234\n12345\n"], 5);
        assert_eq!(
            out,
            vec![
                (b"01234".to_vec(), 11, true),
                (b"abcde".to_vec(), 22, true),
                (b"1234".to_vec(), 27, false),
                (b"12345".to_vec(), 33, false),
            ]
        );
    }

    #[test]
    fn leading_nuls_are_skipped_and_counted() {
        let (out, s) = split(&[b"a\n\0\0\0", b"\0b\0c\n"], 100);
        assert_eq!(out, vec![(b"a".to_vec(), 2, false), (b"b\0c".to_vec(), 10, false)]);
        assert_eq!(s.nul_skipped, 4);
    }

    proptest! {
        /// Any chunking gives the same lines as splitting the whole input.
        #[test]
        fn chunking_does_not_matter(data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(0u8), any::<u8>()], 0..300),
                                    cuts in proptest::collection::vec(0usize..300, 0..8), max in 1usize..20) {
            let whole = split(&[&data], max).0;
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= data.len()).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut prev = 0;
            for c in cuts { chunks.push(&data[prev..c]); prev = c; }
            chunks.push(&data[prev..]);
            prop_assert_eq!(split(&chunks, max).0, whole);
        }
    }
}
