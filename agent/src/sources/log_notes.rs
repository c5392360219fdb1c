//! The first unparsed, cut and invalid-UTF-8 line of each log, logged once
//! at warn: which file, where in it, why — never the line, which may hold a
//! token. Later ones are only counted (`unparsed`, `cut`, `invalid_utf8` in
//! `/status`; `tokenwatch.log.lines`).
use std::fmt::Display;
use std::path::PathBuf;

use super::logs::Line;
use crate::events::LogKind;

/// What was logged already, for one log.
#[derive(Debug)]
pub struct LineNotes {
    kind: LogKind,
    path: PathBuf,
    /// The tailer's line limit (for the message).
    max_line: usize,
    unparsed: bool,
    cut: bool,
    invalid_utf8: bool,
}

impl LineNotes {
    pub fn new(kind: LogKind, path: PathBuf, max_line: usize) -> Self {
        Self { kind, path, max_line, unparsed: false, cut: false, invalid_utf8: false }
    }

    /// Looks at one line as the tailer handed it out, with why it did not
    /// parse (`None`: it did).
    pub fn note(&mut self, line: &Line, unparsed: Option<&dyn Display>) {
        if line.cut && !self.cut {
            self.cut = true;
            let why = format!("longer than {} bytes: cut, its first bytes parsed", self.max_line);
            self.warn(line, "cut", &why);
        }
        if line.invalid_utf8 && !self.invalid_utf8 {
            self.invalid_utf8 = true;
            self.warn(line, "invalid UTF-8", &"decoded lossily");
        }
        if let Some(reason) = unparsed.filter(|_| !self.unparsed) {
            self.unparsed = true;
            self.warn(line, "unparsed", reason);
        }
    }

    fn warn(&self, line: &Line, what: &str, reason: &dyn Display) {
        tracing::warn!(
            log = self.kind.as_str(),
            file = %self.path.display(),
            ino = line.file.ino,
            end_offset = line.end_offset,
            %reason,
            "log: first {what} line (the one ending at end_offset); later ones are only counted",
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::events::FileId;
    use crate::format::ParseError;

    /// Everything logged while `f` runs, as text.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt().with_ansi(false).with_writer(move || out.clone()).finish();
        tracing::subscriber::with_default(sub, f);
        let text = buf.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    fn line(end_offset: u64, text: &str) -> Line {
        let file = FileId { dev: 1, ino: 42, fingerprint: 0, fingerprint_len: 0 };
        Line { text: text.into(), kind: LogKind::AccessLog, file, end_offset, cut: false, invalid_utf8: false }
    }

    #[test]
    fn the_first_of_each_kind_is_logged_once_with_where_and_why_never_the_line() {
        let secret = "t1.SECRET-TOKEN-VALUE";
        let long = format!("token={secret} {}", "x".repeat(100));
        let text = logged(|| {
            let mut n = LineNotes::new(LogKind::AccessLog, "/var/log/access.log".into(), 64);
            let bad = ParseError::UnknownFormat;
            n.note(&line(10, "status=OK"), None);
            n.note(&line(20, &format!("{secret} first")), Some(&bad));
            n.note(&line(30, &format!("{secret} second")), Some(&bad));
            let cut = |end, text: &str| Line { cut: true, ..line(end, text) };
            let lossy = |end, text: &str| Line { invalid_utf8: true, ..line(end, text) };
            n.note(&line(100, &"x".repeat(64)), None); // as long as the limit, not cut
            n.note(&line(110, "a real \u{fffd} in the log"), None);
            n.note(&cut(130, &long[..64]), None);
            n.note(&cut(230, &long[..64]), None);
            n.note(&lossy(240, &format!("{secret} \u{fffd}")), None);
            n.note(&lossy(250, "\u{fffd}"), Some(&bad));
        });
        let warns: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warns.len(), 3, "{text}");
        assert!(!text.contains(secret), "the line's content leaked: {text}");
        for (what, offset, reason) in [
            ("unparsed", 20, "not json, tskv or logfmt"),
            ("cut", 130, "longer than 64 bytes"),
            ("invalid UTF-8", 240, "decoded lossily"),
        ] {
            let w = warns.iter().find(|l| l.contains(&format!("first {what} line"))).expect(what);
            assert!(w.contains(&format!("end_offset={offset}")) && w.contains(reason), "{w}");
            assert!(w.contains("file=/var/log/access.log ino=42") && w.contains("log=\"access_log\""), "{w}");
        }
    }
}
