//! `tokenwatch parse`: an access log in, one normalized JSON object per line
//! out; bad lines reported by number only (the content may hold a token).
use std::io::{self, BufRead, BufWriter, Write};

use memchr::memchr;
use serde::Serialize;

use super::time::format_rfc3339_millis;
use super::{LineParser, Record, MAX_LINE};
use crate::config::LogFormat;

/// What [`read_line_bounded`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLine {
    /// The line (without `\n`) is in the buffer.
    Line,
    /// The line was longer than the limit (`len` bytes): its first `limit`
    /// bytes are in the buffer, the rest was skipped — the agent's tailer
    /// cuts long lines the same way.
    TooLong { len: usize },
}

/// Reads one line into `buf` (cleared first) without ever holding more than
/// `limit` bytes of it; `None` at end of input.
pub fn read_line_bounded(r: &mut impl BufRead, buf: &mut Vec<u8>, limit: usize) -> io::Result<Option<ReadLine>> {
    buf.clear();
    let (mut len, mut any) = (0usize, false);
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(any.then_some(if len > limit { ReadLine::TooLong { len } } else { ReadLine::Line }));
        }
        any = true;
        let (chunk, used, done) = match memchr(b'\n', avail) {
            Some(i) => (&avail[..i], i + 1, true),
            None => (avail, avail.len(), false),
        };
        let room = limit.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        len += chunk.len();
        r.consume(used);
        if done {
            return Ok(Some(if len > limit { ReadLine::TooLong { len } } else { ReadLine::Line }));
        }
    }
}

/// The JSON shape of a record on `tokenwatch parse`'s stdout; nulls omitted.
#[derive(Serialize)]
struct RecordJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<&'a str>,
}

impl<'a> From<&'a Record> for RecordJson<'a> {
    fn from(r: &'a Record) -> Self {
        Self {
            time: r.time.map(format_rfc3339_millis),
            method: r.method.as_deref(),
            status: r.status.map(|s| s.name()),
            duration_seconds: r.duration.map(|d| d.as_secs_f64()),
            pid: r.pid,
            uid: r.uid,
            gid: r.gid,
            request_id: r.request_id.as_deref(),
            error: r.error.as_deref(),
            expires_at: r.expires_at.map(format_rfc3339_millis),
            level: r.level.as_deref(),
        }
    }
}

/// The `tokenwatch parse` command: each line of `input` → one JSON object on
/// `out`; each bad line → `line N: <reason>` on `err` (never the content).
/// It judges lines as the agent does: lines over [`MAX_LINE`] are cut and
/// their first [`MAX_LINE`] bytes parsed (with a `line N: cut …` note on
/// `err`), invalid UTF-8 is decoded lossily, and a record is good only when
/// it is a call the agent uses ([`LineParser::parse_call`]). Blank lines are
/// skipped. `Ok(true)` when every line parsed (exit 0). An invalid
/// delimited layout is an `InvalidInput` error.
pub fn run_parse(
    format: LogFormat,
    delimiter: &str,
    columns: &[String],
    mut input: impl BufRead,
    out: impl Write,
    mut err: impl Write,
) -> io::Result<bool> {
    let parser =
        LineParser::new(format, delimiter, columns).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut out = BufWriter::new(out);
    let (mut buf, mut number, mut all) = (Vec::new(), 0u64, true);
    while let Some(read) = read_line_bounded(&mut input, &mut buf, MAX_LINE)? {
        number += 1;
        if let ReadLine::TooLong { len } = read {
            writeln!(err, "line {number}: cut: {len} bytes, the first {MAX_LINE} parsed (as the agent does)")?;
        }
        let line = String::from_utf8_lossy(&buf);
        if line.trim().is_empty() {
            continue;
        }
        match parser.parse_call(&line) {
            Ok(record) => {
                serde_json::to_writer(&mut out, &RecordJson::from(&record))?;
                out.write_all(b"\n")?;
            }
            Err(e) => {
                all = false;
                writeln!(err, "line {number}: {e}")?;
            }
        }
    }
    out.flush()?;
    err.flush()?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(format: LogFormat, input: &[u8]) -> (bool, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let ok = run_parse(format, "|", &["time".into(), "status".into()], input, &mut out, &mut err).unwrap();
        (ok, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    #[test]
    fn one_object_per_line_and_numbered_errors() {
        let input = b"tskv\ttime=2026-11-25T14:00:00.1234Z\tmethod=GetToken\tstatus=14\tduration=12ms\tpid=7\tuid=0\tgid=0\trequest_id=r\terror=boom\texpires_at=1795651200\tlevel=error\tsecret=x\n\
            \n\
            not a log line\n\
            {\"ts\":1795615200,\"code\":\"OK\"}\r\n\
            msg=\"t1.unterminated\n\
            method=GetToken pid=7\n";
        let (ok, out, err) = run(LogFormat::Auto, input);
        assert!(!ok);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                r#"{"time":"2026-11-25T14:00:00.123Z","method":"GetToken","status":"UNAVAILABLE","duration_seconds":0.012,"pid":7,"uid":0,"gid":0,"request_id":"r","error":"boom","expires_at":"2026-11-26T00:00:00.000Z","level":"error"}"#,
                r#"{"time":"2026-11-25T14:00:00.000Z","status":"OK"}"#,
            ]
        );
        assert_eq!(
            err,
            "line 3: not json, tskv or logfmt\nline 5: unterminated quote at column 5\n\
             line 6: no gRPC status: not a call (the agent skips it)\n"
        );
    }

    #[test]
    fn all_parsed_and_delimited() {
        let (ok, out, err) = run(LogFormat::Delimited, b"1795615200|OK\n1795615200|14");
        assert!(ok, "{err}");
        assert_eq!(out.lines().count(), 2);
        let (ok, out, _) = run(LogFormat::Json, b"");
        assert!(ok && out.is_empty());
    }

    #[test]
    fn long_lines_are_cut_like_the_agent_does_and_invalid_utf8_is_lossy() {
        let mut input = b"status=OK msg=".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.extend_from_slice(b"\nstatus=OK msg=\xff\xfe\n");
        let (ok, out, err) = run(LogFormat::Logfmt, &input);
        assert!(ok, "the cut line's first 64 KiB parse: {err}");
        assert_eq!(err, format!("line 1: cut: {} bytes, the first 65536 parsed (as the agent does)\n", MAX_LINE + 24));
        let lines: Vec<&str> = out.lines().collect();
        let prefix = format!("{{\"status\":\"OK\",\"error\":\"{}\"}}", "x".repeat(MAX_LINE - 14));
        assert_eq!(lines, [prefix.as_str(), "{\"status\":\"OK\",\"error\":\"\u{fffd}\u{fffd}\"}"]);
    }

    #[test]
    fn bounded_reader_holds_at_most_the_limit() {
        let data = b"abcdef\nxy\n\nz";
        let mut r = io::BufReader::with_capacity(2, &data[..]);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Some(l) = read_line_bounded(&mut r, &mut buf, 4).unwrap() {
            assert!(buf.len() <= 4);
            got.push((l, String::from_utf8(buf.clone()).unwrap()));
        }
        assert_eq!(
            got,
            [
                (ReadLine::TooLong { len: 6 }, "abcd".into()),
                (ReadLine::Line, "xy".into()),
                (ReadLine::Line, String::new()),
                (ReadLine::Line, "z".into()),
            ]
        );
    }

    #[test]
    fn bad_layout_is_invalid_input() {
        let e = run_parse(LogFormat::Delimited, "", &[], &b""[..], Vec::new(), Vec::new()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
