//! `tokenwatch run`: wires sources → state → exports and stops cleanly.
use std::{
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
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
    sources::{ebpf, Health, SourceState},
    state::{Settings, SourcesSnapshot, State},
};

/// How often the verdict is re-evaluated without new events (thresholds pass with time).
const EVALUATE_EVERY: Duration = Duration::from_millis(500);
/// How often a failed eBPF source is retried.
const EBPF_RETRY: Duration = Duration::from_secs(30);
/// Bound of the event queue between sources and state; a full queue pushes
/// back on the ring buffer, where the kernel counts the loss.
const EVENT_QUEUE: usize = 8192;
/// The stop deadline of INTERFACE.md is 5 s; leave room for the rest.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(4);

/// Why `run` could not start (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Telemetry(#[from] crate::export::otlp::TelemetryError),
    #[error("cannot listen on {listen} ([http] listen): {source}")]
    Listen { listen: String, source: std::io::Error },
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
        SourcesSnapshot { ebpf: self.ebpf.get(), access_log: self.access_log.get(), app_log: self.app_log.get() }
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

    let not_yet = "log tailing is not part of this version";
    let sources = Sources {
        ebpf: Health::new(SourceState::Starting, "loading"),
        access_log: Health::new(SourceState::Disabled, not_yet),
        app_log: Health::new(SourceState::Disabled, not_yet),
    };
    let (tx, rx) = mpsc::channel::<Event>(EVENT_QUEUE);
    let mut tasks = tokio::task::JoinSet::new();
    start_ebpf(&cfg, tx.clone(), sources.ebpf.clone(), &mut tasks)?;
    drop(tx);

    if let Some(listener) = listener {
        tracing::info!("serving /metrics, /status, /healthz on http://{}", cfg.http.listen);
        tasks.spawn(http::serve(listener, http::router(telemetry.registry.clone(), latest.clone())));
    }

    let state = State::new(Settings::from_config(&cfg));
    tokio::select! {
        _ = state_loop(state, rx, &signals, &sources, &latest) => {}
        _ = shutdown_signal() => tracing::info!("stopping"),
    }
    tasks.shutdown().await;
    telemetry.shutdown(FLUSH_TIMEOUT).await;
    Ok(())
}

fn start_ebpf(
    cfg: &Config,
    tx: mpsc::Sender<Event>,
    health: Health,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<(), StartError> {
    if !cfg.ebpf.enabled {
        health.set(SourceState::Disabled, "[ebpf] enabled = false");
        return Ok(());
    }
    let socket = cfg.token_agent.socket.clone();
    if cfg.ebpf.required {
        let source = ebpf::EbpfSource::load(&socket).map_err(StartError::EbpfRequired)?;
        tasks.spawn(source.run(tx, health));
    } else {
        tasks.spawn(ebpf::run_with_retry(socket, tx, health, EBPF_RETRY));
    }
    Ok(())
}

/// The single owner of the state: applies events, records signals, publishes snapshots.
async fn state_loop(
    mut state: State,
    mut rx: mpsc::Receiver<Event>,
    signals: &Signals,
    sources: &Sources,
    latest: &SharedSnapshot,
) {
    let mut tick = tokio::time::interval(EVALUATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => {
                    state.apply(&ev);
                    signals.record(&ev);
                    // drain what is already queued before evaluating once
                    while let Ok(ev) = rx.try_recv() {
                        state.apply(&ev);
                        signals.record(&ev);
                    }
                }
                // every source has stopped; keep evaluating (thresholds pass with time)
                None => return forever_evaluating(&state, sources, latest).await,
            },
            _ = tick.tick() => {}
        }
        publish(&state, sources, latest);
    }
}

async fn forever_evaluating(state: &State, sources: &Sources, latest: &SharedSnapshot) {
    let mut tick = tokio::time::interval(EVALUATE_EVERY);
    loop {
        tick.tick().await;
        publish(state, sources, latest);
    }
}

fn publish(state: &State, sources: &Sources, latest: &SharedSnapshot) {
    let mut snap = state.evaluate(SystemTime::now());
    snap.sources = sources.snapshot();
    *latest.write().unwrap_or_else(|p| p.into_inner()) = Some(snap);
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
