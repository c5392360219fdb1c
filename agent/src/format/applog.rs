//! Error lines in token-agent's application log: a structured level field
//! (json/logfmt/tskv `level`, `severity`, `lvl`) or the usual plain-text
//! forms (`<time> ERROR msg`, `[error]`, glog `E1125 14:00:00.123 …`).
use std::borrow::Cow;
use std::time::SystemTime;

use super::auto::{detect, Detected};
use super::record::Field;
use super::time::parse_time;
use super::{json, logfmt, tskv};
use crate::redact::redact;

/// An application-log line at an error level.
#[derive(Debug, Clone, PartialEq)]
pub struct AppLogLine {
    /// When the line says; `None` when it has no (full) timestamp, e.g. glog.
    pub time: Option<SystemTime>,
    /// The level as normalized: `error`, `fatal`, `critical`, `panic`.
    pub level: &'static str,
    /// The message, redacted; `(no message)` when there is none.
    pub message: String,
}

/// The error level a level word names; `Some(None)` for a known non-error
/// level (warn, info, …); `None` when it is not a level word.
fn level(word: &str) -> Option<Option<&'static str>> {
    let mut buf = [0u8; 9];
    let w = buf.get_mut(..word.len())?;
    w.copy_from_slice(word.as_bytes());
    w.make_ascii_lowercase();
    Some(match &*w {
        b"error" | b"err" | b"eror" => Some("error"),
        b"fatal" => Some("fatal"),
        b"panic" | b"dpanic" => Some("panic"),
        b"critical" | b"crit" => Some("critical"),
        b"warn" | b"warning" | b"info" | b"notice" | b"debug" | b"trace" => None,
        _ => return None,
    })
}

/// Recognises an error line; `None` for other levels and unrecognised lines.
pub fn app_log_error(line: &str) -> Option<AppLogLine> {
    let line = line.trim_end_matches(['\n', '\r']);
    if let Some(found) = structured(line) {
        return found;
    }
    glog(line).or_else(|| plain(line)).flatten()
}

/// `Some(result)` when the line is structured and has a level field.
fn structured(line: &str) -> Option<Option<AppLogLine>> {
    let (mut lvl, mut time, mut msg, mut err) = (None::<Cow<str>>, None, None::<Cow<str>>, None::<Cow<str>>);
    let mut sink = |k: Cow<'_, str>, v: Cow<'_, str>| {
        // `message`/`msg` vs `error`/`err`: the first letter tells them apart.
        let is_msg = k.as_bytes().first().is_some_and(|c| c.eq_ignore_ascii_case(&b'm'));
        match Field::from_key(&k) {
            Some(Field::Level) if lvl.is_none() => lvl = Some(Cow::Owned(v.into_owned())),
            Some(Field::Time) if time.is_none() => time = parse_time(&v),
            Some(Field::Error) if is_msg && msg.is_none() => msg = Some(Cow::Owned(v.into_owned())),
            Some(Field::Error) if !is_msg && err.is_none() => err = Some(Cow::Owned(v.into_owned())),
            _ => {}
        }
    };
    let parsed = match detect(line)? {
        Detected::Json => json::parse(line, &mut sink),
        Detected::Tskv => tskv::parse(line, &mut sink),
        Detected::Logfmt => logfmt::parse(line, &mut sink),
    }
    .is_ok();
    // built only for an error line
    let message = || match (msg.as_deref().map(str::trim), err.as_deref().map(str::trim)) {
        (Some(m), Some(e)) if !m.is_empty() && !e.is_empty() => format!("{m}: {e}"),
        (Some(m), _) if !m.is_empty() => m.to_owned(),
        (_, Some(e)) => e.to_owned(),
        _ => String::new(),
    };
    let from_field = lvl.as_deref().and_then(|l| level(l.trim()));
    if !parsed {
        // A structured line that does not parse (malformed, cut inside a
        // quote, or glog/plain text that only looks structured): glog's
        // reading, else what was read before the error, else the plain-text
        // reading's level and time — never the rest of the line as the
        // message: it may hold any key (an api_key=…), not only msg/err.
        if let Some(g) = glog(line) {
            return Some(g); // an explicit shape: its message is its text
        }
        let other = plain(line).flatten();
        let Some(level) = from_field.unwrap_or(other.as_ref().map(|o| o.level)) else { return Some(None) };
        let message = match message() {
            m if m.is_empty() => UNPARSABLE.to_owned(),
            m => finish_message(&m),
        };
        return Some(Some(AppLogLine { time: time.or(other.and_then(|o| o.time)), level, message }));
    }
    Some(from_field?.map(|level| AppLogLine { time, level, message: finish_message(&message()) }))
}

/// The message of an error line whose structure could not be read.
const UNPARSABLE: &str = "(a structured line that does not parse)";

/// glog: `Lmmdd hh:mm:ss.uuuuuu threadid file:line] msg`, `L` in `IWEF`.
fn glog(line: &str) -> Option<Option<AppLogLine>> {
    let b = line.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = digits(1..5) && b.get(5) == Some(&b' ') && digits(6..8) && b.get(8) == Some(&b':') && digits(9..11);
    if !shape {
        return None;
    }
    let level = match b[0] {
        b'E' => "error",
        b'F' => "fatal",
        b'W' | b'I' => return Some(None),
        _ => return None,
    };
    let message = line.split_once("] ").map_or("", |(_, m)| m);
    // glog has no year: the caller dates the line.
    Some(Some(AppLogLine { time: None, level, message: finish_message(message) }))
}

/// Plain text: a level word among the first tokens — bracketed (`[error]`),
/// with a colon (`Error:`), upper case (`ERROR`), as `level=error`, or lower
/// case right after a timestamp. Earlier tokens may carry the time.
fn plain(line: &str) -> Option<Option<AppLogLine>> {
    let mut rest = line;
    let mut before: Vec<&str> = Vec::new();
    for _ in 0..6 {
        rest = rest.trim_start();
        let end = rest.find([' ', '\t']).unwrap_or(rest.len());
        let (tok, after) = rest.split_at(end);
        if tok.is_empty() {
            return None;
        }
        if let Some(found) = level_token(tok, &before) {
            return Some(found.map(|level| AppLogLine {
                time: time_of(&before),
                level,
                message: finish_message(after),
            }));
        }
        before.push(tok);
        rest = after;
    }
    None
}

fn level_token(tok: &str, before: &[&str]) -> Option<Option<&'static str>> {
    if let Some((k, v)) = tok.split_once('=') {
        return matches!(Field::from_key(k), Some(Field::Level)).then(|| level(v.trim_matches('"'))).flatten();
    }
    let bare = tok.trim_end_matches(':');
    let inner = bare
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .or_else(|| bare.strip_prefix('<').and_then(|t| t.strip_suffix('>')));
    let word = inner.unwrap_or(bare);
    let marked = inner.is_some() || bare.len() < tok.len() || word.bytes().all(|c| c.is_ascii_uppercase());
    let after_time = before.iter().all(|t| timeish(t));
    (marked || after_time).then(|| level(word)).flatten()
}

/// Digits and date/time punctuation only, e.g. `2026-11-25T14:00:00.1Z`.
fn timeish(tok: &str) -> bool {
    let t = tok.trim_matches(['[', ']']);
    t.bytes().any(|c| c.is_ascii_digit()) && t.bytes().all(|c| c.is_ascii_digit() || b"-/:.,+TZ".contains(&c))
}

fn time_of(before: &[&str]) -> Option<SystemTime> {
    let clean = |t: &str| t.trim_matches(['[', ']']).to_owned();
    let one = before.first().map(|t| clean(t))?;
    // `2026-11-25 14:00:00,250` before `2026-11-25` alone (midnight).
    before.get(1).and_then(|t| parse_time(&format!("{one} {}", clean(t)))).or_else(|| parse_time(&one))
}

fn finish_message(m: &str) -> String {
    let m = m.trim().trim_start_matches([':', '-', '|']).trim();
    if m.is_empty() {
        return "(no message)".to_owned();
    }
    redact(m).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const T: u64 = 1_795_615_200; // 2026-11-25T14:00:00Z

    fn at(ms: u64) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_secs(T) + Duration::from_millis(ms))
    }

    fn err(line: &str) -> AppLogLine {
        app_log_error(line).unwrap_or_else(|| panic!("not recognised: {line}"))
    }

    #[test]
    fn structured_levels() {
        let l =
            err(r#"{"level":"error","ts":"2026-11-25T14:00:00Z","msg":"GetToken failed","error":"iam unavailable"}"#);
        assert_eq!((l.time, l.level, l.message.as_str()), (at(0), "error", "GetToken failed: iam unavailable"));
        let l = err("time=2026-11-25T14:00:00.5Z level=ERROR msg=\"cannot refresh\"");
        assert_eq!((l.time, l.level, l.message.as_str()), (at(500), "error", "cannot refresh"));
        let l = err("tskv\tseverity=FATAL\tmessage=boom");
        assert_eq!((l.time, l.level, l.message.as_str()), (None, "fatal", "boom"));
        assert_eq!(err(r#"{"lvl":"crit"}"#).message, "(no message)");
        assert_eq!(err("level=panic err=x").level, "panic");
        for ok in [r#"{"level":"info","msg":"ERROR in text is not a level"}"#, "level=warn msg=x", "tskv\tlevel=debug"]
        {
            assert_eq!(app_log_error(ok), None, "{ok}");
        }
    }

    #[test]
    fn plain_text_forms() {
        let l = err("2026-11-25T14:00:00Z ERROR something broke");
        assert_eq!((l.time, l.level, l.message.as_str()), (at(0), "error", "something broke"));
        let l = err("2026-11-25 14:00:00,250 CRITICAL - disk full");
        assert_eq!((l.time, l.level, l.message.as_str()), (at(250), "critical", "disk full"));
        let l = err("2026/11/25 14:00:00 [error] 123#0: upstream gone");
        assert_eq!((l.time, l.level, l.message.as_str()), (at(0), "error", "123#0: upstream gone"));
        let l = err("[2026-11-25T14:00:00Z] [ERR] x");
        assert_eq!((l.time, l.level), (at(0), "error"));
        let l = err("2026-11-25T14:00:00.000Z\terror\tagent/main.go:12\tlisten failed");
        assert_eq!((l.time, l.message.as_str()), (at(0), "agent/main.go:12\tlisten failed"));
        assert_eq!(err("Error: cannot bind socket").message, "cannot bind socket");
        assert_eq!(err("Nov 25 14:00:00 host token-agent[42]: FATAL: oops").level, "fatal");
        assert_eq!(err("level=error").message, "(no message)");
        let l = err("2026-11-25T14:00:00Z level=error msg=\"unterminated");
        assert_eq!((l.time, l.level), (at(0), "error"));
    }

    #[test]
    fn glog_lines() {
        let l = err("E1125 14:00:00.123456   4242 server.go:88] failed to fetch token: deadline exceeded");
        assert_eq!((l.time, l.level, l.message.as_str()), (None, "error", "failed to fetch token: deadline exceeded"));
        assert_eq!(err("F1125 14:00:00.1 1 main.go:1] bye").level, "fatal");
        assert_eq!(app_log_error("I1125 14:00:00.123456   4242 server.go:88] ok"), None);
        assert_eq!(app_log_error("W1125 14:00:00.123456   4242 server.go:88] error soon"), None);
    }

    #[test]
    fn not_errors() {
        for s in [
            "",
            "2026-11-25T14:00:00Z INFO served GetToken",
            "2026-11-25T14:00:00Z WARN error budget low",
            "request failed with an error code",
            "the error was transient",
            "[info] error count 0",
            "\u{0}\u{1}\u{fffd}",
            "E",
            "E1125",
        ] {
            assert_eq!(app_log_error(s), None, "{s:?}");
        }
    }

    #[test]
    fn a_broken_structured_line_never_gives_its_raw_rest_as_the_message() {
        // cut inside a quote (the 64 KiB limit) or simply malformed
        let key = "AQVNsecretsecretsecret";
        let l = err(&format!(r#"level=error msg="x" api_key={key} note="unterminated"#));
        assert_eq!(l.message, "x", "the pairs read before the error, nothing else");
        let l = err(&format!(r#"2026-11-25T14:00:00Z ERROR api_key={key} note="unterminated"#));
        assert!(!l.message.contains(key), "{}", l.message);
        let l = err(&format!(r#"{{"api_key":"{key}","level":"error","msg":"cut"#));
        assert!(!l.message.contains(key), "{}", l.message);
        // glog whose message only looks like logfmt: still an error
        let l = err(r#"E1125 14:00:00.1 1 main.go:10] dial failed: addr="unix:///x"#);
        assert_eq!((l.level, l.message.as_str()), ("error", r#"dial failed: addr="unix:///x"#));
    }

    #[test]
    fn messages_are_redacted() {
        let token = format!("t1.{}.{}", "A".repeat(100), "B".repeat(86));
        for line in [
            format!("2026-11-25T14:00:00Z ERROR bad token {token}"),
            format!(r#"{{"level":"error","msg":"bad token {token}"}}"#),
            format!("E1125 14:00:00.1 1 a.go:1] {token}"),
        ] {
            let l = err(&line);
            assert!(!l.message.contains(&token[..40]) && l.message.contains("<redacted>"), "{}", l.message);
        }
    }
}
