//! End-to-end tail throughput: append N access-log lines (~200 bytes) to a
//! real file, then time `Tailer::poll` until it has handed out all of them
//! (read + split + UTF-8 check + `Line` per line). Reported in lines/s.
//! `appended_to_applied` adds what the agent does with each line: parse and
//! normalize (tskv), turn it into a call event and apply it to the state.
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokenwatch::config::{Config, LogFormat};
use tokenwatch::events::{Event, LogKind};
use tokenwatch::format::LineParser;
use tokenwatch::sources::log_events::{call, ProcessCache};
use tokenwatch::sources::logs::{Start, TailOptions, Tailer};
use tokenwatch::state::{Settings, State};

const N: u64 = 10_000;
/// Start a fresh file (outside the timing) once it is this big.
const MAX_FILE: u64 = 256 << 20;

fn line(i: u64) -> String {
    let l = format!(
        "tskv\ttskv_format=token-agent-access\ttimestamp=2025-01-01T12:00:00.{:06}Z\tpid={}\tuid=1000\t\
         method=/yandex.cloud.priv.iam.v1.TokenAgent/GetToken\tstatus=OK\tduration_ms=3\trequest_id={:016x}",
        i % 1_000_000,
        1000 + i % 50,
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    );
    format!("{l:<199}\n")
}

fn tail(c: &mut Criterion) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("access.log");
    let block: String = (0..N).map(line).collect();
    let opts = || TailOptions { max_batch_bytes: 8 << 20, ..TailOptions::default() };
    let fresh = || -> Option<(File, Tailer)> {
        let f = OpenOptions::new().create(true).write(true).truncate(true).open(&path).ok()?;
        let mut t = Tailer::with_options(&path, LogKind::AccessLog, Start::Beginning, opts());
        t.poll();
        Some((f, t))
    };
    let Some(mut state) = fresh() else { return };

    let mut g = c.benchmark_group("tail");
    g.throughput(Throughput::Elements(N));
    g.measurement_time(Duration::from_secs(5));
    for apply in [false, true] {
        let id = if apply { "appended_to_applied" } else { "poll_200B_lines" };
        let parser = LineParser::new(LogFormat::Tskv, "|", &[]).expect("tskv parser");
        let mut st = State::new(Settings::from_config(&Config::default()));
        let mut procs = ProcessCache::default();
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if state.0.metadata().map(|m| m.len()).unwrap_or(0) > MAX_FILE {
                        if let Some(s) = fresh() {
                            state = s;
                        }
                    }
                    let (f, t) = &mut state;
                    if f.write_all(block.as_bytes()).is_err() {
                        return total;
                    }
                    let start = Instant::now();
                    let mut got = 0;
                    while got < N {
                        let lines = t.poll();
                        if lines.is_empty() {
                            break;
                        }
                        got += lines.len() as u64;
                        if apply {
                            for l in &lines {
                                if let Ok(r) = parser.parse(&l.text) {
                                    st.apply(&Event::Call(call(r, &mut procs)));
                                }
                            }
                        }
                    }
                    total += start.elapsed();
                    assert_eq!(got, N, "the tailer missed lines");
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, tail);
criterion_main!(benches);
