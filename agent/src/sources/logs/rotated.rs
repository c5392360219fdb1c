//! Finding a file we knew after it has been rotated away, and the newer
//! generations that follow it.
//!
//! Candidates are the siblings of `path` named `NAME.1`, `NAME.2`, …,
//! `NAME-20250101` (dateext), `NAME_x`; compressed ones (`.gz`, `.xz`, …) are
//! skipped. A candidate matches a [`FileId`] when it has the same device +
//! inode and the same first bytes (a renamed file), or — only for a full
//! enough fingerprint ([`FP_ONLY_MIN`] bytes, or one covering every byte
//! before the offset) — the same first bytes under another inode (a
//! `copytruncate` copy). Preference: inode match, then the
//! lowest generation number, then name order.
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::file::OpenFile;
use super::fingerprint::{self, FP_ONLY_MIN};
use crate::events::FileId;

const COMPRESSED: [&str; 8] = [".gz", ".xz", ".bz2", ".zst", ".lz4", ".z", ".Z", ".zip"];

/// Siblings of `path` that look like its rotated generations, best first:
/// numbered ones by number (`.1` before `.2`), then the rest by name.
pub fn siblings(path: &Path) -> Vec<(PathBuf, Option<u32>)> {
    let (Some(dir), Some(base)) = (path.parent(), path.file_name().and_then(|b| b.to_str())) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(PathBuf, Option<u32>)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix(base)?;
            let sep = rest.chars().next()?;
            if !matches!(sep, '.' | '-' | '_') || COMPRESSED.iter().any(|c| rest.ends_with(c)) {
                return None;
            }
            Some((e.path(), rest[1..].parse::<u32>().ok()))
        })
        .collect();
    out.sort_by(|a, b| match (a.1, b.1) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.0.cmp(&b.0),
    });
    out
}

/// The rotated file holding `id` with more than `offset` bytes (or exactly
/// `offset` when `allow_equal`), opened. `not` excludes an inode (the
/// truncated original when looking for its copy).
pub fn find(
    path: &Path,
    id: &FileId,
    offset: u64,
    allow_equal: bool,
    not: Option<(u64, u64)>,
    now: Instant,
    max_line: usize,
) -> Option<(OpenFile, Option<u32>)> {
    let mut by_content = None;
    for (cand, gen) in siblings(path) {
        let Ok(open) = OpenFile::open(&cand, now, max_line) else { continue };
        let (dev, ino) = (open.id.dev, open.id.ino);
        if not == Some((dev, ino)) {
            continue;
        }
        let Ok(size) = open.size() else { continue };
        if size < offset || (size == offset && !allow_equal) {
            continue;
        }
        if !fingerprint::content_matches(&open.file, id).unwrap_or(false) {
            continue;
        }
        if fingerprint::same_inode(id, dev, ino) {
            return Some((open, gen));
        }
        // Content alone is trusted when the fingerprint is long, or when it
        // covers every byte before `offset` (a short file read whole).
        let covers = offset > 0 && u64::from(id.fingerprint_len) >= offset;
        if by_content.is_none() && (id.fingerprint_len >= FP_ONLY_MIN || covers) {
            by_content = Some((open, gen));
        }
    }
    by_content
}

/// The generation number (`NAME.N`) under which the inode now lives.
pub fn generation_of(path: &Path, dev: u64, ino: u64) -> Option<u32> {
    siblings(path).into_iter().find_map(|(p, gen)| {
        let m = fs::metadata(&p).ok()?;
        (m.dev() == dev && m.ino() == ino).then_some(gen).flatten()
    })
}

/// The generations newer than `gen` that still exist, oldest first
/// (`NAME.(gen-1)` … `NAME.1`), skipping `seen` inodes.
pub fn newer_generations(path: &Path, gen: u32, seen: &[(u64, u64)], now: Instant, max_line: usize) -> Vec<OpenFile> {
    let mut out = Vec::new();
    for g in (1..gen).rev() {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{g}"));
        let p = PathBuf::from(name);
        let Ok(open) = OpenFile::open(&p, now, max_line) else { continue };
        let Ok(m) = open.file.metadata() else { continue };
        if !seen.contains(&(m.dev(), m.ino())) {
            out.push(open);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_are_generations_only_numbered_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        for n in [
            "access.log",
            "access.log.2",
            "access.log.1",
            "access.log.3.gz",
            "access.log-20250101",
            "access.logx",
            "app.log.1",
        ] {
            fs::write(dir.path().join(n), b"x").expect("write");
        }
        let names: Vec<String> = siblings(&dir.path().join("access.log"))
            .into_iter()
            .filter_map(|(p, _)| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect();
        assert_eq!(names, ["access.log.1", "access.log.2", "access.log-20250101"]);
        assert!(siblings(&dir.path().join("missing/access.log")).is_empty());
    }
}
