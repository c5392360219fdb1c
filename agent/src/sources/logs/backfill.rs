//! Where to start reading on first start: the first line whose time is within
//! the backfill window, found by binary search over byte offsets.
//!
//! A probe at offset `m` skips to the next line start, then reads lines until
//! one has a time (at most [`PROBE_LINES`] lines: multi-line records and
//! untimed lines are stepped over). Invariant: everything before `lo` is
//! older than the cutoff; the answer is at or before `hi`. A probe that finds
//! no time moves `hi` down (we may read a little more, never less). Once the
//! range is small it is scanned line by line; untimed lines right after an
//! old record belong to it and are skipped, but a range without any time
//! (an untimed file) is read whole. Timestamps are assumed to be
//! non-decreasing; mildly out-of-order lines only move the start by a few lines.
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::SystemTime;

use memchr::memchr;

/// Lines read per probe while looking for one with a time.
pub const PROBE_LINES: usize = 8;
/// Below this many bytes the range is scanned linearly.
const LINEAR: u64 = 16 * 1024;
const CHUNK: usize = 4096;

/// What the search cost, for tests and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BackfillStats {
    pub probes: u32,
    pub bytes_read: u64,
}

/// Reads from a file of a fixed `size` (bytes appended later are ignored),
/// through a one-chunk cache so consecutive lines cost one read per chunk.
pub struct Probe<'a> {
    file: &'a File,
    size: u64,
    max_line: usize,
    cache: Vec<u8>,
    cache_at: u64,
    pub stats: BackfillStats,
}

impl<'a> Probe<'a> {
    pub fn new(file: &'a File, size: u64, max_line: usize) -> Self {
        Self { file, size, max_line, cache: Vec::new(), cache_at: 0, stats: BackfillStats::default() }
    }

    /// The cached bytes from `at` on (reading a chunk there if needed).
    fn bytes_at(&mut self, at: u64) -> io::Result<&[u8]> {
        let end = self.cache_at + self.cache.len() as u64;
        if at < self.cache_at || at >= end {
            let want = ((self.size - at) as usize).min(CHUNK);
            self.cache.resize(want, 0);
            let n = read_at(self.file, &mut self.cache, at)?;
            self.cache.truncate(n);
            self.cache_at = at;
            self.stats.bytes_read += n as u64;
        }
        Ok(&self.cache[(at - self.cache_at) as usize..])
    }

    /// The line starting at `pos` (at most `max_line` bytes of it) and the
    /// offset of the next line; `None` at the end.
    pub fn line_at(&mut self, pos: u64) -> io::Result<Option<(Vec<u8>, u64)>> {
        let mut line = Vec::new();
        let mut at = pos;
        while at < self.size {
            let max = self.max_line;
            let avail = self.bytes_at(at)?;
            if avail.is_empty() {
                break;
            }
            let (seg, done) = match memchr(b'\n', avail) {
                Some(p) => (&avail[..p], Some(p)),
                None => (avail, None),
            };
            let n = avail.len();
            let room = max.saturating_sub(line.len());
            line.extend_from_slice(&seg[..seg.len().min(room)]);
            match done {
                Some(p) => return Ok(Some((line, at + p as u64 + 1))),
                None => at += n as u64,
            }
        }
        Ok((at > pos).then_some((line, at)))
    }

    /// The first line start at or after `pos`.
    pub fn next_line_start(&mut self, pos: u64) -> io::Result<u64> {
        if pos == 0 {
            return Ok(0);
        }
        // The byte before `pos` decides whether `pos` already starts a line.
        Ok(self.line_at(pos - 1)?.map_or(self.size, |(_, next)| next))
    }

    /// The last line start in the file (just after the last `\n`), so that a
    /// partially written last line is read whole.
    pub fn last_line_start(&mut self) -> io::Result<u64> {
        let mut end = self.size;
        let mut buf = [0u8; CHUNK];
        while end > 0 && self.size - end < 1 << 20 {
            let start = end.saturating_sub(CHUNK as u64);
            let n = read_at(self.file, &mut buf[..(end - start) as usize], start)?;
            self.stats.bytes_read += n as u64;
            if let Some(p) = memchr::memrchr(b'\n', &buf[..n]) {
                return Ok(start + p as u64 + 1);
            }
            end = start;
        }
        Ok(if end == 0 { 0 } else { self.size })
    }
}

/// The offset of the first line at or after `cutoff` (or the end of the file).
pub fn find_start(
    file: &File,
    size: u64,
    cutoff: SystemTime,
    time_of: &dyn Fn(&str) -> Option<SystemTime>,
    max_line: usize,
) -> io::Result<(u64, BackfillStats)> {
    let mut p = Probe::new(file, size, max_line);
    let (mut lo, mut hi) = (0u64, size);
    while hi.saturating_sub(lo) > LINEAR {
        let mid = lo + (hi - lo) / 2;
        let s = p.next_line_start(mid)?;
        if s >= hi {
            break;
        }
        p.stats.probes += 1;
        match first_timed(&mut p, s, hi, time_of)? {
            // (`min`: a file rewritten under us must not break the invariant.)
            Some((t, _, next)) if t < cutoff => lo = next.min(hi),
            _ => hi = s,
        }
    }
    // Linear scan of [lo, hi): the first line with a time at or after the
    // cutoff. When no line there has a time at all, nothing proves them old:
    // start at `lo`.
    let (mut at, mut timed) = (lo, false);
    while at < hi {
        let Some((line, next)) = p.line_at(at)? else { break };
        match time_of(&String::from_utf8_lossy(&line)) {
            Some(t) if t >= cutoff => return Ok((at, p.stats)),
            Some(_) => timed = true,
            None => {}
        }
        at = next;
    }
    Ok((if timed { hi } else { lo }, p.stats))
}

/// Whether the window may begin before this file: it is empty, or its
/// first line with a time (among the first few) is at or after `cutoff`.
pub fn reaches_before(
    file: &File,
    size: u64,
    cutoff: SystemTime,
    time_of: &dyn Fn(&str) -> Option<SystemTime>,
    max_line: usize,
) -> io::Result<bool> {
    let mut p = Probe::new(file, size, max_line);
    Ok(size == 0 || first_timed(&mut p, 0, size, time_of)?.is_some_and(|(t, _, _)| t >= cutoff))
}

/// From line start `s`, the first of up to [`PROBE_LINES`] lines with a time:
/// (time, its start, the next line's start).
fn first_timed(
    p: &mut Probe<'_>,
    mut s: u64,
    hi: u64,
    time_of: &dyn Fn(&str) -> Option<SystemTime>,
) -> io::Result<Option<(SystemTime, u64, u64)>> {
    for _ in 0..PROBE_LINES {
        if s >= hi {
            break;
        }
        let Some((line, next)) = p.line_at(s)? else { break };
        if let Some(t) = time_of(&String::from_utf8_lossy(&line)) {
            return Ok(Some((t, s, next)));
        }
        s = next;
    }
    Ok(None)
}

fn read_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, at) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn time_of(line: &str) -> Option<SystemTime> {
        let secs: u64 = line.strip_prefix("ts=")?.split(' ').next()?.parse().ok()?;
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// 100k lines, one a second, every 10th line an untimed continuation.
    fn log() -> (tempfile::NamedTempFile, Vec<u64>) {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        let mut starts = Vec::new();
        let mut w = std::io::BufWriter::new(f.as_file_mut());
        let mut at = 0u64;
        for i in 0..100_000u64 {
            let line =
                if i % 10 == 9 { format!("  at frame {i}\n") } else { format!("ts={} msg=request {i}\n", 1_000 + i) };
            starts.push(at);
            at += line.len() as u64;
            w.write_all(line.as_bytes()).expect("write");
        }
        drop(w);
        (f, starts)
    }

    #[test]
    fn finds_the_first_line_in_the_window_without_reading_the_file() {
        let (f, starts) = log();
        let size = f.as_file().metadata().expect("meta").len();
        for first in [0u64, 1, 8, 9, 10, 50_000, 77_777, 99_998, 99_999] {
            let cutoff = UNIX_EPOCH + Duration::from_secs(1_000 + first);
            let (at, stats) = find_start(f.as_file(), size, cutoff, &time_of, 65536).expect("search");
            // An untimed line belongs to the record before it: start after it.
            let want = if first % 10 == 9 { first + 1 } else { first };
            let want_at = starts.get(want as usize).copied().unwrap_or(size);
            assert_eq!(at, want_at, "cutoff line {first}");
            assert!(stats.bytes_read < size / 20, "read {} of {size} bytes", stats.bytes_read);
        }
        let (at, _) = find_start(f.as_file(), size, UNIX_EPOCH, &time_of, 65536).expect("search");
        assert_eq!(at, 0, "everything is in the window");
        let future = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let (at, _) = find_start(f.as_file(), size, future, &time_of, 65536).expect("search");
        assert_eq!(at, size, "nothing is in the window");
    }

    #[test]
    fn untimed_file_is_read_from_the_start_and_empty_file_is_fine() {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        for i in 0..10_000 {
            writeln!(f, "no time here {i}").expect("write");
        }
        let size = f.as_file().metadata().expect("meta").len();
        let (at, _) = find_start(f.as_file(), size, UNIX_EPOCH, &time_of, 65536).expect("search");
        assert_eq!(at, 0);
        let e = tempfile::NamedTempFile::new().expect("tmp");
        assert_eq!(find_start(e.as_file(), 0, UNIX_EPOCH, &time_of, 65536).expect("search").0, 0);
    }

    proptest::proptest! {
        /// Any bytes, any cutoff: a line start within the file, never a panic.
        #[test]
        fn any_input_gives_a_line_start_in_the_file(seed in 1u64.., len in 0usize..60_000, cutoff in 0u64..20_000, max_line in 1usize..100) {
            // xorshift bytes: digits, newlines and anything else.
            let mut x = seed;
            let data: Vec<u8> = (0..len).map(|_| {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                match x % 8 { 0 => b'\n', 1..=4 => b'0' + (x >> 8) as u8 % 10, _ => (x >> 16) as u8 }
            }).collect();
            let mut f = tempfile::NamedTempFile::new().expect("tmp");
            f.write_all(&data).expect("write");
            let time_of = |l: &str| l.get(..4)?.parse::<u64>().ok().map(|s| UNIX_EPOCH + Duration::from_secs(s));
            let cutoff = UNIX_EPOCH + Duration::from_secs(cutoff);
            let (at, _) = find_start(f.as_file(), len as u64, cutoff, &time_of, max_line).expect("search");
            proptest::prop_assert!(at <= len as u64);
            proptest::prop_assert!(at == 0 || at == len as u64 || data[at as usize - 1] == b'\n');
        }
    }

    #[test]
    fn last_line_start_leaves_a_partial_line_to_be_read_whole() {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(b"one\ntwo\nthr").expect("write");
        let mut p = Probe::new(f.as_file(), 11, 100);
        assert_eq!(p.last_line_start().expect("scan"), 8);
        let mut p = Probe::new(f.as_file(), 8, 100);
        assert_eq!(p.last_line_start().expect("scan"), 8);
        let mut p = Probe::new(f.as_file(), 3, 100);
        assert_eq!(p.last_line_start().expect("scan"), 0);
    }
}
