//! Access-log parsing throughput: ~10 MB of realistic lines per format, in
//! memory. `split_lines` (memchr only) is the ceiling the parsers are
//! measured against; goal: tskv and logfmt ≥ 25 % of it, json ≥ 10 %.
use std::borrow::Cow;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use memchr::memchr_iter;
use tokenwatch::config::LogFormat;
use tokenwatch::format::LineParser;

const SIZE: usize = 10 << 20;
const METHOD: &str = "/yandex.cloud.priv.iam.v1.TokenAgent/GetToken";
const DELIMITED_COLUMNS: [&str; 9] =
    ["time", "pid", "uid", "gid", "method", "status", "duration", "request_id", "error"];

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One call's fields, shared by every format's writer.
struct Call {
    time: String,
    pid: u64,
    uid: u64,
    status: &'static str,
    duration_us: u64,
    request_id: String,
    error: Option<&'static str>,
}

fn call(rng: &mut Rng, i: u64) -> Call {
    let t = 1_795_615_200_000 + i * 37;
    let (secs, ms) = (t / 1000 % 86_400, t % 1000);
    let failed = rng.below(20) == 0;
    Call {
        time: format!("2026-11-25T{:02}:{:02}:{:02}.{ms:03}Z", secs / 3600, secs / 60 % 60, secs % 60),
        pid: 1000 + rng.below(60_000),
        uid: [0, 0, 1000, 1001][rng.below(4) as usize],
        status: if failed { "UNAVAILABLE" } else { "OK" },
        duration_us: 200 + rng.below(20_000),
        request_id: format!("{:016x}-{:08x}", rng.next(), rng.next() as u32),
        error: failed.then_some("rpc error: code = Unavailable desc = iam endpoint unreachable"),
    }
}

fn line(format: LogFormat, c: &Call) -> String {
    let ms = format!("{}.{:03}", c.duration_us / 1000, c.duration_us % 1000);
    match format {
        LogFormat::Tskv => {
            let mut l = format!(
                "tskv\ttskv_format=yc-token-agent-access\ttimestamp={}\tmethod={METHOD}\tstatus={}\tduration={ms}ms\tpid={}\tuid={}\tgid={}\trequest_id={}\tpeer=unix\ttag=compute",
                c.time, c.status, c.pid, c.uid, c.uid, c.request_id
            );
            if let Some(e) = c.error {
                l.push_str(&format!("\terror={}", e.replace('=', "\\=")));
            }
            l
        }
        LogFormat::Json => {
            let mut l = format!(
                r#"{{"ts":"{}","level":"info","grpc_method":"{METHOD}","grpc_code":"{}","duration_ms":{ms},"pid":{},"uid":{},"gid":{},"request_id":"{}","peer":"unix","tag":"compute""#,
                c.time, c.status, c.pid, c.uid, c.uid, c.request_id
            );
            if let Some(e) = c.error {
                l.push_str(&format!(r#","error":"{e}""#));
            }
            l + "}"
        }
        LogFormat::Logfmt => {
            let mut l = format!(
                "time={} level=info method={METHOD} status={} duration={ms}ms pid={} uid={} gid={} request_id={} peer=unix tag=compute",
                c.time, c.status, c.pid, c.uid, c.uid, c.request_id
            );
            if let Some(e) = c.error {
                l.push_str(&format!(" error=\"{e}\""));
            }
            l
        }
        _ => format!(
            "{}|{}|{}|{}|{METHOD}|{}|{ms}ms|{}|{}",
            c.time,
            c.pid,
            c.uid,
            c.uid,
            c.status,
            c.request_id,
            c.error.unwrap_or("-")
        ),
    }
}

fn generate(format: LogFormat) -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut buf = String::with_capacity(SIZE + 1024);
    let mut i = 0;
    while buf.len() < SIZE {
        buf.push_str(&line(format, &call(&mut rng, i)));
        buf.push('\n');
        i += 1;
    }
    buf.into_bytes()
}

/// Calls `f` with each line (without `\n`): the split every parser pays for.
fn for_each_line(buf: &[u8], mut f: impl FnMut(&[u8])) {
    let mut start = 0;
    for nl in memchr_iter(b'\n', buf) {
        f(&buf[start..nl]);
        start = nl + 1;
    }
    if start < buf.len() {
        f(&buf[start..]);
    }
}

/// Parse + normalize every line, as the access-log source does: validated
/// UTF-8, decoded lossily only when invalid (`sources::logs::file`).
fn parse_all(parser: &LineParser, buf: &[u8]) -> usize {
    let mut parsed = 0;
    for_each_line(buf, |raw| {
        let line: Cow<str> = match std::str::from_utf8(raw) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(raw),
        };
        if let Ok(r) = parser.parse(&line) {
            parsed += 1;
            black_box(r);
        }
    });
    parsed
}

fn bench(c: &mut Criterion) {
    let columns: Vec<String> = DELIMITED_COLUMNS.iter().map(|s| s.to_string()).collect();
    let mut group = c.benchmark_group("parse");
    group.sample_size(10);

    let tskv = generate(LogFormat::Tskv);
    group.throughput(Throughput::Bytes(tskv.len() as u64));
    group.bench_function("split_lines", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for_each_line(black_box(&tskv), |l| n += black_box(l).len());
            n
        })
    });

    for (id, format) in [
        ("tskv", LogFormat::Tskv),
        ("json", LogFormat::Json),
        ("logfmt", LogFormat::Logfmt),
        ("delimited", LogFormat::Delimited),
    ] {
        let buf = generate(format);
        let parser = LineParser::new(format, "|", &columns).expect("valid layout");
        let lines = memchr_iter(b'\n', &buf).count();
        assert_eq!(parse_all(&parser, &buf), lines, "{id}: every generated line parses");
        group.throughput(Throughput::Bytes(buf.len() as u64));
        group.bench_function(id, |b| b.iter(|| parse_all(&parser, black_box(&buf))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
