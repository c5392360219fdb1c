//! Where a [`Tailer`] starts: a checkpoint, a backfill window, the end or
//! the beginning of the file. Resolved on the first poll.
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::backfill::{self, Probe};
use super::file::OpenFile;
use super::tailer::Tailer;
use super::{fingerprint, rotated};
use crate::events::LogPosition;

/// Extracts a record's time from a line (for backfill).
pub type TimeOf = Arc<dyn Fn(&str) -> Option<SystemTime> + Send + Sync>;

/// Where to start.
#[derive(Clone)]
pub enum Start {
    /// Continue after a checkpoint (see [`rotated`] for how it is found).
    Resume(LogPosition),
    /// First start: the lines of the last `window` before `now`.
    Backfill {
        window: Duration,
        now: SystemTime,
        time_of: TimeOf,
    },
    /// Only lines written from now on (a partial last line is read whole).
    End,
    Beginning,
}

impl std::fmt::Debug for Start {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Start::Resume(p) => f.debug_tuple("Resume").field(p).finish(),
            Start::Backfill { window, now, .. } => {
                f.debug_struct("Backfill").field("window", window).field("now", now).finish()
            }
            Start::End => f.write_str("End"),
            Start::Beginning => f.write_str("Beginning"),
        }
    }
}

impl Tailer {
    pub(super) fn begin(&mut self, start: Start, now: Instant) {
        let max = self.opts.max_line;
        match start {
            Start::Beginning => {}
            Start::Resume(pos) => {
                if !self.resume(&pos, now) {
                    self.start = Some(Start::Resume(pos));
                }
            }
            Start::End => {
                let Ok(mut o) = OpenFile::open(&self.path, now, max) else { return };
                match o.size().and_then(|s| Probe::new(&o.file, s, max).last_line_start()) {
                    Ok(at) => o.seek(at),
                    Err(e) => {
                        tracing::warn!(path = %self.path.display(), error = %e, "log: cannot find the end, reading from the start")
                    }
                }
                self.cur = Some(o);
            }
            Start::Backfill { window, now: wall, time_of } => {
                let Ok(current) = OpenFile::open(&self.path, now, max) else { return };
                let cutoff = wall.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
                // The window may begin before the last rotation: then the
                // newest rotated generations hold its start (newest first).
                let mut chain = Vec::new();
                let mut file = Some(current);
                let mut older = rotated::newest_first(&self.path).into_iter();
                while let Some(mut o) = file.take() {
                    let reaches_before = backfill_start(&mut o, cutoff, &*time_of, max);
                    chain.push(o);
                    if reaches_before && chain.len() <= MAX_BACKFILL_GENERATIONS {
                        file = older.by_ref().find_map(|p| OpenFile::open(&p, now, max).ok());
                    }
                }
                chain.reverse();
                self.cur = Some(chain.remove(0));
                self.queue.extend(chain);
            }
        }
    }

    /// Continue after a checkpoint: in the current file, or in the rotated
    /// file that holds it and then every newer generation; else discard it.
    /// False (nothing done) while neither the path nor a rotated file can be
    /// looked at — a directory not mounted yet, a file not readable yet: the
    /// checkpoint is kept and tried again, never discarded unseen.
    fn resume(&mut self, pos: &LogPosition, now: Instant) -> bool {
        let max = self.opts.max_line;
        let mut current = OpenFile::open(&self.path, now, max).ok();
        if pos.kind != self.kind {
            self.discard(pos, "checkpoint is for another log");
            self.cur = current;
            return true;
        }
        if let Some(c) = current.as_mut() {
            if fingerprint::same_inode(&pos.file, c.id.dev, c.id.ino)
                && fingerprint::content_matches(&c.file, &pos.file).unwrap_or(false)
                && c.size().is_ok_and(|s| s >= pos.offset)
            {
                c.seek(pos.offset);
                tracing::info!(path = %self.path.display(), offset = pos.offset, "log: resuming from checkpoint");
                self.cur = current;
                return true;
            }
        }
        let cur_inode = current.as_ref().map(|c| (c.id.dev, c.id.ino));
        match rotated::find(&self.path, &pos.file, pos.offset, true, cur_inode, now, max) {
            Some(mut old) => {
                old.seek(pos.offset);
                let mut seen = vec![(old.id.dev, old.id.ino)];
                seen.extend(cur_inode);
                let newer = rotated::newer_generations(&self.path, &old, &seen, now, max);
                tracing::info!(path = %old.path.display(), offset = pos.offset, newer = newer.len(), "log: resuming from checkpoint in a rotated file");
                self.cur = Some(old);
                self.queue.extend(newer);
                self.queue.extend(current);
            }
            None if current.is_none() => return false,
            None => {
                self.discard(pos, "checkpoint matches no file (rotated away or rewritten)");
                self.cur = current;
            }
        }
        true
    }

    fn discard(&mut self, pos: &LogPosition, why: &str) {
        self.counters.checkpoints_discarded += 1;
        tracing::warn!(path = %self.path.display(), ino = pos.file.ino, offset = pos.offset, "log: {why}; reading the current file from the beginning");
    }
}

/// Rotated generations a backfill reads back into at most, besides the file.
const MAX_BACKFILL_GENERATIONS: usize = 4;

/// Seeks `o` to the first line in the window; true when the window may
/// begin before it (the file starts inside the window, or is empty).
fn backfill_start(o: &mut OpenFile, cutoff: SystemTime, time_of: &dyn Fn(&str) -> Option<SystemTime>, max: usize) -> bool {
    let found = o.size().and_then(|s| Ok((backfill::find_start(&o.file, s, cutoff, time_of, max)?, s)));
    match found {
        Ok(((at, st), size)) => {
            tracing::info!(path = %o.path.display(), offset = at, probes = st.probes, bytes_read = st.bytes_read, "log: backfill starts here");
            o.seek(at);
            at == 0 && backfill::reaches_before(&o.file, size, cutoff, time_of, max).unwrap_or(false)
        }
        Err(e) => {
            tracing::warn!(path = %o.path.display(), error = %e, "log: backfill search failed, reading from the start");
            false
        }
    }
}
