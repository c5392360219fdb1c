//! token-agent's two logs as events: access-log records become calls seen
//! by `source="access_log"`, app-log error lines become token-agent errors.
//! The tailing itself (rotation, checkpoints) is [`super::logs`].
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use opentelemetry::{metrics::Counter, KeyValue};
use tokio::sync::{mpsc, watch};

use super::{logs, proc, Health};
use crate::{
    config::Config,
    events::{AgentError, CallObserved, CallSource, Event, LogKind, LogPosition, Process},
    format::{app_log_error, LineParser, Record},
};

/// First start without a checkpoint: how far back the access log is read.
pub const BACKFILL: Duration = Duration::from_secs(12 * 3600);
/// Records older than this are not attributed through /proc: the pid may
/// belong to another process by now.
const LIVE_ATTRIBUTION: Duration = Duration::from_secs(300);
/// How long a pid's /proc description is reused.
const PROCESS_TTL: Duration = Duration::from_secs(60);

/// Counts lines per file and result (`tokenwatch.log.lines`) and in `/status`.
#[derive(Clone)]
pub struct LineCounter {
    pub counter: Counter<u64>,
    pub health: Health,
}

impl LineCounter {
    /// A batch's lines, once its events are queued for the state (see
    /// [`logs::run_events`]).
    fn count(&self, kind: LogKind, parsed: u64, unparsed: u64) {
        for (n, result) in [(parsed, "parsed"), (unparsed, "unparsed")] {
            if n > 0 {
                self.counter.add(n, &[KeyValue::new("file", kind.as_str()), KeyValue::new("result", result)]);
            }
        }
        if unparsed > 0 {
            self.health.add_unparsed(unparsed);
        }
    }
}

/// Where a log resumes: the applied position, else (first start) a backfill
/// window found by time.
fn start(kind: LogKind, resume: Option<LogPosition>, window: Duration, parser: Arc<LineParser>) -> logs::Start {
    match resume {
        Some(p) => logs::Start::Resume(p),
        None => logs::Start::Backfill {
            window,
            now: SystemTime::now(),
            time_of: Arc::new(move |l: &str| match kind {
                LogKind::AccessLog => parser.parse(l).ok()?.time,
                LogKind::AppLog => app_log_error(l).and_then(|a| a.time),
            }),
        },
    }
}

/// Where a log source's events and line counts go, and when it stops
/// (between two batches).
pub struct LogOutput {
    pub tx: mpsc::Sender<Event>,
    pub lines: LineCounter,
    pub stop: watch::Receiver<bool>,
}

/// Follows the access log, sending a call per record.
pub async fn run_access_log(cfg: &Config, parser: LineParser, resume: Option<LogPosition>, out: LogOutput) {
    let parser = Arc::new(parser);
    let start = start(LogKind::AccessLog, resume, BACKFILL, parser.clone());
    let mut procs = ProcessCache::default();
    let parse = move |line: &logs::Line, out: &mut Vec<Event>| match parser.parse(&line.text) {
        Ok(r) if r.time.is_some() || r.status.is_some() => {
            out.push(Event::Call(call(r, &mut procs)));
            true
        }
        _ => false,
    };
    follow(cfg.token_agent.access_log.clone(), LogKind::AccessLog, start, parse, out).await;
}

/// Follows the app log, sending token-agent's error lines.
pub async fn run_app_log(cfg: &Config, parser: LineParser, resume: Option<LogPosition>, out: LogOutput) {
    let start = start(LogKind::AppLog, resume, cfg.alert.error_window, Arc::new(parser));
    let parse = move |line: &logs::Line, out: &mut Vec<Event>| {
        if let Some(e) = app_log_error(&line.text) {
            out.push(Event::AgentError(AgentError { at: e.time.unwrap_or_else(SystemTime::now), message: e.message }));
        }
        true // every app-log line is "parsed"; only error lines become events
    };
    follow(cfg.token_agent.app_log.clone(), LogKind::AppLog, start, parse, out).await;
}

/// Tails `path` with `parse`, counting each batch's lines once it is queued.
async fn follow<P>(path: PathBuf, kind: LogKind, start: logs::Start, parse: P, out: LogOutput)
where
    P: FnMut(&logs::Line, &mut Vec<Event>) -> bool + Send,
{
    let LogOutput { tx, lines, stop } = out;
    let health = lines.health.clone();
    let counted = move |parsed, unparsed| lines.count(kind, parsed, unparsed);
    let lines = logs::Lines { parse, counted, stop };
    logs::run_events(path, kind, start, Default::default(), lines, tx, health).await;
}

/// An access-log record as a call seen by `source="access_log"`.
pub fn call(r: Record, procs: &mut ProcessCache) -> CallObserved {
    let at = r.time.unwrap_or_else(SystemTime::now);
    let recent = SystemTime::now().duration_since(at).map_or(true, |age| age <= LIVE_ATTRIBUTION);
    let process = match r.pid {
        Some(pid) if recent => procs.describe(pid),
        Some(pid) => Process { pid, ..Default::default() },
        None => Process::default(),
    };
    CallObserved {
        source: CallSource::AccessLog,
        at,
        duration: r.duration,
        process,
        uid: r.uid,
        method: r.method,
        status: r.status,
        expires_at: r.expires_at,
        request_id: r.request_id,
        error: r.error,
    }
}

/// /proc lookups per pid, reused for a minute: an access log can be busy.
#[derive(Default)]
pub struct ProcessCache(HashMap<u32, (Instant, Process)>);

impl ProcessCache {
    fn describe(&mut self, pid: u32) -> Process {
        if let Some((t, p)) = self.0.get(&pid) {
            if t.elapsed() < PROCESS_TTL {
                return p.clone();
            }
        }
        if self.0.len() > 4096 {
            self.0.clear();
        }
        let p = proc::describe(pid, "");
        self.0.insert(pid, (Instant::now(), p.clone()));
        p
    }
}
