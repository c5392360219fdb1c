//! token-agent's app-log lines as [`AgentError`]s, and the one thing a first
//! start must not do: report an old error as a current one.
//!
//! An error line with a time of its own is applied at that time; the state
//! keeps only those within `alert.error_window`, and a first start reads the
//! app log back that far (at most), so a tokenwatch (re)installed during a
//! token-agent outage still warns about errors from the last minutes.
//!
//! An error line without a time (glog has no year; a plain `[error] msg` has
//! no time at all) is dated when it is read. That is right for a line written
//! while we follow the log, and wrong for one read during a first start's
//! catch-up: it may be hours old, and dating it "now" would WARN for a whole
//! `error_window` about an outage long over — an error from three hours ago
//! must not page. So on a first start, undated error lines of the part of the
//! file written before the start (the [`Backlog`]) are counted as parsed lines
//! and noted once in our log, but not applied. Starting the app log at its
//! end instead would drop the dated recent errors too.
//!
//! After a restart with a checkpoint there is no backlog: the lines since the
//! checkpoint were written while tokenwatch was down (usually seconds), and
//! their undated errors are applied as current.
use std::time::SystemTime;

use super::backlog::{Backlog, Backlogged};
use super::logs::Line;
use crate::events::AgentError;
use crate::format::app_log_error;

/// Turns app-log lines into token-agent errors. Pure but for a log line.
#[derive(Debug)]
pub struct AppLogLines {
    pub backlog: Backlogged,
}

impl AppLogLines {
    /// `backlog`: `Some` on a first start (see the module docs).
    pub fn new(backlog: Option<Backlog>) -> Self {
        Self { backlog: Backlogged::new(backlog) }
    }

    /// The error `line` reports, if any; `now` dates an undated one.
    pub fn event(&mut self, line: &Line, now: SystemTime) -> Option<AgentError> {
        let e = app_log_error(&line.text);
        let undated = e.as_ref().is_some_and(|e| e.time.is_none());
        if self.backlog.skip_undated(line, undated, "app-log error lines") {
            return None;
        }
        let e = e?;
        let at = e.time.unwrap_or(now);
        Some(AgentError { at, message: e.message })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::events::{FileId, LogKind};

    const GLOG: &str = "E1125 14:00:00.123456 1234 main.go:10] cannot reach IAM";

    fn line(ino: u64, end_offset: u64, text: &str) -> Line {
        let file = FileId { dev: 1, ino, fingerprint: 0, fingerprint_len: 0 };
        Line { text: text.into(), kind: LogKind::AppLog, file, end_offset, cut: false, invalid_utf8: false }
    }

    #[test]
    fn undated_errors_of_the_backlog_are_not_current_dated_ones_and_later_ones_are() {
        let now = UNIX_EPOCH + Duration::from_secs(1_795_615_200);
        let backlog = Backlog { files: vec![(1, 6, 500), (1, 7, 300)] };
        let mut a = AppLogLines::new(Some(backlog.clone()));
        assert_eq!(a.event(&line(6, 500, GLOG), now), None, "from the rotated generation read back into");
        assert_eq!(a.event(&line(7, 100, GLOG), now), None, "an undated error from before the start");
        let dated = a.event(&line(7, 200, "time=1795615140 level=error msg=\"recent\""), now).unwrap();
        assert_eq!(dated.at, now - Duration::from_secs(60), "a dated one keeps its time");
        assert_eq!(a.event(&line(7, 250, "level=info msg=fine"), now), None);
        assert_eq!(a.backlog.undated_skipped, 2);
        // past the size at the start: written since, so current
        assert_eq!(a.event(&line(7, 400, GLOG), now).map(|e| e.at), Some(now));
        // and once past, always past (a copytruncate restarts the file at 0)
        assert_eq!(a.event(&line(7, 50, GLOG), now).map(|e| e.at), Some(now));
        // another file (rotation) is new too; no backlog (a resume) applies all
        let mut a = AppLogLines::new(Some(backlog));
        assert_eq!(a.event(&line(8, 100, GLOG), now).map(|e| e.at), Some(now));
        assert_eq!(AppLogLines::new(None).event(&line(7, 100, GLOG), now).map(|e| e.at), Some(now));
    }
}
