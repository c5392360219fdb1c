//! Property tests for the access-log formats: generated records survive a
//! round trip through every format; arbitrary input never panics any parser
//! (the CI fuzz target); tokens never reach parse output or error messages.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::test_runner::Config;
use tokenwatch::config::LogFormat;
use tokenwatch::events::GrpcStatus;
use tokenwatch::format::{self, app_log_error, run_parse, LineParser, Record};
use tokenwatch::redact::redact;

// ---- generated records -------------------------------------------------

/// A value as a format writes it: JSON writes `Num` unquoted.
#[derive(Debug, Clone)]
enum Val {
    Str(String),
    Num(String),
}

impl Val {
    fn text(&self) -> &str {
        match self {
            Val::Str(s) | Val::Num(s) => s,
        }
    }
}

/// Generated `(key, value)` pairs and the record they must normalize to.
#[derive(Debug, Clone)]
struct Case {
    pairs: Vec<(String, Val)>,
    want: Record,
}

/// A key alias for a field, in a random case.
fn alias(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    (prop::sample::select(names), 0..3u8).prop_map(|(n, case)| match case {
        0 => n.to_string(),
        1 => n.to_uppercase(),
        _ => n[..1].to_uppercase() + &n[1..],
    })
}

/// Trimmed, non-empty text (not `-`, which means "none") rich in characters that need escaping.
fn text() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec!['\t', '\n', '\r', '\\', '"', '=', ' ', '|', '\0', 'é', '{', '}']);
    prop::collection::vec(prop_oneof![3 => any::<char>(), 2 => special, 3 => prop::char::range('a', 'z')], 1..24)
        .prop_map(|cs| cs.into_iter().collect::<String>().trim().to_string())
        .prop_filter("non-empty", |s| !s.is_empty() && s != "-")
}

/// 0000-01-02 … 9999-12-30, in whole milliseconds.
const MAX_SECS: i64 = 253_402_214_400;

fn civil(secs: i64, offset_secs: i32) -> time::OffsetDateTime {
    let off = time::UtcOffset::from_whole_seconds(offset_secs).expect("offset in range");
    time::OffsetDateTime::from_unix_timestamp(secs).expect("secs in range").to_offset(off)
}

fn iso(secs: i64, ms: u32, offset_mins: i32, style: u8) -> String {
    let t = civil(secs, offset_mins * 60);
    let (y, mo, d, h, mi, s) = (t.year(), t.month() as u8, t.day(), t.hour(), t.minute(), t.second());
    let (sign, oh, om) = (if offset_mins < 0 { '-' } else { '+' }, offset_mins.abs() / 60, offset_mins.abs() % 60);
    match style {
        0 => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}{sign}{oh:02}:{om:02}"),
        _ => format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02},{ms:03}{sign}{oh:02}{om:02}"),
    }
}

/// A time, its expected value, and how it is written.
fn time_val() -> impl Strategy<Value = (SystemTime, Val)> {
    (0..MAX_SECS, 0..1000u32, -14 * 60..=14 * 60i32, 0..6u8).prop_map(|(secs, ms, off, style)| {
        let at = UNIX_EPOCH + Duration::from_secs(secs as u64) + Duration::from_millis(ms.into());
        let t = civil(secs, 0);
        let utc = || {
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{ms:03}Z",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        };
        let val = match style {
            0 => Val::Str(utc()),
            1 => Val::Str(utc().replace('T', " ").trim_end_matches('Z').to_string()),
            2 | 3 => Val::Str(iso(secs, ms, if style == 2 { off } else { 0 }, style - 2)),
            4 => Val::Num(format!("{secs}.{ms:03}")),
            _ if secs > 1_000_000_000 => Val::Num(format!("{}", secs * 1000 + i64::from(ms))),
            _ => Val::Str(utc()),
        };
        (at, val)
    })
}

/// Numbers are gRPC codes only within 0–16 (see `GrpcStatus::parse`).
fn status_val() -> impl Strategy<Value = (GrpcStatus, Val)> {
    (0..=16u32, 0..3u8).prop_map(|(code, style)| {
        let s = GrpcStatus(code);
        let val = match style {
            0 => Val::Str(s.name()),
            1 => Val::Str(s.name().to_lowercase()),
            _ => Val::Num(code.to_string()),
        };
        (s, val)
    })
}

/// A duration in whole microseconds, its key and how it is written.
fn duration_val() -> impl Strategy<Value = (Duration, String, Val)> {
    (0..10_000_000_000u64, 0..5u8, alias(&["duration", "elapsed", "latency", "request_time"])).prop_map(
        |(us, style, key)| {
            let secs = format!("{}.{:06}", us / 1_000_000, us % 1_000_000);
            let ms = format!("{}.{:03}", us / 1000, us % 1000);
            let (key, val) = match style {
                0 => (key, Val::Str(format!("{us}us"))),
                1 => (key, Val::Str(format!("{ms}ms"))),
                2 => (key, Val::Str(format!("{secs}s"))),
                3 => (key, Val::Num(secs)),
                _ => ("duration_ms".to_string(), Val::Num(ms)),
            };
            (Duration::from_micros(us), key, val)
        },
    )
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Z][A-Za-z0-9]{0,15}",
        "/[a-z][a-z0-9]{0,5}(\\.[a-z][a-z0-9]{0,5}){0,4}\\.[A-Z][A-Za-z]{0,10}/[A-Z][A-Za-z]{0,10}",
    ]
}

prop_compose! {
    fn case()(
        time in prop::option::of((alias(&["time", "timestamp", "ts", "@timestamp", "datetime"]), time_val())),
        method in prop::option::of((alias(&["method", "grpc_method", "rpc_method", "path"]), method())),
        status in prop::option::of((alias(&["status", "code", "grpc_code", "grpc_status"]), status_val())),
        duration in prop::option::of(duration_val()),
        ids in prop::option::of((any::<u32>(), any::<u32>(), any::<u32>())),
        request_id in prop::option::of((alias(&["request_id", "x_request_id", "req_id"]), text())),
        error in prop::option::of((alias(&["error", "err", "message", "msg"]), text())),
        expires in prop::option::of(time_val()),
        level in prop::option::of((alias(&["level", "severity", "lvl"]), text())),
        secret in prop::option::of(("(secret|token|iam_token|peer)", text())),
        order in any::<prop::sample::Index>(),
    ) -> Case {
        let mut pairs: Vec<(String, Val)> = Vec::new();
        let mut want = Record::default();
        if let Some((k, (at, v))) = time { pairs.push((k, v)); want.time = Some(at); }
        if let Some((k, m)) = method { pairs.push((k, Val::Str(m.clone()))); want.method = Some(m); }
        if let Some((k, (s, v))) = status { pairs.push((k, v)); want.status = Some(s); }
        if let Some((d, k, v)) = duration { pairs.push((k, v)); want.duration = Some(d); }
        if let Some((p, u, g)) = ids {
            for (k, n) in [("pid", p), ("uid", u), ("gid", g)] { pairs.push((k.into(), Val::Num(n.to_string()))); }
            (want.pid, want.uid, want.gid) = (Some(p), Some(u), Some(g));
        }
        if let Some((k, s)) = request_id { pairs.push((k, Val::Str(s.clone()))); want.request_id = Some(s); }
        if let Some((k, s)) = error { pairs.push((k, Val::Str(s.clone()))); want.error = Some(s); }
        if let Some((at, v)) = expires { pairs.push(("expires_at".into(), v)); want.expires_at = Some(at); }
        if let Some((k, s)) = level { pairs.push((k, Val::Str(s.clone()))); want.level = Some(s); }
        if let Some((k, s)) = secret { pairs.push((k, Val::Str(s))); }
        let n = pairs.len().max(1);
        pairs.rotate_left(order.index(n) % n);
        Case { pairs, want }
    }
}

fn has_key_field(r: &Record) -> bool {
    r.time.is_some() || r.method.is_some() || r.status.is_some()
}

// ---- writers, with each format's escaping -------------------------------

fn tskv_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            '=' => out.push_str("\\="),
            c => out.push(c),
        }
    }
    out
}

fn to_tskv(pairs: &[(String, Val)]) -> String {
    let mut line = "tskv".to_string();
    for (k, v) in pairs {
        line.push_str(&format!("\t{}={}", tskv_escape(k), tskv_escape(v.text())));
    }
    line
}

fn to_json(pairs: &[(String, Val)]) -> String {
    let fields: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Val::Num(n) => n.clone(),
                Val::Str(s) => serde_json::to_string(s).unwrap(),
            };
            format!("{}:{v}", serde_json::to_string(k).unwrap())
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn logfmt_value(s: &str) -> String {
    let plain = !s.is_empty() && s.chars().all(|c| c > ' ' && c != '"' && c != '\\' && c != '=' && c != '\u{7f}');
    if plain {
        return s.to_string();
    }
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn to_logfmt(pairs: &[(String, Val)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}={}", logfmt_value(v.text()))).collect::<Vec<_>>().join(" ")
}

/// Known fields as named columns, unknown keys as `-` columns.
fn to_delimited(pairs: &[(String, Val)], delimiter: &str) -> (String, Vec<String>) {
    let columns =
        pairs.iter().map(|(k, _)| if format::Field::from_key(k).is_some() { k.clone() } else { "-".into() }).collect();
    let line = pairs.iter().map(|(_, v)| v.text()).collect::<Vec<_>>().join(delimiter);
    (line, columns)
}

fn delimitable(pairs: &[(String, Val)]) -> bool {
    pairs.iter().all(|(_, v)| !v.text().contains(['|', '\n', '\r']))
}

fn parser(f: LogFormat) -> LineParser {
    LineParser::new(f, "|", &["time".into()]).unwrap()
}

proptest! {
    #![proptest_config(Config { cases: 500, ..Config::default() })]

    #[test]
    fn round_trip_through_every_format(case in case()) {
        prop_assume!(!case.pairs.is_empty(), "an empty line is a different error per format");
        let want = if has_key_field(&case.want) { Ok(case.want.clone()) } else { Err(format::ParseError::NoRecognizedFields) };
        let tskv = to_tskv(&case.pairs);
        prop_assert_eq!(&parser(LogFormat::Tskv).parse(&tskv), &want, "tskv {:?}", tskv);
        prop_assert_eq!(&parser(LogFormat::Auto).parse(&tskv), &want, "auto tskv {:?}", tskv);
        let json = to_json(&case.pairs);
        prop_assert_eq!(&parser(LogFormat::Json).parse(&json), &want, "json {:?}", json);
        prop_assert_eq!(&parser(LogFormat::Auto).parse(&json), &want, "auto json {:?}", json);
        let logfmt = to_logfmt(&case.pairs);
        prop_assert_eq!(&parser(LogFormat::Logfmt).parse(&logfmt), &want, "logfmt {:?}", logfmt);
        prop_assert_eq!(&parser(LogFormat::Auto).parse(&logfmt), &want, "auto logfmt {:?}", logfmt);
        if delimitable(&case.pairs) {
            for delimiter in ["|", " | ", "||"] {
                let (line, columns) = to_delimited(&case.pairs, delimiter);
                let p = LineParser::new(LogFormat::Delimited, delimiter, &columns).unwrap();
                prop_assert_eq!(&p.parse(&line), &want, "delimited {:?} {:?}", line, columns);
            }
        }
    }
}

// ---- fuzz: nothing panics on any input ----------------------------------

/// Bytes that are often almost a log line.
fn fuzz_input() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        any::<String>(),
        "[ \t=\"\\\\{}\\[\\]:,.|a-zA-Z0-9\\-+_@µé\u{0}]{0,160}",
        "(tskv\t|\\{\"|[EFWI]1125 14:00:00|level=|2026-11-25[T ]14:00:00)[ \t=\"\\\\{}:,.|a-z0-9\\-Z+]{0,120}",
    ]
}

fn all_parsers(line: &str) {
    for f in [LogFormat::Auto, LogFormat::Tskv, LogFormat::Json, LogFormat::Logfmt] {
        let p = parser(f);
        let _ = p.parse(line);
        let _ = p.pairs(line);
    }
    for (d, cols) in [
        ("|", vec!["time".to_string(), "-".into(), "status".into()]),
        (" ", vec!["ts".into(), "pid".into()]),
        ("::", vec!["method".into()]),
    ] {
        let _ = LineParser::new(LogFormat::Delimited, d, &cols).unwrap().parse(line);
    }
    let _ = app_log_error(line);
    let _ = format::detect(line);
    let _ = format::time::parse_time(line);
    let _ = format::time::parse_duration(line, Duration::from_secs(1));
    let _ = redact(line);
}

proptest! {
    #![proptest_config(Config { cases: 2000, ..Config::default() })]

    #[test]
    fn fuzz_line_parsers_never_panic(line in fuzz_input()) {
        all_parsers(&line);
        // And every suffix: parsers often fail differently mid-token.
        for (i, _) in line.char_indices().step_by(7) {
            all_parsers(&line[i..]);
        }
    }

    #[test]
    fn fuzz_run_parse_never_fails(bytes in prop::collection::vec(any::<u8>(), 0..2000), f in 0..5u8) {
        let format = [LogFormat::Auto, LogFormat::Tskv, LogFormat::Json, LogFormat::Logfmt, LogFormat::Delimited][f as usize];
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let r = run_parse(format, "|", &["time".into(), "status".into()], &bytes[..], &mut out, &mut err);
        prop_assert!(r.is_ok());
        for line in String::from_utf8(out).unwrap().lines() {
            prop_assert!(serde_json::from_str::<serde_json::Value>(line).is_ok());
        }
    }
}

// ---- redaction: a token never comes out -----------------------------------

fn token() -> impl Strategy<Value = String> {
    ("t1\\.[A-Za-z0-9_-]{20,200}={0,2}", "[A-Za-z0-9_-]{86}").prop_map(|(head, sig)| format!("{head}.{sig}"))
}

/// Lines in every format with the token in an unknown key, `error`, `msg`,
/// `request_id` or `method`, plus broken lines that hold it.
fn token_lines(t: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for key in ["iam_token", "secret", "error", "msg", "request_id", "method"] {
        let pairs = vec![
            ("time".to_string(), Val::Str("2026-11-25T14:00:00Z".into())),
            ("status".to_string(), Val::Str("OK".into())),
            (key.to_string(), Val::Str(format!("got {t} back"))),
        ];
        lines.push(to_tskv(&pairs));
        lines.push(to_json(&pairs));
        lines.push(to_logfmt(&pairs));
    }
    lines.push(format!("status=OK msg=\"{t}"));
    lines.push(format!("{{\"status\":\"OK\",\"token\":\"{t}"));
    lines.push(format!("{{\"status\":\"OK\",\"token\":{t}}}"));
    lines.push(t.to_string());
    lines.push(format!("\"{t}\" = x"));
    lines.push(format!("{{\"{t}\":1}}"));
    lines
}

proptest! {
    #![proptest_config(Config { cases: 200, ..Config::default() })]

    #[test]
    fn tokens_never_reach_output_or_errors(t in token()) {
        let sig = &t[t.len() - 86..];
        let lines = token_lines(&t);
        for format in [LogFormat::Auto, LogFormat::Tskv, LogFormat::Json, LogFormat::Logfmt, LogFormat::Delimited] {
            let input = lines.join("\n");
            let (mut out, mut err) = (Vec::new(), Vec::new());
            run_parse(format, "\t", &["time".into(), "status".into(), "error".into()], input.as_bytes(), &mut out, &mut err).unwrap();
            let (out, err) = (String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap());
            prop_assert!(!out.contains(sig) && !err.contains(sig), "{:?}: out {} err {}", format, out, err);
        }
        for line in &lines {
            if let Ok(r) = parser(LogFormat::Auto).parse(line) {
                let all = format!("{r:?}");
                prop_assert!(!all.contains(sig), "{}", all);
            }
            for f in [LogFormat::Tskv, LogFormat::Json, LogFormat::Logfmt] {
                if let Err(e) = parser(f).parse(line) {
                    let (shown, debug) = (e.to_string(), format!("{e:?}"));
                    prop_assert!(!shown.contains(sig) && !debug.contains(sig), "{}", shown);
                }
            }
            let app = format!("2026-11-25T14:00:00Z ERROR {line}");
            if let Some(l) = app_log_error(&app) {
                prop_assert!(!l.message.contains(sig), "{}", l.message);
            }
            if let Some(l) = app_log_error(&format!("level=error {}", to_logfmt(&[("msg".into(), Val::Str(line.clone()))]))) {
                prop_assert!(!l.message.contains(sig), "{}", l.message);
            }
        }
    }
}

#[test]
fn a_known_token_is_redacted_in_every_field() {
    let t = "t1.9euelZqKj5KLi8-Yx5WWj8qNyJSOyO3rnpWakZ6YlJyTx5OVnsmQlJrNlZLt8_dGAFsL-e8hfCkc_d3z9_d3z9_d3z9.S0yW2lQeDoYkjDJXK7bhP_Fk6QyzvCJvoBGs3LpiGugtSNSu3ueMx9-JbnKgNchbxY0lz5sGi5C2rQ1Pf7dcCg";
    let line = format!("tskv\ttime=2026-11-25T14:00:00Z\tmethod={t}\tstatus=OK\trequest_id={t}\terror=bad token {t}\tlevel={t}\ttoken={t}");
    let r = parser(LogFormat::Tskv).parse(&line).unwrap();
    assert_eq!(r.error.as_deref(), Some("bad token <redacted>"));
    for s in [&r.method, &r.request_id, &r.level] {
        assert_eq!(s.as_deref(), Some("<redacted>"));
    }
}
