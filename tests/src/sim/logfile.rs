//! Append-only log files, flushed line by line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{Context, Result};

/// A log file opened for append; each line is written and flushed whole.
pub struct LogFile(Mutex<File>);

impl LogFile {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("open {}", path.display()))?;
        Ok(LogFile(Mutex::new(f)))
    }

    /// Writes `line` plus a newline with a single `write`, then flushes.
    pub fn line(&self, line: &str) {
        let mut buf = String::with_capacity(line.len() + 1);
        buf.push_str(line);
        buf.push('\n');
        let mut f = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = f.write_all(buf.as_bytes()).and_then(|_| f.flush());
    }
}

/// The token-agent application log: `<time> <LEVEL> <message>`.
pub struct AppLog(LogFile);

impl AppLog {
    pub fn open(path: &Path) -> Result<Self> {
        LogFile::open(path).map(AppLog)
    }

    pub fn info(&self, msg: &str) {
        self.write("INFO", msg)
    }

    pub fn error(&self, msg: &str) {
        self.write("ERROR", msg)
    }

    fn write(&self, level: &str, msg: &str) {
        self.0.line(&format!(
            "{} {level} {msg}",
            super::fmt_time(SystemTime::now())
        ))
    }
}
