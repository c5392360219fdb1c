//! The log sources end to end on real files: where a first start begins,
//! what the app log's catch-up applies, what damaged lines leave behind.
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tracing::instrument::WithSubscriber;

use super::*;
use crate::config::LogFormat;
use crate::sources::{LogDamage, SourceState};

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).expect("open");
    f.write_all(bytes).expect("write");
}

/// A running log source: its events, its health, and its stop.
struct Source {
    rx: mpsc::Receiver<Event>,
    health: Health,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn spawn(kind: LogKind, cfg: Config, logged: Option<Logged>) -> Source {
    let parser = LineParser::new(LogFormat::Auto, "|", &[]).expect("parser");
    spawn_with(kind, cfg, parser, logged)
}

fn spawn_with(kind: LogKind, cfg: Config, parser: LineParser, logged: Option<Logged>) -> Source {
    let (tx, rx) = mpsc::channel(64);
    let (stop, stop_rx) = watch::channel(false);
    let health = Health::new(SourceState::Starting, "");
    let lines = LineCounter { counter: opentelemetry::global::meter("test").u64_counter("lines").build(), health: health.clone() };
    let out = LogOutput { tx, lines, stop: stop_rx };
    let run = async move {
        match kind {
            LogKind::AccessLog => run_access_log(&cfg, parser, None, out).await,
            LogKind::AppLog => run_app_log(&cfg, parser, None, out).await,
        }
    };
    let task = match logged {
        Some(l) => tokio::spawn(run.with_subscriber(l.subscriber())),
        None => tokio::spawn(run),
    };
    Source { rx, health, stop, task }
}

impl Source {
    /// Events until the position reaches `offset` (everything up to there applied).
    async fn until_offset(&mut self, offset: u64) -> Vec<Event> {
        let mut got = Vec::new();
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), self.rx.recv()).await.expect("an event").expect("open");
            let done = matches!(&ev, Event::LogPosition(p) if p.offset >= offset);
            got.push(ev);
            if done {
                return got;
            }
        }
    }

    async fn stop(self) -> Health {
        self.stop.send(true).expect("source alive");
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("stops").expect("no panic");
        self.health
    }
}

fn errors(events: &[Event]) -> Vec<(String, SystemTime)> {
    events.iter().filter_map(|e| if let Event::AgentError(a) = e { Some((a.message.clone(), a.at)) } else { None }).collect()
}

#[test]
fn no_backfill_window_starts_at_the_end() {
    let p = Arc::new(LineParser::new(LogFormat::Auto, "|", &[]).expect("parser"));
    assert!(matches!(start(LogKind::AccessLog, None, Duration::ZERO, p.clone()), logs::Start::End));
    assert!(matches!(start(LogKind::AccessLog, None, Duration::from_secs(60), p), logs::Start::Backfill { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backfill_window_is_the_configured_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    let now = unix(SystemTime::now());
    let text = format!("time={} status=OK request_id=old\ntime={} status=OK request_id=recent\n", now - 7200, now - 1800);
    append(&path, text.as_bytes());
    let mut cfg = Config::default();
    cfg.token_agent.access_log = path;
    cfg.token_agent.backfill = Duration::from_secs(3600);
    let mut src = spawn(LogKind::AccessLog, cfg, None);
    let events = src.until_offset(text.len() as u64).await;
    let ids: Vec<_> =
        events.iter().filter_map(|e| if let Event::Call(c) = e { c.request_id.as_deref() } else { None }).collect();
    assert_eq!(ids, ["recent"], "a 1 h backfill skips the record of 2 h ago");
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_does_not_report_old_undated_app_log_errors_as_current() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.log");
    let recent = unix(SystemTime::now()) - 60;
    let glog = |msg: &str| format!("E1125 14:00:00.123456 1234 main.go:10] {msg}\n");
    // glog lines carry no year: the first start cannot tell their age
    let text = format!("time={recent} level=error msg=\"dated, a minute ago\"\n{}", glog("undated, of some day"));
    append(&path, text.as_bytes());
    let mut cfg = Config::default();
    cfg.token_agent.app_log = path.clone();
    let mut src = spawn(LogKind::AppLog, cfg, None);
    let caught_up = src.until_offset(text.len() as u64).await;
    let written = SystemTime::now();
    let new = glog("undated, written after the start");
    append(&path, new.as_bytes());
    let after = src.until_offset((text.len() + new.len()) as u64).await;
    let got = errors(&caught_up);
    let dated = ("dated, a minute ago".to_string(), UNIX_EPOCH + Duration::from_secs(recent));
    assert_eq!(got, [dated], "a known time counts; an undated line of before the start does not");
    let got = errors(&after);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].0 == "undated, written after the start" && got[0].1 >= written, "{got:?}");
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_applies_no_undated_access_log_record_of_before_it() {
    // a delimited layout without a time column: records carry no time
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    let old = "1234|OK|r-old\n";
    append(&path, old.as_bytes());
    let mut cfg = Config::default();
    cfg.token_agent.access_log = path.clone();
    let columns = ["pid", "status", "request_id"].map(String::from);
    let parser = LineParser::new(LogFormat::Delimited, "|", &columns).expect("parser");
    let mut src = spawn_with(LogKind::AccessLog, cfg, parser, None);
    let caught_up = src.until_offset(old.len() as u64).await;
    let new = "1234|OK|r-new\n";
    append(&path, new.as_bytes());
    let after = src.until_offset((old.len() + new.len()) as u64).await;
    let ids = |evs: &[Event]| -> Vec<String> {
        evs.iter().filter_map(|e| if let Event::Call(c) = e { c.request_id.clone() } else { None }).collect()
    };
    assert_eq!(ids(&caught_up), Vec::<String>::new(), "an undated record of before the start would look like a refresh now");
    assert_eq!(ids(&after), ["r-new"]);
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_record_is_attributed_only_to_a_process_that_ran_then() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    let now = unix(SystemTime::now());
    // this test process started seconds ago: an hour-old record naming its pid
    // was another process's (the pid was reused); pid 1 has run since boot
    let init_started = unix(crate::sources::proc::started_at(1).expect("pid 1"));
    let text = format!(
        "time={} status=OK pid={} request_id=reused\ntime={} status=OK pid=1 request_id=init\n",
        now - 3600,
        std::process::id(),
        init_started + 1,
    );
    append(&path, text.as_bytes());
    let mut cfg = Config::default();
    cfg.token_agent.access_log = path;
    cfg.token_agent.backfill = Duration::from_secs(now - init_started + 3600);
    let mut src = spawn(LogKind::AccessLog, cfg, None);
    let events = src.until_offset(text.len() as u64).await;
    let pids: Vec<(String, u32)> = events
        .iter()
        .filter_map(|e| if let Event::Call(c) = e { Some((c.request_id.clone()?, c.process.pid)) } else { None })
        .collect();
    assert_eq!(pids, [("reused".to_string(), 0), ("init".to_string(), 1)]);
    src.stop().await;
}

/// Captures what a future logs (the log sources log from their own task).
#[derive(Clone, Default)]
struct Logged(Arc<Mutex<Vec<u8>>>);

impl Logged {
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        let out = self.clone();
        tracing_subscriber::fmt().with_ansi(false).with_writer(move || out.clone()).finish()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl Write for Logged {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_lines_are_logged_once_and_counted_in_the_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("access.log");
    let now = unix(SystemTime::now());
    let secret = "t1.SECRET";
    let mut text = Vec::new();
    for i in 0..2 {
        text.extend(format!("time={now} status=OK request_id=cut{i} error={secret}").bytes());
        text.extend(std::iter::repeat_n(b'x', 70_000));
        text.extend(format!("\ntime={now} status=OK error=").bytes());
        text.push(0xff);
        text.extend(format!("{secret}\ntime=").bytes());
        text.extend([0xfe, b'\n']);
        text.extend(format!("not a record {secret}\nmethod=GetToken pid=7\n").bytes());
    }
    append(&path, &text);
    let mut cfg = Config::default();
    cfg.token_agent.access_log = path;
    let logged = Logged::default();
    let mut src = spawn(LogKind::AccessLog, cfg, Some(logged.clone()));
    let events = src.until_offset(text.len() as u64).await;
    let calls = events.iter().filter(|e| matches!(e, Event::Call(_))).count();
    assert_eq!(calls, 4, "the cut lines' first 64 KiB and the lossily decoded lines are calls");
    let health = src.stop().await;

    let log = logged.text();
    assert!(!log.contains(secret), "a line's content leaked: {log}");
    for what in ["cut", "invalid UTF-8", "unparsed"] {
        let n = log.lines().filter(|l| l.contains("WARN") && l.contains(&format!("first {what} line"))).count();
        assert_eq!(n, 1, "{what}: {log}");
    }
    let first_cut_end = 70_000 + format!("time={now} status=OK request_id=cut0 error={secret}").len() as u64 + 1;
    assert!(log.contains(&format!("end_offset={first_cut_end}")), "{log}");

    let status = health.get();
    assert_eq!(status.unparsed, 6, "two each of: \"time=\\xfe\", no format, method only");
    assert_eq!(status.damage, Some(LogDamage { cut: 2, invalid_utf8: 4, nul_bytes_skipped: 0, checkpoints_discarded: 0 }));
    let json = serde_json::to_value(&status).expect("json");
    assert_eq!((json["cut"].as_u64(), json["invalid_utf8"].as_u64(), json["unparsed"].as_u64()), (Some(2), Some(4), Some(6)));
    assert_eq!(json["nul_bytes_skipped"].as_u64(), Some(0));
}
