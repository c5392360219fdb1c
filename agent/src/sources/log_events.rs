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

use super::app_log::AppLogLines;
use super::backlog::{Backlog, Backlogged};
use super::log_notes::LineNotes;
use super::{logs, proc, Health};
use crate::{
    config::Config,
    events::{CallObserved, CallSource, Event, LogKind, LogPosition, Process},
    format::{app_log_error, LineParser, ParseError, Record},
};

#[cfg(test)]
mod tests;

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
/// window found by time; no window, at the end.
fn start(kind: LogKind, resume: Option<LogPosition>, window: Duration, parser: Arc<LineParser>) -> logs::Start {
    match resume {
        Some(p) => logs::Start::Resume(p),
        None if window.is_zero() => logs::Start::End,
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
    let path = cfg.token_agent.access_log.clone();
    // A record without a time of its own is dated when read: right while
    // following, wrong for one a first start reads back (it would make a
    // client look freshly refreshed). Those are counted, not applied.
    let mut backlog = Backlogged::new(if resume.is_none() { Backlog::of(&path) } else { None });
    let start = start(LogKind::AccessLog, resume, cfg.token_agent.backfill, parser.clone());
    let mut procs = ProcessCache::default();
    let parse = move |line: &logs::Line, out: &mut Vec<Event>| {
        let r = parser.parse_call(&line.text)?;
        if backlog.skip_undated(line, r.time.is_none(), "access-log records") {
            return Ok(());
        }
        out.push(Event::Call(call(r, &mut procs)));
        Ok(())
    };
    follow(path, LogKind::AccessLog, start, parse, out).await;
}

/// Follows the app log, sending token-agent's error lines (see
/// [`super::app_log`] for what a first start does with old ones).
pub async fn run_app_log(cfg: &Config, parser: LineParser, resume: Option<LogPosition>, out: LogOutput) {
    let path = cfg.token_agent.app_log.clone();
    // Errors older than error_window do not count: no need to read further back.
    let window = cfg.alert.error_window.min(cfg.token_agent.backfill);
    let mut errors = AppLogLines::new(if resume.is_none() { Backlog::of(&path) } else { None });
    let start = start(LogKind::AppLog, resume, window, Arc::new(parser));
    let parse = move |line: &logs::Line, out: &mut Vec<Event>| {
        out.extend(errors.event(line, SystemTime::now()).map(Event::AgentError));
        Ok(()) // every app-log line is "parsed"; only error lines become events
    };
    follow(path, LogKind::AppLog, start, parse, out).await;
}

/// Tails `path` with `parse`, counting each batch's lines once it is queued
/// and noting the first damaged or unparsed ones ([`LineNotes`]).
async fn follow<P>(path: PathBuf, kind: LogKind, start: logs::Start, mut parse: P, out: LogOutput)
where
    P: FnMut(&logs::Line, &mut Vec<Event>) -> Result<(), ParseError> + Send,
{
    let LogOutput { tx, lines, stop } = out;
    let health = lines.health.clone();
    let counted = move |parsed, unparsed| lines.count(kind, parsed, unparsed);
    let opts = logs::DriverOptions::default();
    let mut notes = LineNotes::new(kind, path.clone(), opts.tail.max_line);
    let parse = move |line: &logs::Line, out: &mut Vec<Event>| {
        let result = parse(line, out);
        notes.note(line, result.as_ref().err().map(|e| e as &dyn std::fmt::Display));
        result.is_ok()
    };
    let lines = logs::Lines { parse, counted, stop };
    let totals = logs::run_events(path, kind, start, opts, lines, tx, health.clone()).await;
    // the final totals (the driver publishes them after each poll too)
    health.set_tail_counters(&totals);
}

/// An access-log record as a call seen by `source="access_log"`.
pub fn call(r: Record, procs: &mut ProcessCache) -> CallObserved {
    let at = r.time.unwrap_or_else(SystemTime::now);
    let recent = SystemTime::now().duration_since(at).map_or(true, |age| age <= LIVE_ATTRIBUTION);
    let process = match r.pid {
        Some(pid) if recent => procs.describe(pid),
        // an old record (a backfill): its pid names the same process only if
        // that started before it — else the pid was reused, or it is gone;
        // attributed to it, an old refresh would make a stranger late
        Some(pid) if procs.started_at(pid).is_some_and(|s| s <= at) => procs.describe(pid),
        Some(_) | None => Process::default(),
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

/// /proc lookups per pid, reused for a minute: an access log can be busy,
/// and a backfill reads hours of it at once.
#[derive(Default)]
pub struct ProcessCache {
    described: HashMap<u32, (Instant, Process)>,
    started: HashMap<u32, (Instant, Option<SystemTime>)>,
}

impl ProcessCache {
    fn describe(&mut self, pid: u32) -> Process {
        cached(&mut self.described, pid, || proc::describe(pid, ""))
    }

    fn started_at(&mut self, pid: u32) -> Option<SystemTime> {
        cached(&mut self.started, pid, || proc::started_at(pid))
    }
}

fn cached<T: Clone>(map: &mut HashMap<u32, (Instant, T)>, pid: u32, look: impl FnOnce() -> T) -> T {
    if let Some((t, v)) = map.get(&pid) {
        if t.elapsed() < PROCESS_TTL {
            return v.clone();
        }
    }
    if map.len() > 4096 {
        map.clear();
    }
    let v = look();
    map.insert(pid, (Instant::now(), v.clone()));
    v
}
