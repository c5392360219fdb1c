//! What a first start reads that was written before it: the backlog. A
//! line there without a time of its own cannot be dated "now" — it may be
//! hours old (see [`super::app_log`] and the access log's undated records).
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::logs::{rotated, Line};

/// A log as it stood when a first start began: the file and its
/// rotated generations (a backfill may read back into them), each with its
/// size. Lines of those files ending at or before that size were written
/// before the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    /// (dev, ino, size)
    pub files: Vec<(u64, u64, u64)>,
}

impl Backlog {
    /// What `path` and its generations hold now (a `stat` each); `None` when
    /// none is a regular file (then every line read later is new).
    pub fn of(path: &Path) -> Option<Self> {
        let paths = std::iter::once(path.to_path_buf()).chain(rotated::newest_first(path));
        let files: Vec<_> = paths
            .filter_map(|p| std::fs::metadata(p).ok().filter(|m| m.is_file()))
            .map(|m| (m.dev(), m.ino(), m.len()))
            .collect();
        (!files.is_empty()).then_some(Self { files })
    }

    fn holds(&self, line: &Line) -> bool {
        self.files.iter().any(|&(dev, ino, size)| line.file.dev == dev && line.file.ino == ino && line.end_offset <= size)
    }
}

/// A backlog as its lines are read: a line is held while it was written
/// before the start; once one was not, no later one is (files are read
/// oldest first, each in order; a rotation or a `copytruncate` moves on to
/// another file or restarts at 0).
#[derive(Debug, Default)]
pub struct Backlogged {
    backlog: Option<Backlog>,
    /// Undated lines of the backlog passed over so far.
    pub undated_skipped: u64,
}

impl Backlogged {
    /// `None`: no backlog (a resume from a checkpoint).
    pub fn new(backlog: Option<Backlog>) -> Self {
        Self { backlog, undated_skipped: 0 }
    }

    /// Whether to pass over `line`, whose record has no time of its own
    /// (`undated`): true when it belongs to the backlog. The first one is
    /// logged (`what` names the log and its records).
    pub fn skip_undated(&mut self, line: &Line, undated: bool, what: &str) -> bool {
        let old = self.holds(line);
        if !(old && undated) {
            return false;
        }
        self.undated_skipped += 1;
        if self.undated_skipped == 1 {
            tracing::info!(
                ino = line.file.ino,
                end_offset = line.end_offset,
                "{what} without a time of their own, written before tokenwatch started, are not applied (their age is unknown)"
            );
        }
        true
    }

    pub fn holds(&mut self, line: &Line) -> bool {
        let old = self.backlog.as_ref().is_some_and(|b| b.holds(line));
        if !old {
            self.backlog = None;
        }
        old
    }
}
