//! `tokenwatch run`: wires sources → state → exports and stops cleanly.
use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::mpsc;

use crate::{
    config::Config,
    events::Event,
    export::{
        http,
        otlp::{OtlpTarget, Telemetry},
        signals::{SharedSnapshot, Signals},
    },
    events::LogKind,
    format::LineParser,
    sources::{
        ebpf,
        log_events::{self, LineCounter, LogOutput},
        proc, Health, SourceState,
    },
    state::{persist, Settings, SourcesSnapshot, State},
    statefile,
};

/// How often the verdict is re-evaluated without new events (thresholds pass with time).
const EVALUATE_EVERY: Duration = Duration::from_millis(500);
/// How often a failed eBPF source is retried.
const EBPF_RETRY: Duration = Duration::from_secs(30);
/// Bound of the event queue between sources and state; a full queue pushes
/// back on the ring buffer, where the kernel counts the loss.
const EVENT_QUEUE: usize = 8192;
/// How long the log sources get to finish their batch at a stop (of [`STOP_BUDGET`]).
const STOP_LOGS: Duration = Duration::from_millis(1500);
/// Token facts under `[state] dir`.
const FACTS_FILE: &str = "tokens.json";
/// How often changed token facts are written.
const PERSIST_EVERY: Duration = Duration::from_secs(5);
/// Exited clients are kept this long (their lost-token verdict outlives them).
const FORGET_EXITED: Duration = Duration::from_secs(3600);
/// The stop deadline of INTERFACE.md is 5 s; leave room for the rest.
/// The whole stop, from the signal to the exit (INTERFACE.md: ≤ 5 s): the
/// log sources' last batch, the state saved, the exports flushed.
pub const STOP_BUDGET: Duration = Duration::from_millis(4500);

/// Why `run` could not start (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Telemetry(#[from] crate::export::otlp::TelemetryError),
    #[error("cannot listen on {listen} ([http] listen): {source}")]
    Listen { listen: String, source: std::io::Error },
    #[error("bad token_agent log format settings: {0}")]
    LogFormat(String),
    #[error("eBPF is required ([ebpf] required = true) but cannot load: {0}")]
    EbpfRequired(ebpf::EbpfError),
}

struct Sources {
    ebpf: Health,
    access_log: Health,
    app_log: Health,
}

impl Sources {
    fn snapshot(&self) -> SourcesSnapshot {
        let log = |h: &Health| {
            let mut s = h.get();
            s.lines = Some(s.events);
            s
        };
        SourcesSnapshot { ebpf: self.ebpf.get(), access_log: log(&self.access_log), app_log: log(&self.app_log) }
    }
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(cfg: Config) -> Result<(), StartError> {
    let telemetry = Telemetry::init(&cfg)?;
    match &telemetry.target {
        OtlpTarget::Off(why) => tracing::info!("OTLP export off: {why}"),
        OtlpTarget::On { protocol, endpoint } => {
            tracing::info!("OTLP export on: {protocol:?} to {}", endpoint.as_deref().unwrap_or("OTEL_EXPORTER_OTLP_* endpoint"))
        }
    }
    let latest: SharedSnapshot = Arc::new(RwLock::new(None));
    let socket = cfg.token_agent.socket.display().to_string();
    let signals = Signals::new(&telemetry, &socket, latest.clone());

    let listener = if cfg.http.listen.is_empty() {
        None
    } else {
        Some(http::bind(&cfg.http.listen).await.map_err(|source| StartError::Listen {
            listen: cfg.http.listen.clone(),
            source,
        })?)
    };

    let sources = Sources {
        ebpf: Health::new(SourceState::Starting, "loading"),
        access_log: Health::new(SourceState::Starting, "starting"),
        app_log: Health::new(SourceState::Starting, "starting"),
    };
    // Facts first: the log sources resume from the positions saved with them.
    let mut owner = Owner::new(State::new(Settings::from_config(&cfg)), cfg.state.dir.join(FACTS_FILE));
    owner.restore();

    let (tx, mut rx) = mpsc::channel::<Event>(EVENT_QUEUE);
    let mut tasks = tokio::task::JoinSet::new();
    let (capture_hints, hints_rx) = tokio::sync::watch::channel(ebpf::CaptureHint::default());
    start_ebpf(&cfg, tx.clone(), sources.ebpf.clone(), hints_rx, &mut tasks)?;
    let (stop_logs, stop_rx) = tokio::sync::watch::channel(false);
    let mut log_tasks = tokio::task::JoinSet::new();
    start_logs(&cfg, &owner.state, &signals, &sources, tx, stop_rx, &mut log_tasks)?;

    if let Some(listener) = listener {
        tracing::info!("serving /metrics, /status, /healthz on http://{}", cfg.http.listen);
        tasks.spawn(http::serve(listener, http::router(telemetry.registry.clone(), latest.clone())));
    }

    tokio::select! {
        _ = owner.run(&mut rx, &signals, &sources, &latest, &capture_hints) => {}
        _ = shutdown_signal() => tracing::info!("stopping"),
    }
    // The logs stop between two batches (a batch half queued would be applied
    // in part now and again after a restart); the queue keeps draining
    // meanwhile, so a source waiting on a full queue gets through. Then the
    // other sources, then what they all queued: every line the logs counted
    // is applied and its position checkpointed before the state is saved.
    let stop_started = Instant::now();
    let _ = stop_logs.send(true);
    let logs_stopped = tokio::time::timeout(STOP_LOGS, async {
        loop {
            tokio::select! {
                done = log_tasks.join_next() => if done.is_none() { break },
                Some(ev) = rx.recv() => owner.apply(&ev, &signals),
            }
        }
    });
    if logs_stopped.await.is_err() {
        tracing::warn!("log sources did not stop within {STOP_LOGS:?}; stopping them mid-batch");
    }
    log_tasks.shutdown().await;
    tasks.shutdown().await;
    owner.drain(&mut rx, &signals);
    owner.persist();
    telemetry.shutdown(STOP_BUDGET.saturating_sub(stop_started.elapsed())).await;
    Ok(())
}

/// Starts following token-agent's access and app logs.
fn start_logs(
    cfg: &Config,
    state: &State,
    signals: &Signals,
    sources: &Sources,
    tx: mpsc::Sender<Event>,
    stop: tokio::sync::watch::Receiver<bool>,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<(), StartError> {
    let ta = &cfg.token_agent;
    let parser = || {
        let columns = ta.columns.clone().unwrap_or_default();
        LineParser::new(ta.log_format, ta.delimiter.as_deref().unwrap_or("|"), &columns)
            .map_err(|e| StartError::LogFormat(e.to_string()))
    };
    let counter = |health: &Health| LineCounter { counter: signals.log_lines(), health: health.clone() };
    let (access, app) = (counter(&sources.access_log), counter(&sources.app_log));
    let (c1, c2, tx2) = (cfg.clone(), cfg.clone(), tx.clone());
    let (p1, p2) = (parser()?, parser()?);
    let (r1, r2) = (state.log_position(LogKind::AccessLog).cloned(), state.log_position(LogKind::AppLog).cloned());
    let stop2 = stop.clone();
    let out1 = LogOutput { tx, lines: access, stop };
    let out2 = LogOutput { tx: tx2, lines: app, stop: stop2 };
    tasks.spawn(async move { log_events::run_access_log(&c1, p1, r1, out1).await });
    tasks.spawn(async move { log_events::run_app_log(&c2, p2, r2, out2).await });
    Ok(())
}

/// Starts the eBPF source (connects, and calls while capturing); `hints`
/// carries the state's next `refresh_at` and failing flag to its capture windows.
fn start_ebpf(
    cfg: &Config,
    tx: mpsc::Sender<Event>,
    health: Health,
    hints: tokio::sync::watch::Receiver<ebpf::CaptureHint>,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<(), StartError> {
    if !cfg.ebpf.enabled {
        health.set(SourceState::Disabled, "[ebpf] enabled = false");
        return Ok(());
    }
    let socket = cfg.token_agent.socket.clone();
    let settings = ebpf::Settings::from_config(cfg);
    if cfg.ebpf.required {
        let source = ebpf::EbpfSource::load_with(&socket, settings).map_err(StartError::EbpfRequired)?;
        tasks.spawn(source.run_with(tx, health, hints));
    } else {
        tasks.spawn(ebpf::run_with_retry(socket, settings, tx, health, hints, EBPF_RETRY));
    }
    Ok(())
}

/// The single owner of the state: applies events, records signals,
/// publishes snapshots, watches client processes and persists token facts.
struct Owner {
    state: State,
    facts_path: PathBuf,
    persisted: u64,
    last_persist: Instant,
}

impl Owner {
    fn new(state: State, facts_path: PathBuf) -> Self {
        Self { state, facts_path, persisted: 0, last_persist: Instant::now() }
    }

    fn restore(&mut self) {
        let bytes = match statefile::read(&self.facts_path) {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => return tracing::warn!("cannot read {}: {e}; starting without token facts", self.facts_path.display()),
        };
        match serde_json::from_slice::<persist::Facts>(&bytes) {
            Ok(f) => {
                let n = self.state.restore(&f, proc::same_process);
                tracing::info!("restored token facts of {n} running client(s) from {}", self.facts_path.display());
            }
            Err(e) => tracing::warn!("ignoring {}: not a facts file of this version ({e})", self.facts_path.display()),
        }
        self.persisted = self.state.generation();
    }

    /// Writes the facts when they changed (at most once per PERSIST_EVERY, and at stop).
    fn persist(&mut self) {
        if self.state.generation() == self.persisted {
            return;
        }
        let bytes = match serde_json::to_vec_pretty(&self.state.facts()) {
            Ok(b) => b,
            Err(e) => return tracing::error!("encoding token facts: {e}"),
        };
        match statefile::write_atomic(&self.facts_path, &bytes) {
            Ok(()) => self.persisted = self.state.generation(),
            Err(e) => tracing::warn!("cannot write {}: {e}; will retry", self.facts_path.display()),
        }
        self.last_persist = Instant::now();
    }

    /// Applies every event still queued (the sources have stopped).
    fn drain(&mut self, rx: &mut mpsc::Receiver<Event>, signals: &Signals) {
        let mut n = 0usize;
        while let Ok(ev) = rx.try_recv() {
            self.apply(&ev, signals);
            n += 1;
        }
        tracing::debug!(events = n, "applied the queued events before stopping");
    }

    async fn run(
        &mut self,
        rx: &mut mpsc::Receiver<Event>,
        signals: &Signals,
        sources: &Sources,
        latest: &SharedSnapshot,
        hints: &tokio::sync::watch::Sender<ebpf::CaptureHint>,
    ) {
        let mut tick = tokio::time::interval(EVALUATE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut open = true;
        loop {
            tokio::select! {
                ev = rx.recv(), if open => match ev {
                    Some(ev) => {
                        self.apply(&ev, signals);
                        // drain what is already queued before evaluating once
                        while let Ok(ev) = rx.try_recv() {
                            self.apply(&ev, signals);
                        }
                    }
                    // every source stopped; keep evaluating: thresholds pass with time
                    None => open = false,
                },
                _ = tick.tick() => self.watch_exits(signals),
            }
            self.publish(sources, latest);
            let overdue_max = ebpf::WindowPolicy::default().refresh_overdue_max;
            let (next_refresh_at, failing) = self.state.capture_inputs(SystemTime::now(), overdue_max);
            hints.send_if_modified(|h| {
                let new = ebpf::CaptureHint { next_refresh_at, failing };
                let changed = *h != new;
                *h = new;
                changed
            });
            if self.last_persist.elapsed() >= PERSIST_EVERY {
                self.persist();
            }
        }
    }

    fn apply(&mut self, ev: &Event, signals: &Signals) {
        self.state.apply(ev);
        signals.record(ev);
    }

    /// A client that exited or exec'd has lost its in-memory token.
    fn watch_exits(&mut self, signals: &Signals) {
        let now = SystemTime::now();
        for (pid, exe) in self.state.live_clients() {
            if !proc::same_process(pid, exe.as_deref()) {
                self.apply(&Event::ProcessExit { pid, at: now }, signals);
            }
        }
        self.state.forget_exited(now, FORGET_EXITED);
    }

    fn publish(&self, sources: &Sources, latest: &SharedSnapshot) {
        let mut snap = self.state.evaluate(SystemTime::now());
        snap.sources = sources.snapshot();
        *latest.write().unwrap_or_else(|p| p.into_inner()) = Some(snap);
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        },
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM ({e}); stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
