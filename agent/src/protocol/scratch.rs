//! A byte buffer for captured bytes that may contain secrets.

use std::fmt;

/// Holds raw captured bytes (a partial frame, the resync window). Those may
/// include response bodies, hence the token: `Debug` shows only the length,
/// and bytes are overwritten with zeros when dropped from the buffer
/// (best effort; this is hygiene, not a security boundary).
#[derive(Default)]
pub(crate) struct Scratch(Vec<u8>);

impl Scratch {
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// Zeroes and empties the buffer, keeping its allocation.
    pub(crate) fn clear(&mut self) {
        self.0.fill(0);
        self.0.clear();
    }

    /// Drops the first `n` bytes (all when `n >= len`).
    pub(crate) fn drain_front(&mut self, n: usize) {
        let n = n.min(self.0.len());
        let keep = self.0.len() - n;
        self.0.copy_within(n.., 0);
        self.0[keep..].fill(0);
        self.0.truncate(keep);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.0.fill(0);
    }
}

impl fmt::Debug for Scratch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scratch({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_front_keeps_the_tail_and_debug_hides_content() {
        let mut s = Scratch::default();
        s.extend_from_slice(b"t1.secret");
        s.drain_front(3);
        assert_eq!(s.as_slice(), b"secret");
        assert_eq!(format!("{s:?}"), "Scratch(6 bytes)");
        s.drain_front(100);
        assert!(s.is_empty());
    }
}
