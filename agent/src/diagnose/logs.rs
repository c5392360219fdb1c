//! token-agent's access and application logs within the window: failed calls
//! and ERROR lines. Parsing is [`crate::format`]'s; this module only reads the
//! end of each file and summarises.
use std::{
    io::{Read, Seek, SeekFrom},
    path::Path,
    time::SystemTime,
};

use super::findings::{AccessLogFindings, AppLogFindings, Probe};
use crate::{
    config::TokenAgent,
    format::{app_log_error, method_matches, LineParser, Record},
    redact::redact,
    state::format_rfc3339,
};

/// How much of the end of a log is read: a window of errors, not an archive.
const TAIL_BYTES: u64 = 16 << 20;
/// How many lines of each kind are shown.
pub const SHOWN: usize = 8;

/// Reads the access log (and `<path>.1`, uncompressed, when it was written in the window).
pub fn access_log(cfg: &TokenAgent, cutoff: SystemTime) -> Probe<AccessLogFindings> {
    let parser = match LineParser::new(
        cfg.log_format,
        cfg.delimiter.as_deref().unwrap_or("|"),
        cfg.columns.as_deref().unwrap_or_default(),
    ) {
        Ok(p) => p,
        Err(e) => return Probe::Skipped(format!("token_agent.log_format cannot parse: {e}")),
    };
    match read_window(&cfg.access_log, "token_agent.access_log", cutoff) {
        Ok(text) => {
            Probe::Done(AccessLogFindings {
                path: cfg.access_log.clone(),
                ..scan_access(&text, &parser, &cfg.method, cutoff)
            })
        }
        Err(why) => Probe::Skipped(why),
    }
}

/// Reads the application log's ERROR lines in the window.
pub fn app_log(path: &Path, cutoff: SystemTime) -> Probe<AppLogFindings> {
    match read_window(path, "token_agent.app_log", cutoff) {
        Ok(text) => Probe::Done(AppLogFindings { path: path.to_path_buf(), ..scan_app(&text, cutoff) }),
        Err(why) => Probe::Skipped(why),
    }
}

/// The end of `path`, preceded by the end of `path.1` when that was modified after `cutoff`.
fn read_window(path: &Path, key: &str, cutoff: SystemTime) -> Result<String, String> {
    let mut text = String::new();
    let rotated = {
        let mut p = path.as_os_str().to_owned();
        p.push(".1");
        std::path::PathBuf::from(p)
    };
    if std::fs::metadata(&rotated).and_then(|m| m.modified()).is_ok_and(|m| m >= cutoff) {
        text = tail(&rotated).unwrap_or_default();
    }
    let current = tail(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{} does not exist (is {key} right?)", path.display()),
        std::io::ErrorKind::PermissionDenied => {
            format!("cannot read {}: permission denied (run diagnose as root)", path.display())
        }
        _ => format!("cannot read {}: {e}", path.display()),
    })?;
    text.push_str(&current);
    Ok(text)
}

/// The last [`TAIL_BYTES`] of a file, from a line start, lossily decoded.
fn tail(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    f.read_to_end(&mut buf)?;
    let mut s = String::from_utf8_lossy(&buf).into_owned();
    if start > 0 {
        // drop the partial first line
        s = s.split_once('\n').map(|(_, rest)| rest.to_string()).unwrap_or_default();
    }
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

/// Summarises access-log `text`: records dated at or after `cutoff`, by
/// status; `method` is the configured token method (`token_agent.method`).
pub fn scan_access(text: &str, parser: &LineParser, method: &str, cutoff: SystemTime) -> AccessLogFindings {
    let mut out = AccessLogFindings::default();
    let mut recent = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(rec) = parser.parse(line) else {
            out.unparsed += 1;
            continue;
        };
        let Some(status) = rec.status else {
            out.unparsed += 1;
            continue;
        };
        let Some(time) = rec.time else {
            out.undated += 1;
            continue;
        };
        if time < cutoff {
            continue;
        }
        out.calls += 1;
        *out.by_status.entry(status.name()).or_default() += 1;
        if status.is_ok() {
            out.last_ok = out.last_ok.max(Some(time));
            if rec.method.as_deref().is_none_or(|m| method_matches(method, m)) {
                out.last_token_ok = out.last_token_ok.max(Some(time));
            }
        } else {
            out.last_error = out.last_error.max(Some(time));
            recent.push(render(&rec));
        }
    }
    out.recent_errors = last(recent, SHOWN);
    out
}

/// One failed call from its parsed fields only: a raw line may carry secrets in keys we do not know.
fn render(r: &Record) -> String {
    let mut s = r.time.map(format_rfc3339).unwrap_or_else(|| "-".into());
    s += &format!(" status={}", r.status.map(|s| s.name()).unwrap_or_else(|| "-".into()));
    if let Some(m) = &r.method {
        s += &format!(" method={m}");
    }
    if let Some(p) = r.pid {
        s += &format!(" pid={p}");
    }
    if let Some(u) = r.uid {
        s += &format!(" uid={u}");
    }
    if let Some(d) = r.duration {
        s += &format!(" duration={d:?}");
    }
    if let Some(id) = &r.request_id {
        s += &format!(" request_id={id}");
    }
    if let Some(e) = &r.error {
        s += &format!(" error={:?}", redact(e));
    }
    redact(&s).into_owned()
}

/// Summarises application-log `text`: ERROR (and worse) lines at or after
/// `cutoff`; lines without a full date (glog) are shown but not counted.
pub fn scan_app(text: &str, cutoff: SystemTime) -> AppLogFindings {
    let mut out = AppLogFindings::default();
    let mut recent = Vec::new();
    for line in text.lines() {
        let Some(e) = app_log_error(line) else { continue };
        match e.time {
            Some(t) if t < cutoff => continue,
            Some(t) => {
                out.errors += 1;
                recent.push(format!("{} {} {}", format_rfc3339(t), e.level.to_uppercase(), redact(&e.message)));
            }
            None => recent.push(format!("(undated) {} {}", e.level.to_uppercase(), redact(&e.message))),
        }
    }
    out.recent = last(recent, SHOWN);
    out
}

fn last(mut v: Vec<String>, n: usize) -> Vec<String> {
    let skip = v.len().saturating_sub(n);
    v.drain(..skip);
    v
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::LogFormat;

    fn t(s: &str) -> SystemTime {
        crate::format::time::parse_time(s).unwrap()
    }

    const METHOD: &str = "/yandex.cloud.priv.iam.v1.TokenAgent/GetToken";

    const TOKEN: &str = "t1.9euelZqKj5KLi8-Yx5WWj8qNyJSOyO3rnpWakZ6YlJyTx5OVnsmQlJrNlZLt8_dGAFsL-e8hfCkc.S0yW2lQeDoYkjDJXK7bhP_Fk6QyzvCJvoBGs3LpiGugtSNSu3ueMx9-JbnKgNchbxY0lz5sGi5C2rQ1Pf7dcCg";

    #[test]
    fn counts_statuses_in_the_window_only() {
        let text = format!(
            "tskv\ttime=2026-11-25T13:00:00Z\tstatus=UNAVAILABLE\tpid=1\n\
             tskv\ttime=2026-11-25T14:00:00Z\tstatus=OK\tpid=2\n\
             tskv\ttime=2026-11-25T14:01:00Z\tstatus=UNAVAILABLE\tpid=3\trequest_id=r1\terror=boom {TOKEN}\tsecret=hunter2\n\
             garbage line\n\
             tskv\tstatus=OK\n"
        );
        let p = LineParser::new(LogFormat::Auto, "|", &[]).unwrap();
        let a = scan_access(&text, &p, METHOD, t("2026-11-25T13:30:00Z"));
        assert_eq!(a.calls, 2);
        assert_eq!(a.by_status, [("OK".to_string(), 1), ("UNAVAILABLE".to_string(), 1)].into());
        assert_eq!(a.errors(), [("UNAVAILABLE".to_string(), 1)].into());
        assert_eq!((a.unparsed, a.undated), (1, 1));
        assert_eq!(a.last_error, Some(t("2026-11-25T14:01:00Z")));
        assert!(!a.recovered());
        assert_eq!(a.recent_errors.len(), 1);
        let shown = &a.recent_errors[0];
        assert!(
            shown.contains("status=UNAVAILABLE") && shown.contains("request_id=r1") && shown.contains("pid=3"),
            "{shown}"
        );
        assert!(!shown.contains("t1.9eu") && !shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn json_and_logfmt_too() {
        let p = LineParser::new(LogFormat::Auto, "|", &[]).unwrap();
        let text = "{\"ts\":\"2026-11-25T14:00:00Z\",\"code\":14}\ntime=2026-11-25T14:00:05Z grpc_code=OK\n";
        let a = scan_access(text, &p, METHOD, t("2026-11-25T13:00:00Z"));
        assert_eq!(a.calls, 2);
        assert!(a.recovered());
    }

    #[test]
    fn the_last_answered_token_call_is_of_the_token_method() {
        let p = LineParser::new(LogFormat::Auto, "|", &[]).unwrap();
        let text = "time=2026-11-25T14:00:00Z status=OK method=GetToken
                    time=2026-11-25T14:00:10Z status=OK
                    time=2026-11-25T14:00:20Z status=OK method=/grpc.health.v1.Health/Check
";
        let a = scan_access(text, &p, METHOD, t("2026-11-25T13:00:00Z"));
        assert_eq!(a.last_ok, Some(t("2026-11-25T14:00:20Z")));
        // a record without a method counts; another method's answer does not
        assert_eq!(a.last_token_ok, Some(t("2026-11-25T14:00:10Z")));
    }

    #[test]
    fn app_errors_in_the_window() {
        let text = format!(
            "2026-11-25T13:00:00.000Z ERROR old failure\n\
             2026-11-25T14:00:00.000Z INFO started\n\
             2026-11-25T14:00:01.000Z ERROR GetToken failed: token {TOKEN}\n"
        );
        let a = scan_app(&text, t("2026-11-25T13:30:00Z"));
        assert_eq!(a.errors, 1);
        assert_eq!(a.recent.len(), 1);
        assert!(a.recent[0].contains("GetToken failed") && !a.recent[0].contains("t1.9eu"), "{:?}", a.recent);
    }

    #[test]
    fn reads_the_end_and_the_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("access.log");
        std::fs::write(dir.path().join("access.log.1"), "old\n").unwrap();
        std::fs::write(&p, "new").unwrap();
        let now = SystemTime::now();
        assert_eq!(read_window(&p, "k", now - Duration::from_secs(60)).unwrap(), "old\nnew\n");
        assert_eq!(read_window(&p, "k", now + Duration::from_secs(60)).unwrap(), "new\n");
        let e = read_window(&dir.path().join("nope.log"), "k", now).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
    }
}
