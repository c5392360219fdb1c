//! Tailing token-agent's logs with checkpoints that survive rotation.
//!
//! - [`fingerprint`]: file identity = device + inode **and** a hash of the
//!   first bytes (how a short file's fingerprint grows and still matches).
//! - [`reader`]: line splitting (partial lines, 64 KiB cut, NUL gaps).
//! - [`file`]: one open file: reading, truncation checks.
//! - [`rotated`]: finding a checkpointed file after rotation (`path.1`, a
//!   `copytruncate` copy) and the generations after it.
//! - [`tailer`]: the synchronous core, [`Tailer::poll`]: follow, drain a
//!   rotated file before the next one, missing files; `rotation`: moving
//!   between files (truncation, skipped generations, pinning new files);
//!   `start`: where to begin ([`Start`]); `status`: [`TailStatus`].
//! - [`backfill`]: first start without a checkpoint: binary search for the
//!   first line inside the window.
//! - [`watch`]: inotify wakeups on the parent directory (or its nearest
//!   existing ancestor); [`driver`]: the async loop that sends [`Batch`]es.
//!
//! Why not `linemux` (or `notify` + `BufReader` alone): linemux yields
//! `Line { source, line }` from `MuxedLines::add_file(path)` — no byte
//! offset and no file identity, so nothing to checkpoint or resume from; no
//! fingerprint, so a recreated file or a reused inode cannot be told from the
//! one we were reading; and its rotation handling is internal, so we cannot
//! make it drain the rotated file to the end before switching, nor notice a
//! `copytruncate` and read the unread rest from the copy. Those are exactly
//! the properties the checkpointed state needs.
//!
//! # Guarantees (tested with the real logrotate in `tests/tail_rotation.rs`)
//!
//! Rename + `create`, or rename/delete + the writer recreating the file:
//! every line exactly once, in order, across agent restarts too (resume from
//! the last applied [`LogPosition`]), provided that
//! - a writer still holding the renamed/deleted file stops appending to it
//!   within [`TailOptions::rotate_grace`] of its last append (the file is
//!   left once it has not grown for that long);
//! - each new file is seen at the path before it is deleted (we poll on every
//!   inotify event; a file deleted while unread but still open by us is fine);
//! - across a restart, the checkpointed file still exists (renamed to any
//!   `NAME.N`/`NAME-date` in the same directory, uncompressed); if not, the
//!   checkpoint is discarded with a warning and the current file is read from
//!   its beginning.
//!
//! `copytruncate` (logrotate copies the file, then truncates it in place):
//! - no line is delivered twice, and order is kept: the truncation is seen
//!   by size < offset, by changed first bytes (fingerprint) or by a changed
//!   byte just before our offset, and we restart at 0 of the same inode;
//! - lines written before the copy that we had not read yet are read from
//!   the copy (found by content), then the live file from 0 — provided we had
//!   read at least one line of that generation (our fingerprint then covers
//!   ≥ 64 bytes or everything before our offset);
//! - lines appended between logrotate's copy and its truncate are in no file
//!   once the truncate is done: we deliver those we happened to read before
//!   the truncate, the others are lost. That race is logrotate's; no reader
//!   can recover bytes that exist nowhere. Avoid it with `create` + a reload;
//! - with a writer that does not use `O_APPEND`, the truncate leaves a hole
//!   of NUL bytes before its next line: skipped and counted.
pub mod backfill;
pub mod driver;
pub mod file;
pub mod fingerprint;
pub mod reader;
pub mod rotated;
mod rotation;
mod start;
mod status;
pub mod tailer;
pub mod watch;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use driver::{run, run_events, DriverOptions, Lines};
pub use start::{Start, TimeOf};
pub use status::TailStatus;
pub use tailer::Tailer;

use crate::events::{FileId, LogKind, LogPosition};

/// One line of a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The line without `\n` (and `\r`), decoded lossily; at most
    /// [`TailOptions::max_line`] bytes of the original.
    pub text: String,
    pub kind: LogKind,
    /// The file it came from, as identified when it was read.
    pub file: FileId,
    /// Offset just past this line's `\n` (or end of the file for the final
    /// unterminated line of a rotated-away file).
    pub end_offset: u64,
    /// Longer than the limit: `text` is its first bytes.
    pub cut: bool,
    /// Not valid UTF-8: `text` is a lossy decoding.
    pub invalid_utf8: bool,
}

impl Line {
    /// "Everything up to and including this line has been applied."
    pub fn position(&self) -> LogPosition {
        LogPosition { kind: self.kind, file: self.file.clone(), offset: self.end_offset }
    }
}

/// What one poll produced, for the consumer to apply and then checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub kind: LogKind,
    pub lines: Vec<Line>,
    /// The checkpoint once `lines` are applied ([`Tailer::position`]): the
    /// last line's position, or a newer file's start when the tailer moved on
    /// without reading a line yet (a batch may then carry no lines).
    pub position: Option<LogPosition>,
}

impl Batch {
    /// The checkpoint after applying the whole batch.
    pub fn position(&self) -> Option<LogPosition> {
        self.position.clone().or_else(|| self.lines.last().map(Line::position))
    }
}

/// Running totals of one tailer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub lines: u64,
    /// Bytes read from files (including skipped ones).
    pub bytes: u64,
    pub truncations: u64,
    /// Times a rotated-away (renamed or deleted) file was drained and left.
    pub rotations: u64,
    /// Lines longer than `max_line`, emitted cut.
    pub cut_lines: u64,
    pub nul_bytes_skipped: u64,
    pub invalid_utf8_lines: u64,
    /// The path is not a regular file / unreadable / a read failed (counted
    /// once per occurrence, not per poll).
    pub errors: u64,
    /// Checkpoints that matched no file and were dropped.
    pub checkpoints_discarded: u64,
}

/// Tuning of a [`Tailer`].
#[derive(Debug, Clone)]
pub struct TailOptions {
    /// Longer lines are cut to this many bytes.
    pub max_line: usize,
    /// A rotated-away file is left only after it has not grown for this
    /// long (a writer may still hold it until it reopens the path).
    pub rotate_grace: Duration,
    /// A poll stops after reading this many bytes ([`Tailer::has_more`]).
    pub max_batch_bytes: usize,
}

impl Default for TailOptions {
    fn default() -> Self {
        Self { max_line: 64 * 1024, rotate_grace: Duration::from_secs(2), max_batch_bytes: 1 << 20 }
    }
}
