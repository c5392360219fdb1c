//! The async driver: polls a [`Tailer`] when inotify says something changed
//! (or every `fallback_poll`), sends each poll's lines as one [`Batch`] and
//! keeps the source's [`Health`] up to date.
//!
//! ```ignore
//! let (tx, mut rx) = tokio::sync::mpsc::channel(8);
//! tokio::spawn(logs::run(path, LogKind::AccessLog, start, DriverOptions::default(), tx, health));
//! while let Some(batch) = rx.recv().await {
//!     for line in &batch.lines { /* parse, send Event::Call … */ }
//!     if let Some(p) = batch.position() { /* send Event::LogPosition(p) */ }
//! }
//! ```
//! or [`run_events`], which does exactly that with a parser closure.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use super::watch::DirWatch;
use super::{Batch, Counters, Line, Start, TailOptions, TailStatus, Tailer};
use crate::events::{Event, LogKind};
use crate::sources::{Health, SourceState};

#[derive(Debug, Clone)]
pub struct DriverOptions {
    pub tail: TailOptions,
    /// Poll at least this often, inotify or not.
    pub fallback_poll: Duration,
    /// After a wakeup, wait this long so a burst of writes is one batch.
    pub coalesce: Duration,
}

impl Default for DriverOptions {
    fn default() -> Self {
        Self {
            tail: TailOptions::default(),
            fallback_poll: Duration::from_secs(1),
            coalesce: Duration::from_millis(10),
        }
    }
}

/// Tails `path` until the receiver of `tx` is dropped; returns the counters.
/// File I/O runs on the blocking pool.
pub async fn run(
    path: PathBuf,
    kind: LogKind,
    start: Start,
    opts: DriverOptions,
    tx: mpsc::Sender<Batch>,
    health: Health,
) -> Counters {
    let wake = Arc::new(Notify::new());
    let mut watch = DirWatch::new(wake.clone());
    let mut tailer = Tailer::with_options(path.clone(), kind, start, opts.tail.clone());
    let mut shown = None;
    let mut sent = None;
    loop {
        watch.ensure(&path);
        let polled = tokio::task::spawn_blocking(move || {
            let lines = tailer.poll();
            (tailer, lines)
        })
        .await;
        let lines;
        (tailer, lines) = match polled {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "log: tail task failed");
                health.set(SourceState::Failed, format!("tailing {} failed: {e}", path.display()));
                return Counters::default();
            }
        };
        if shown.as_ref() != Some(tailer.status()) {
            let s = tailer.status().clone();
            health.set(state_of(&s), s.describe(&path));
            shown = Some(s);
        }
        health.set_tail_counters(&tailer.counters());
        let position = tailer.position();
        if !lines.is_empty() || (position.is_some() && position != sent) {
            health.add_events(lines.len() as u64);
            sent.clone_from(&position);
            if tx.send(Batch { kind, lines, position }).await.is_err() {
                return tailer.counters();
            }
        }
        if tailer.has_more() {
            continue;
        }
        let wait = match tailer.status() {
            TailStatus::Draining { .. } => {
                (opts.tail.rotate_grace / 4).clamp(Duration::from_millis(10), opts.fallback_poll)
            }
            _ => opts.fallback_poll,
        };
        tokio::select! {
            _ = wake.notified() => tokio::time::sleep(opts.coalesce).await,
            _ = tokio::time::sleep(wait) => {}
            _ = tx.closed() => return tailer.counters(),
        }
    }
}

/// What [`run_events`] does with the lines: `parse` pushes a line's events
/// and says whether it parsed; `counted(parsed, unparsed)` learns a batch's
/// lines once its events and position are all queued — never before, so a
/// stop that drains the queue (the agent's) has applied and checkpointed
/// every line it counted, and a restart does not count them again. `stop`
/// turning true ends the source between two batches, never inside one.
pub struct Lines<P, C> {
    pub parse: P,
    pub counted: C,
    pub stop: tokio::sync::watch::Receiver<bool>,
}

/// [`run`] with a parser plugged in: for each line, `parse` pushes the
/// events it yields; after each batch an [`Event::LogPosition`] follows, so
/// the state owner can checkpoint once it has applied them. A parser that
/// holds lines back (multi-line records) must not let the position pass
/// lines it has not emitted yet. Returns when `events` is closed or on stop.
pub async fn run_events<P, C>(
    path: PathBuf,
    kind: LogKind,
    start: Start,
    opts: DriverOptions,
    lines: Lines<P, C>,
    events: mpsc::Sender<Event>,
    health: Health,
) -> Counters
where
    P: FnMut(&Line, &mut Vec<Event>) -> bool + Send,
    C: FnMut(u64, u64) + Send,
{
    let Lines { mut parse, mut counted, mut stop } = lines;
    let (tx, mut rx) = mpsc::channel::<Batch>(4);
    let forward = async move {
        let mut out = Vec::new();
        loop {
            let stopped = async {
                // a dropped sender is not a stop
                if stop.wait_for(|s| *s).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let batch = tokio::select! {
                biased;
                () = stopped => return,
                batch = rx.recv() => match batch {
                    Some(b) => b,
                    None => return,
                },
            };
            let mut parsed = 0;
            for line in &batch.lines {
                parsed += u64::from(parse(line, &mut out));
            }
            out.extend(batch.position().map(Event::LogPosition));
            for ev in out.drain(..) {
                if events.send(ev).await.is_err() {
                    return;
                }
            }
            counted(parsed, batch.lines.len() as u64 - parsed);
        }
    };
    let (counters, ()) = tokio::join!(run(path, kind, start, opts, tx, health), forward);
    counters
}

fn state_of(s: &TailStatus) -> SourceState {
    match s {
        TailStatus::Following { .. } | TailStatus::Draining { .. } => SourceState::Running,
        TailStatus::Starting | TailStatus::FileMissing | TailStatus::DirMissing => SourceState::Starting,
        TailStatus::NotAFile | TailStatus::Unreadable { .. } => SourceState::Failed,
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::events::AgentError;

    fn opts() -> DriverOptions {
        DriverOptions {
            tail: TailOptions { rotate_grace: Duration::ZERO, ..TailOptions::default() },
            ..Default::default()
        }
    }

    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waits_for_a_missing_directory_then_follows_and_reports_health() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("d/access.log");
        let health = Health::new(SourceState::Starting, "");
        let (tx, mut rx) = mpsc::channel(8);
        let task = tokio::spawn(run(path.clone(), LogKind::AccessLog, Start::End, opts(), tx, health.clone()));
        until("a missing-directory status", || health.get().detail.ends_with("directory does not exist")).await;
        assert_eq!(health.get().state, SourceState::Starting);
        std::fs::create_dir(root.path().join("d")).expect("mkdir");
        std::fs::write(&path, b"a\n").expect("write");
        let batch = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a batch").expect("open");
        assert_eq!(batch.lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(), ["a"]);
        assert_eq!(batch.position().map(|p| p.offset), Some(2));
        let status = health.get();
        assert_eq!((status.state, status.events), (SourceState::Running, 1));
        assert!(status.detail.starts_with("following "), "{}", status.detail);
        drop(rx);
        let counters = tokio::time::timeout(Duration::from_secs(10), task).await.expect("stops").expect("task");
        assert_eq!(counters.lines, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_events_sends_parsed_events_then_the_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        std::fs::write(&path, b"error: one\nfine\nerror: two\n").expect("write");
        let (tx, mut rx) = mpsc::channel(8);
        let parse = |l: &Line, out: &mut Vec<Event>| {
            if let Some(m) = l.text.strip_prefix("error: ") {
                out.push(Event::AgentError(AgentError { at: SystemTime::UNIX_EPOCH, message: m.to_string() }));
            }
            l.text != "fine"
        };
        let health = Health::new(SourceState::Starting, "");
        let (counts_tx, mut counts) = mpsc::unbounded_channel();
        let counted = move |parsed, unparsed| counts_tx.send((parsed, unparsed)).expect("test alive");
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let lines = Lines { parse, counted, stop };
        let task = tokio::spawn(run_events(path, LogKind::AppLog, Start::Beginning, opts(), lines, tx, health));
        let mut got = Vec::new();
        while got.len() < 3 {
            got.push(tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("an event").expect("open"));
        }
        let messages: Vec<_> = got
            .iter()
            .filter_map(|e| if let Event::AgentError(a) = e { Some(a.message.as_str()) } else { None })
            .collect();
        assert_eq!(messages, ["one", "two"]);
        match &got[2] {
            Event::LogPosition(p) => assert_eq!((p.kind, p.offset), (LogKind::AppLog, 27)),
            other => panic!("expected the position last, got {other:?}"),
        }
        // counted once the batch is queued: two lines parsed, one not
        let c = tokio::time::timeout(Duration::from_secs(10), counts.recv()).await.expect("counted").expect("open");
        assert_eq!(c, (2, 1));
        // a stop ends the source (between batches) although `events` is open
        stop_tx.send(true).expect("source alive");
        // (the test still holds the receiver: only the stop can end it)
        tokio::time::timeout(Duration::from_secs(10), task).await.expect("stopped").expect("no panic");
    }
}
