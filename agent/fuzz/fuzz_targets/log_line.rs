//! Any bytes as a log file: split into lines as the tailer does, in chunks the
//! input chooses, then every line through every parser.
//!
//! Beyond "never panics": splitting does not depend on how reads are chunked,
//! every line fits the cap, and every string a parsed record carries is
//! already redacted (a token cannot leave through a log field).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenwatch::config::LogFormat;
use tokenwatch::format::{self, app_log_error, LineParser, Record};
use tokenwatch::redact::redact;
use tokenwatch::sources::logs::reader::Splitter;

/// Small, so that cut lines are common.
const MAX: usize = 512;

fn lines(data: &[u8], chunk: usize) -> Vec<(Vec<u8>, u64, bool)> {
    let mut s = Splitter::new(MAX);
    let mut out = Vec::new();
    let mut base = 0;
    for piece in data.chunks(chunk.max(1)) {
        s.feed(piece, base, |(line, end, cut)| out.push((line.to_vec(), end, cut)));
        base += piece.len() as u64;
    }
    if let Some((line, cut)) = s.finish() {
        out.push((line, base, cut));
    }
    out
}

fn redacted(s: &Option<String>) {
    if let Some(s) = s {
        assert_eq!(redact(s), s.as_str(), "an exported string holds a token shape");
    }
}

fn check(r: &Record) {
    for s in [&r.method, &r.request_id, &r.error, &r.level] {
        redacted(s);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else { return };
    let whole = lines(data, data.len());
    assert_eq!(whole, lines(data, chunk as usize), "chunking changed the lines");
    let mut last_end = 0;
    for (line, end, _) in &whole {
        assert!(line.len() <= MAX && !line.contains(&b'\n'));
        assert!(*end >= last_end && *end <= data.len() as u64);
        last_end = *end;
    }
    let columns = ["time".to_string(), "-".into(), "status".into(), "pid".into(), "error".into()];
    let parsers = [LogFormat::Auto, LogFormat::Tskv, LogFormat::Json, LogFormat::Logfmt, LogFormat::Delimited]
        .map(|f| LineParser::new(f, "|", &columns).expect("a valid layout"));
    for (line, _, _) in &whole {
        let text = String::from_utf8_lossy(line);
        for p in &parsers {
            if let Ok(r) = p.parse(&text) {
                check(&r);
            }
            let _ = p.pairs(&text);
        }
        if let Some(e) = app_log_error(&text) {
            redacted(&Some(e.message.clone()));
        }
        let _ = format::detect(&text);
    }
    // `tokenwatch parse`: never fails on input bytes, and prints JSON lines.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    format::run_parse(LogFormat::Auto, "|", &columns, data, &mut out, &mut err).expect("run_parse");
    for l in String::from_utf8(out).expect("UTF-8 output").lines() {
        serde_json::from_str::<serde_json::Value>(l).expect("a JSON line");
    }
});
