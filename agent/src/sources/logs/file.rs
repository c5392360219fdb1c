//! One open log file: where we are in it, the partial line, and whether its
//! content still is what we read (truncation, `copytruncate`).
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::fingerprint::{self, FP_LEN};
use super::reader::Splitter;
use super::{Counters, Line};
use crate::events::{FileId, LogKind};

/// Why a path could not be opened as a log file.
#[derive(Debug)]
pub enum OpenError {
    /// The file does not exist (yet).
    Missing,
    /// Its directory (or an ancestor) does not exist.
    DirMissing,
    /// Something else than a regular file is there (a directory, a FIFO).
    NotAFile,
    Io(io::Error),
}

/// Whether a read stopped at the end of the file or at the batch budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    Eof,
    Budget,
}

#[derive(Debug)]
pub struct OpenFile {
    pub file: File,
    /// The name it had when opened (for logs).
    pub path: PathBuf,
    pub id: FileId,
    /// Bytes consumed (the partial line is held in `splitter`).
    pub offset: u64,
    /// End of the last line handed out (or where we started): a checkpoint.
    pub committed: u64,
    pub splitter: Splitter,
    /// The byte at `offset - 1` when we read it (checked: a hole there means
    /// the file was truncated and rewritten past our offset).
    pub last_byte: Option<u8>,
    /// When the file last grew (initialised from its mtime).
    pub last_growth: Instant,
    /// A static copy made by `copytruncate`: left as soon as it is drained.
    pub is_copy: bool,
    /// Seen as what the path names (so a detach is a rotation we watched).
    pub was_attached: bool,
    /// When we first saw it detached after that: the rotation grace counts
    /// from here too, not only from its last growth (a quiet log's writer
    /// may write once more before it reopens the path).
    pub detached_at: Option<Instant>,
}

impl OpenFile {
    /// Opens `path` if it is a regular file (never blocks on a FIFO).
    pub fn open(path: &Path, now: Instant, max_line: usize) -> Result<Self, OpenError> {
        let file = match OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dir_ok = path.parent().is_none_or(|d| d.as_os_str().is_empty() || d.is_dir());
                return Err(if dir_ok { OpenError::Missing } else { OpenError::DirMissing });
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Err(OpenError::DirMissing),
            Err(e) => return Err(OpenError::Io(e)),
        };
        let meta = file.metadata().map_err(OpenError::Io)?;
        if !meta.is_file() {
            return Err(OpenError::NotAFile);
        }
        let id = fingerprint::identify(&file).map_err(OpenError::Io)?;
        let age = meta.modified().ok().and_then(|m| SystemTime::now().duration_since(m).ok()).unwrap_or_default();
        let last_growth = now.checked_sub(age).unwrap_or(now);
        Ok(Self {
            file,
            path: path.to_path_buf(),
            id,
            offset: 0,
            committed: 0,
            splitter: Splitter::new(max_line),
            last_byte: None,
            last_growth,
            is_copy: false,
            was_attached: false,
            detached_at: None,
        })
    }

    /// Continue at `offset` (a line start).
    pub fn seek(&mut self, offset: u64) {
        self.offset = offset;
        self.committed = offset;
        self.last_byte = None;
        if offset > 0 {
            let mut b = [0u8; 1];
            if let Ok(1) = self.file.read_at(&mut b, offset - 1) {
                self.last_byte = Some(b[0]);
            }
        }
    }

    /// Since when neither growth nor a detach has been seen.
    pub fn quiet_since(&self) -> Instant {
        self.detached_at.map_or(self.last_growth, |d| d.max(self.last_growth))
    }

    pub fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Whether the content we read is gone: the file is shorter than our
    /// offset, its first bytes changed, or the byte before our offset did.
    pub fn truncated(&self) -> io::Result<bool> {
        let size = self.size()?;
        if size < self.offset {
            return Ok(true);
        }
        if self.offset == 0 && self.id.fingerprint_len == 0 {
            return Ok(false); // nothing known about it yet
        }
        if !fingerprint::content_matches(&self.file, &self.id)? {
            return Ok(true);
        }
        if let Some(b) = self.last_byte.filter(|&b| b != 0) {
            let mut now = [0u8; 1];
            if self.file.read_at(&mut now, self.offset - 1)? == 1 && now[0] != b {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Start over at offset 0 of the same inode (after a truncation); the
    /// partial line must have been taken out before.
    pub fn restart(&mut self, now: Instant, max_line: usize) -> io::Result<()> {
        self.offset = 0;
        self.committed = 0;
        self.splitter = Splitter::new(max_line);
        self.last_byte = None;
        self.last_growth = now;
        self.id = fingerprint::identify(&self.file)?;
        Ok(())
    }

    /// Reads what is new, appending lines to `out`, until the end of the
    /// file or until `budget` bytes have been read.
    pub fn read(
        &mut self,
        buf: &mut [u8],
        kind: LogKind,
        now: Instant,
        budget: &mut usize,
        out: &mut Vec<Line>,
        c: &mut Counters,
    ) -> io::Result<ReadEnd> {
        loop {
            if *budget == 0 {
                return Ok(ReadEnd::Budget);
            }
            let want = buf.len().min(*budget);
            let n = match self.file.read_at(&mut buf[..want], self.offset) {
                Ok(0) => return Ok(ReadEnd::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if self.id.fingerprint_len < FP_LEN {
                self.id = fingerprint::identify(&self.file)?;
            }
            let Self { splitter, id, offset, committed, .. } = self;
            splitter.feed(&buf[..n], *offset, |(bytes, end, cut)| {
                out.push(line(bytes, end, cut, kind, id, c));
                *committed = end;
            });
            c.nul_bytes_skipped += std::mem::take(&mut splitter.nul_skipped);
            self.offset += n as u64;
            self.last_byte = Some(buf[n - 1]);
            self.last_growth = now;
            c.bytes += n as u64;
            *budget -= n;
        }
    }

    /// Emits the pending unterminated line (when leaving the file for good).
    pub fn finish(&mut self, kind: LogKind, out: &mut Vec<Line>, c: &mut Counters) {
        if let Some((bytes, cut)) = self.splitter.finish() {
            out.push(line(&bytes, self.offset, cut, kind, &self.id, c));
        }
        self.committed = self.offset;
    }
}

fn line(bytes: &[u8], end_offset: u64, cut: bool, kind: LogKind, id: &FileId, c: &mut Counters) -> Line {
    let (text, invalid_utf8) = match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), false),
        Err(_) => {
            c.invalid_utf8_lines += 1;
            (String::from_utf8_lossy(bytes).into_owned(), true)
        }
    };
    if cut {
        c.cut_lines += 1;
    }
    Line { text, kind, file: id.clone(), end_offset, cut, invalid_utf8 }
}

/// Device and inode of what `path` names now, if it is a regular file.
pub fn stat_path(path: &Path) -> io::Result<Option<(u64, u64)>> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(Some((m.dev(), m.ino()))),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
        Err(e) => Err(e),
    }
}
