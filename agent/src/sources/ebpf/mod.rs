//! The eBPF source: loads `tokenwatch-ebpf`, keeps its probes attached for
//! token-agent's socket path, and turns ring-buffer records into [`Event`]s:
//! connects (always, or in `windows` mode on syscall tracepoints only while
//! a capture window is open), and the calls decoded from the bytes of
//! tracked connections while the capture probes are attached (adaptive, see
//! [`window`]).
//!
//! Files: `hooks` (the probe table; fentry/fexit or tracepoints, chosen by
//! what the kernel allows), `load` (object, attach/detach), `maps` (the maps
//! userspace writes: tracked connections, in-flight calls), `errors`, `run` (the
//! loop), `attach` (what the window attaches and detaches), `decode` (record
//! → typed record), `capture` (connection table → decoders → calls),
//! `discover` (sock_diag + /proc), `seed` (discovered connections into the
//! tables, at start and at each window's open), `window` (when to capture).
//! Kernel side: `agent-ebpf/src/probes/`.
mod attach;
mod capture;
mod decode;
mod discover;
mod errors;
mod hooks;
mod load;
mod maps;
mod run;
mod seed;
mod window;

#[cfg(test)]
mod tests;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

pub use capture::CaptureStats;
pub use errors::EbpfError;
pub use window::{want_capture, CaptureHint, Reason, WindowInputs, WindowPolicy};

use self::load::Loaded;
use crate::{
    config::{CaptureMode, Config, HookPreference},
    events::Event,
    sources::{Health, SourceState},
};

/// What the source is asked to do besides watching connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub capture: CaptureMode,
    /// `[ebpf] hooks`.
    pub hooks: HookPreference,
    pub window: WindowPolicy,
    /// Response field of `expires_at` (`[token_agent] expires_at_field`).
    pub expires_at_field: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            capture: CaptureMode::Adaptive,
            hooks: HookPreference::Auto,
            window: WindowPolicy::default(),
            expires_at_field: 2,
        }
    }
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            capture: cfg.ebpf.capture,
            hooks: cfg.ebpf.hooks,
            expires_at_field: cfg.token_agent.expires_at_field,
            ..Self::default()
        }
    }
}

/// The loaded probes plus the maps userspace reads.
pub struct EbpfSource {
    loaded: Loaded,
    socket: PathBuf,
    settings: Settings,
}

impl EbpfSource {
    /// Loads the probes for `socket` (path of token-agent's socket) with
    /// default [`Settings`]; attaches the connect/close/exit probes (in
    /// `windows` mode on syscall tracepoints, connect/close wait for a window).
    pub fn load(socket: &Path) -> Result<Self, EbpfError> {
        Self::load_with(socket, Settings::default())
    }

    pub fn load_with(socket: &Path, settings: Settings) -> Result<Self, EbpfError> {
        let loaded = load::load(socket, settings.capture, settings.hooks)?;
        if let Err(why) = &loaded.capture {
            if settings.capture != CaptureMode::Off {
                warn!(reason = %why, "eBPF capture probes not loaded; reporting connects only");
            }
        }
        Ok(Self { loaded, socket: socket.to_path_buf(), settings })
    }

    /// Reads the ring buffer until `tx` closes, sending each event; keeps
    /// `health` current. Capture windows follow connects and start only.
    pub async fn run(self, tx: mpsc::Sender<Event>, health: Health) {
        let (_keep, hints) = watch::channel(CaptureHint::default());
        self.run_with(tx, health, hints).await
    }

    /// [`EbpfSource::run`], with the state's [`CaptureHint`]s.
    pub async fn run_with(self, tx: mpsc::Sender<Event>, health: Health, hints: watch::Receiver<CaptureHint>) {
        if let Err(e) = run::run(self, &tx, &health, hints).await {
            error!(error = %e, "eBPF source stopped");
            health.set(SourceState::Failed, e.to_string());
        }
    }
}

/// The retry loop for the (non-required) eBPF source: tries to load every
/// `retry`; while it fails, `health` is Failed with the reason, logged once
/// per distinct reason. Returns when `tx` closes, or at once on an error
/// retrying cannot fix (e.g. the object is not built in).
pub async fn run_with_retry(
    socket: PathBuf,
    settings: Settings,
    tx: mpsc::Sender<Event>,
    health: Health,
    hints: watch::Receiver<CaptureHint>,
    retry: Duration,
) {
    let mut last_error: Option<String> = None;
    loop {
        let path = socket.clone();
        let loaded = match tokio::task::spawn_blocking(move || EbpfSource::load_with(&path, settings)).await {
            Ok(r) => r,
            // A panic inside aya: report it like any other load failure.
            Err(join) => Err(EbpfError::Kernel { stage: "loading eBPF".into(), reason: join.to_string() }),
        };
        match loaded {
            Ok(source) => {
                if last_error.take().is_some() {
                    info!("eBPF source loaded after earlier failures");
                }
                match run::run(source, &tx, &health, hints.clone()).await {
                    Ok(()) => return,
                    Err(e) => {
                        let msg = e.to_string();
                        error!(error = %msg, "eBPF source stopped; reloading in {}", humantime::format_duration(retry));
                        health.set(SourceState::Failed, msg.clone());
                        last_error = Some(msg);
                    }
                }
            }
            Err(e) => {
                let msg = e.to_string();
                health.set(SourceState::Failed, msg.clone());
                if e.is_permanent() {
                    error!(error = %msg, "eBPF source disabled");
                    return;
                }
                if last_error.as_deref() != Some(msg.as_str()) {
                    error!(error = %msg, "eBPF source failed to load; retrying every {}", humantime::format_duration(retry));
                } else {
                    debug!(error = %msg, "eBPF source still failing to load");
                }
                last_error = Some(msg);
            }
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(retry) => {}
        }
    }
}
