//! File identity: device + inode **and** a hash of the first bytes.
//!
//! The fingerprint covers the first `min(size, FP_LEN)` bytes and records how
//! many it covers (`fingerprint_len`). While a file is shorter than `FP_LEN`
//! the fingerprint grows with it: the tailer recomputes it as the file grows,
//! so a checkpoint may carry a short fingerprint. A [`FileId`] matches a file
//! when the file has at least `fingerprint_len` bytes and the hash of exactly
//! that many first bytes is equal — a short fingerprint still matches the same
//! file after it has grown. The hash is FNV-1a 64: stable across builds and
//! Rust versions, since checkpoints are persisted.
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use crate::events::FileId;

/// How many leading bytes a full fingerprint covers.
pub const FP_LEN: u32 = 256;

/// A fingerprint this long (or longer) is trusted without a device+inode
/// match (a copy made by `copytruncate` has another inode, same first bytes).
pub const FP_ONLY_MIN: u32 = 64;

/// FNV-1a, 64 bit.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Reads up to `len` bytes from offset 0; fewer only at end of file.
pub fn head(file: &File, len: u32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// The identity of an open file now: dev+ino and the fingerprint of its first
/// `min(size, FP_LEN)` bytes.
pub fn identify(file: &File) -> io::Result<FileId> {
    let meta = file.metadata()?;
    let bytes = head(file, FP_LEN)?;
    Ok(FileId { dev: meta.dev(), ino: meta.ino(), fingerprint: fnv1a(&bytes), fingerprint_len: bytes.len() as u32 })
}

/// Whether the file's first `id.fingerprint_len` bytes hash to `id.fingerprint`.
pub fn content_matches(file: &File, id: &FileId) -> io::Result<bool> {
    let bytes = head(file, id.fingerprint_len.min(FP_LEN))?;
    Ok(bytes.len() == id.fingerprint_len as usize && fnv1a(&bytes) == id.fingerprint)
}

/// Same device and inode.
pub fn same_inode(a: &FileId, dev: u64, ino: u64) -> bool {
    a.dev == dev && a.ino == ino
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn short_fingerprint_grows_and_still_matches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        let mut f = std::fs::File::create(&p).expect("create");
        f.write_all(b"hello\n").expect("write");
        let r = File::open(&p).expect("open");
        let short = identify(&r).expect("id");
        assert_eq!(short.fingerprint_len, 6);
        f.write_all(&[b'x'; 400]).expect("write");
        let full = identify(&r).expect("id");
        assert_eq!(full.fingerprint_len, FP_LEN);
        assert_ne!(short.fingerprint, full.fingerprint);
        assert!(content_matches(&r, &short).expect("match"), "short fingerprint matches the grown file");
        assert!(content_matches(&r, &full).expect("match"));
        let other = FileId { fingerprint: full.fingerprint ^ 1, ..full.clone() };
        assert!(!content_matches(&r, &other).expect("match"));
    }

    #[test]
    fn empty_file_has_empty_fingerprint_and_a_longer_one_does_not_match_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        std::fs::write(&p, b"").expect("write");
        let r = File::open(&p).expect("open");
        let id = identify(&r).expect("id");
        assert_eq!(id.fingerprint_len, 0);
        let longer = FileId { fingerprint_len: 10, ..id };
        assert!(!content_matches(&r, &longer).expect("match"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
