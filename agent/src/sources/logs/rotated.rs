//! Finding a file we knew after it has been rotated away, and the newer
//! generations that follow it.
//!
//! Candidates are the siblings of `path` named `NAME.1`, `NAME.2`, …
//! (numbered), `NAME-20250101`, `NAME-2025112514`, `NAME.20251125` (dateext),
//! `NAME_x`; compressed ones (`.gz`, `.xz`, …) are skipped. A candidate
//! matches a [`FileId`] when it has the same device + inode and the same
//! first bytes (a renamed file), or — only for a full enough fingerprint
//! ([`FP_ONLY_MIN`] bytes, or one covering every byte before the offset) —
//! the same first bytes under another inode (a `copytruncate` copy).
//! Preference: inode match, then the lowest generation number, then name
//! order. Which generations are newer than another: for numbered names the
//! lower numbers, for any other name those modified later.
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::file::OpenFile;
use super::fingerprint::{self, FP_ONLY_MIN};
use crate::events::FileId;

const COMPRESSED: [&str; 8] = [".gz", ".xz", ".bz2", ".zst", ".lz4", ".z", ".Z", ".zip"];

/// `NAME.N` is a numbered generation below this; a longer number is a date
/// (`NAME.20251125`), ordered by time like the other dateext names.
const MAX_GENERATION: u32 = 100_000;

/// Siblings of `path` that look like its rotated generations, best first:
/// numbered ones by number (`.1` before `.2`), then the rest by name; with
/// the generation number of the numbered ones.
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
            let gen = rest.strip_prefix('.').and_then(|n| n.parse::<u32>().ok()).filter(|&n| n < MAX_GENERATION);
            Some((e.path(), gen))
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

/// The rotated generations that still exist, newest first: `NAME.1`,
/// `NAME.2`, …, then dated names from the latest.
pub fn newest_first(path: &Path) -> Vec<PathBuf> {
    let (numbered, dated): (Vec<_>, Vec<_>) = siblings(path).into_iter().partition(|(_, g)| g.is_some());
    numbered.into_iter().chain(dated.into_iter().rev()).map(|(p, _)| p).collect()
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
) -> Option<OpenFile> {
    let mut by_content = None;
    for (cand, _) in siblings(path) {
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
            return Some(open);
        }
        // Content alone is trusted when the fingerprint is long, or when it
        // covers every byte before `offset` (a short file read whole).
        let covers = offset > 0 && u64::from(id.fingerprint_len) >= offset;
        if by_content.is_none() && (id.fingerprint_len >= FP_ONLY_MIN || covers) {
            by_content = Some(open);
        }
    }
    by_content
}

/// The generations rotated after `than` (an open rotated file) that still
/// exist, oldest first, skipping `seen` inodes: for a numbered `than`
/// (`NAME.N`) the lower numbers, `NAME.(N-1)` … `NAME.1`; for any other name
/// the other non-numbered names that sort after it — logrotate requires
/// dated names to sort by age (it finds the oldest to delete that way);
/// timestamps would not do, two files written within one clock tick share
/// them. Empty when `than` is not among the siblings (deleted, or the path).
pub fn newer_generations(path: &Path, than: &OpenFile, seen: &[(u64, u64)], now: Instant, max_line: usize) -> Vec<OpenFile> {
    let sibs = siblings(path);
    let id_of = |p: &Path| fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let me = (than.id.dev, than.id.ino);
    let Some((my_name, my_gen)) = sibs.iter().find(|(p, _)| id_of(p) == Some(me)).cloned() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // siblings() lists numbered names by number, the others by name
    let newer: Vec<&(PathBuf, Option<u32>)> = match my_gen {
        Some(mine) => sibs.iter().filter(|(_, g)| g.is_some_and(|g| g < mine)).rev().collect(),
        // one scheme at a time: a stale numbered file beside dated ones is not ordered
        None => sibs.iter().filter(|(p, g)| g.is_none() && *p > my_name).collect(),
    };
    for (p, _) in newer {
        let Ok(open) = OpenFile::open(p, now, max_line) else { continue };
        if !seen.contains(&(open.id.dev, open.id.ino)) && (open.id.dev, open.id.ino) != me {
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
        let gens: Vec<Option<u32>> = siblings(&dir.path().join("access.log")).into_iter().map(|(_, g)| g).collect();
        assert_eq!(gens, [Some(1), Some(2), None], "a date is not a generation number");
        assert!(siblings(&dir.path().join("missing/access.log")).is_empty());
    }
}
