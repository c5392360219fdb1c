//! How the tailer moves between files: truncation (`copytruncate`), files
//! rotated more than once between two looks, new files pinned while the
//! old one drains, and never reading a drained file twice.
use std::time::Instant;

use super::file::{stat_path, OpenFile};
use super::tailer::{Tailer, MAX_QUEUE};
use super::{fingerprint, rotated, Line};

impl Tailer {
    /// The content under `cur` is gone: continue from its copy if logrotate
    /// left one with bytes we have not read, then the same inode from 0.
    pub(super) fn on_truncated(&mut self, now: Instant, out: &mut Vec<Line>) {
        let Some(mut cur) = self.cur.take() else { return };
        self.counters.truncations += 1;
        let max = self.opts.max_line;
        let inode = Some((cur.id.dev, cur.id.ino));
        // A copy we have already drained (reached through the generations
        // after a resume) is not read again.
        let copy = rotated::find(&self.path, &cur.id, cur.offset, false, inode, now, max).filter(|c| !self.is_done(c));
        tracing::info!(path = %cur.path.display(), offset = cur.offset, from_copy = copy.is_some(), "log: file truncated, reading it again from the start");
        let next = match copy {
            Some(mut c) => {
                // The copy continues exactly where we were, partial line included.
                c.is_copy = true;
                c.seek(cur.offset);
                c.committed = cur.committed;
                std::mem::swap(&mut c.splitter, &mut cur.splitter);
                Some(c)
            }
            None => {
                cur.finish(self.kind, out, &mut self.counters);
                None
            }
        };
        if let Err(e) = cur.restart(now, max) {
            tracing::debug!(error = %e, "log: fingerprint after truncation");
        }
        let Some(c) = next else {
            self.cur = Some(cur);
            return;
        };
        // Rotated more than once since we last looked: the generations newer
        // than the copy come first, the truncated original where it now sits
        // among them (renamed since), else last.
        let orig = (cur.id.dev, cur.id.ino);
        let newer = rotated::newer_generations(&self.path, &c, &[(c.id.dev, c.id.ino)], now, max);
        let mut chain = Vec::new();
        let mut cur = Some(cur);
        for n in self.fresh(newer) {
            match cur.take_if(|o| (n.id.dev, n.id.ino) == (o.id.dev, o.id.ino)) {
                Some(o) => chain.push(o),
                None if (n.id.dev, n.id.ino) == orig => {}
                None => chain.push(n),
            }
        }
        chain.extend(cur);
        for o in chain.into_iter().rev() {
            self.queue.push_front(o);
        }
        self.cur = Some(c);
    }

    /// Drops files we have already drained and left.
    fn fresh(&self, mut files: Vec<OpenFile>) -> Vec<OpenFile> {
        files.retain(|o| !self.is_done(o));
        files
    }

    /// Drained and left before (same inode and content).
    fn is_done(&self, o: &OpenFile) -> bool {
        self.done.iter().any(|d| {
            fingerprint::same_inode(d, o.id.dev, o.id.ino) && fingerprint::content_matches(&o.file, d).unwrap_or(false)
        })
    }

    /// `cur` (about to be left) was rotated more than once since we opened
    /// it (it is `NAME.N` with N ≥ 2 now, or a dated name with newer dated
    /// siblings): the generations between it and the path come next, oldest
    /// first (replacing the same files already pinned in the queue, none of
    /// which has been read yet).
    pub(super) fn queue_skipped_generations(&mut self, now: Instant) {
        let Some(cur) = self.cur.as_ref() else { return };
        let (dev, ino) = (cur.id.dev, cur.id.ino);
        let newer = self.fresh(rotated::newer_generations(&self.path, cur, &[(dev, ino)], now, self.opts.max_line));
        if newer.is_empty() {
            return;
        }
        tracing::info!(path = %self.path.display(), generations = newer.len(), "log: rotated more than once; reading the generations in between");
        let ids: Vec<(u64, u64)> = newer.iter().map(|o| (o.id.dev, o.id.ino)).collect();
        let rest: Vec<OpenFile> = self.queue.drain(..).filter(|q| !ids.contains(&(q.id.dev, q.id.ino))).collect();
        self.queue.extend(newer);
        self.queue.extend(rest);
    }

    /// While `cur` is being drained, every new file seen at the path is
    /// opened and queued at once: a generation that is rotated away (or
    /// deleted) before we get to it is still read, from the handle.
    pub(super) fn pin_path(&mut self, now: Instant) {
        let Some(cur) = self.cur.as_ref() else { return };
        let Ok(Some(at)) = stat_path(&self.path) else { return };
        let known = |dev: u64, ino: u64| {
            (cur.id.dev, cur.id.ino) == (dev, ino) || self.queue.iter().any(|q| (q.id.dev, q.id.ino) == (dev, ino))
        };
        if known(at.0, at.1) || self.queue.len() >= MAX_QUEUE {
            return;
        }
        if let Ok(o) = OpenFile::open(&self.path, now, self.opts.max_line) {
            if !known(o.id.dev, o.id.ino) {
                self.queue.push_back(o);
            }
        }
    }
}
