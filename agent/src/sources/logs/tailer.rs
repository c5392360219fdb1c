//! The synchronous core: [`Tailer::poll`] reads whatever is new, following
//! the path through rotation, truncation and absence.
//!
//! Files are read strictly one after another, so that every [`Line`]'s
//! position is a valid checkpoint: `cur` first, then `queue` (older
//! generations found on resume, or the truncated original after its copy),
//! then whatever `path` names. `cur` is *attached* while `path` still names
//! its inode; once detached (renamed, deleted, replaced) it is drained to the
//! end and left only after it has neither grown nor been detached for
//! `rotate_grace` (a writer may still be writing to it until it reopens the
//! path); its final unterminated line is emitted then. Meanwhile each new file seen at the path is opened
//! and queued ("pinned"), so a generation deleted before we get to it is
//! still read. Holding files open also keeps their inode numbers from being
//! reused while we read them.
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::file::{stat_path, OpenError, OpenFile, ReadEnd};
use super::{Counters, Line, Start, TailOptions, TailStatus};
use crate::events::{FileId, LogKind, LogPosition};

/// At most this many files wait behind the one being read.
pub(super) const MAX_QUEUE: usize = 64;

/// Follows one log path; see the module docs. Synchronous: [`Tailer::poll`]
/// does a few `stat`s and `pread`s and returns at once.
pub struct Tailer {
    pub(super) path: PathBuf,
    pub(super) kind: LogKind,
    pub(super) opts: TailOptions,
    pub(super) start: Option<Start>,
    pub(super) cur: Option<OpenFile>,
    pub(super) queue: VecDeque<OpenFile>,
    /// Files drained and left lately: never read twice.
    pub(super) done: VecDeque<FileId>,
    pub(super) buf: Vec<u8>,
    pub(super) counters: Counters,
    pub(super) status: TailStatus,
    pub(super) more: bool,
}

impl Tailer {
    pub fn new(path: impl Into<PathBuf>, kind: LogKind, start: Start) -> Self {
        Self::with_options(path, kind, start, TailOptions::default())
    }

    pub fn with_options(path: impl Into<PathBuf>, kind: LogKind, start: Start, opts: TailOptions) -> Self {
        Self {
            path: path.into(),
            kind,
            start: Some(start),
            cur: None,
            queue: VecDeque::new(),
            done: VecDeque::new(),
            buf: vec![0; 64 * 1024],
            counters: Counters::default(),
            status: TailStatus::Starting,
            more: false,
            opts,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn kind(&self) -> LogKind {
        self.kind
    }
    pub fn counters(&self) -> Counters {
        self.counters
    }
    pub fn status(&self) -> &TailStatus {
        &self.status
    }
    /// The last poll stopped at the batch budget: poll again at once.
    pub fn has_more(&self) -> bool {
        self.more
    }

    /// The checkpoint "everything read so far has been handed out": the
    /// last line's position, or the start of the file we moved on to (an
    /// empty new file after a rotation). `None` until a file is open.
    pub fn position(&self) -> Option<LogPosition> {
        let c = self.cur.as_ref()?;
        Some(LogPosition { kind: self.kind, file: c.id.clone(), offset: c.committed })
    }

    /// Reads whatever is new.
    pub fn poll(&mut self) -> Vec<Line> {
        self.poll_at(Instant::now())
    }

    /// [`poll`](Self::poll) with the monotonic time injected (rotation grace).
    pub fn poll_at(&mut self, now: Instant) -> Vec<Line> {
        let mut out = Vec::new();
        let mut budget = self.opts.max_batch_bytes.max(1);
        self.more = false;
        if let Some(start) = self.start.take() {
            self.begin(start, now);
        }
        let mut err = None;
        if self.start.is_some() {
            // a checkpoint waits until its file can be looked at: nothing is
            // read before (reading from 0 would repeat what it covers)
            err = OpenFile::open(&self.path, now, self.opts.max_line).err();
        }
        for _ in 0..64 {
            if self.start.is_some() {
                break;
            }
            if self.cur.is_none() {
                self.cur = match self.queue.pop_front() {
                    Some(next) => Some(next),
                    None => match OpenFile::open(&self.path, now, self.opts.max_line) {
                        Ok(o) => Some(o),
                        Err(e) => {
                            err = Some(e);
                            break;
                        }
                    },
                };
            }
            let Some(cur) = self.cur.as_ref() else { break };
            if !cur.is_copy && cur.truncated().unwrap_or(false) {
                self.on_truncated(now, &mut out);
            }
            self.pin_path(now);
            let attached = self.attached();
            let Some(cur) = self.cur.as_mut() else { break };
            if attached {
                (cur.was_attached, cur.detached_at) = (true, None);
            } else if cur.was_attached && cur.detached_at.is_none() {
                cur.detached_at = Some(now);
            }
            match cur.read(&mut self.buf, self.kind, now, &mut budget, &mut out, &mut self.counters) {
                Ok(ReadEnd::Eof) => {}
                Ok(ReadEnd::Budget) => {
                    self.more = true;
                    break;
                }
                Err(e) => {
                    err = Some(OpenError::Io(e));
                    break;
                }
            }
            if attached || !(cur.is_copy || now.saturating_duration_since(cur.quiet_since()) >= self.opts.rotate_grace) {
                break;
            }
            cur.finish(self.kind, &mut out, &mut self.counters);
            // An empty file proves nothing (its inode may be reused at once).
            if cur.id.fingerprint_len > 0 {
                if self.done.len() >= 16 {
                    self.done.pop_front();
                }
                self.done.push_back(cur.id.clone());
            }
            if !cur.is_copy {
                self.counters.rotations += 1;
                tracing::info!(path = %cur.path.display(), ino = cur.id.ino, "log: rotated file drained");
                self.queue_skipped_generations(now);
            }
            self.cur = None;
        }
        self.counters.lines += out.len() as u64;
        let status = match (&self.cur, err) {
            (_, Some(OpenError::Io(e))) => TailStatus::Unreadable { errno: e.raw_os_error().unwrap_or(0) },
            (Some(c), None) if self.attached() => TailStatus::Following { ino: c.id.ino },
            (Some(c), None) => TailStatus::Draining { ino: c.id.ino },
            (_, Some(OpenError::Missing)) | (None, None) => TailStatus::FileMissing,
            (_, Some(OpenError::DirMissing)) => TailStatus::DirMissing,
            (_, Some(OpenError::NotAFile)) => TailStatus::NotAFile,
        };
        self.set_status(status);
        out
    }

    /// `cur` is what `path` names now (nothing queued after it). When the
    /// path cannot be checked (EACCES on the directory) we keep following.
    fn attached(&self) -> bool {
        let Some(cur) = self.cur.as_ref() else { return false };
        self.queue.is_empty()
            && !cur.is_copy
            && stat_path(&self.path).map_or(true, |at| at == Some((cur.id.dev, cur.id.ino)))
    }

    /// Logs transitions only (no spam while a state persists).
    fn set_status(&mut self, s: TailStatus) {
        if s == self.status {
            return;
        }
        let detail = s.describe(&self.path);
        if s.is_error() {
            self.counters.errors += 1;
            tracing::warn!("log: {detail}");
        } else {
            tracing::info!("log: {detail}");
        }
        self.status = s;
    }
}
