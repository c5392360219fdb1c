//! The eBPF source: loads `tokenwatch-ebpf`, keeps its probes attached for
//! token-agent's socket path, and turns ring-buffer records into [`Event`]s:
//! connects (always), and the calls decoded from the bytes of tracked
//! connections while the capture probes are attached (adaptive, see
//! [`window`]).
//!
//! Files: `load` (object, probe table, attach/detach), `errors`, `decode`
//! (record → typed record), `capture` (connection table → decoders →
//! calls), `discover` (connections open before start), `window` (when to
//! capture). Kernel side: `agent-ebpf/src/probes/`.
mod capture;
mod decode;
mod discover;
mod errors;
mod load;
mod window;

#[cfg(test)]
mod tests;

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use tokenwatch_common::counter;
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
};
use tracing::{debug, error, info, warn};

pub use capture::CaptureStats;
pub use errors::EbpfError;
pub use window::{want_capture, CaptureHint, Reason, Switch, Transition, WindowInputs, WindowPolicy};

use self::{
    capture::Tracker,
    decode::{Clock, Record, Skipped},
    load::{CaptureLinks, Loaded},
};
use crate::{
    config::{CaptureMode, Config},
    events::Event,
    protocol::ConnectionConfig,
    sources::{proc, Health, SourceState},
};

/// How often counters are read, the clock offset refreshed and the capture
/// window evaluated.
const TICK: Duration = Duration::from_secs(1);
/// How often the ring is drained while capturing: data records do not wake
/// userspace until the ring is a quarter full.
const DATA_DRAIN: Duration = Duration::from_millis(50);
/// How often tracked connections are checked against /proc.
const REVALIDATE_EVERY: Duration = Duration::from_secs(10);
/// After a failed attach of the capture probes, try again this much later.
const ATTACH_RETRY: Duration = Duration::from_secs(30);

/// What the source is asked to do besides watching connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub capture: CaptureMode,
    pub window: WindowPolicy,
    /// Response field of `expires_at` (`[token_agent] expires_at_field`).
    pub expires_at_field: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self { capture: CaptureMode::Adaptive, window: WindowPolicy::default(), expires_at_field: 2 }
    }
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Self {
        Self { capture: cfg.ebpf.capture, expires_at_field: cfg.token_agent.expires_at_field, ..Self::default() }
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
    /// default [`Settings`]; attaches the connect/close/exit probes.
    pub fn load(socket: &Path) -> Result<Self, EbpfError> {
        Self::load_with(socket, Settings::default())
    }

    pub fn load_with(socket: &Path, settings: Settings) -> Result<Self, EbpfError> {
        let loaded = load::load(socket, settings.capture != CaptureMode::Off)?;
        if let Err(why) = &loaded.capture {
            if settings.capture != CaptureMode::Off {
                warn!(reason = %why, "eBPF capture probes unavailable; reporting connects only");
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
        if let Err(e) = self.run_inner(&tx, &health, hints).await {
            error!(error = %e, "eBPF source stopped");
            health.set(SourceState::Failed, e.to_string());
        }
    }

    /// `Ok` when `tx` closed; `Err` when the ring buffer cannot be watched.
    async fn run_inner(
        self,
        tx: &mpsc::Sender<Event>,
        health: &Health,
        mut hints: watch::Receiver<CaptureHint>,
    ) -> Result<(), EbpfError> {
        let Self { loaded, socket, settings } = self;
        let Loaded { mut ebpf, events, counters, mut maps, attached, capture } = loaded;
        // SAFETY: the RingBuf owns its map fd for as long as it lives, and
        // as_raw_fd always returns that fd.
        let mut ring = unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }
            .map_err(|e| EbpfError::Io(e.into_parts().1))?;
        let base_detail = format!("attached {} (socket {})", attached.join(", "), socket.display());
        info!(socket = %socket.display(), probes = %attached.join(", "), capture = ?settings.capture, "eBPF source running");

        let started_at = SystemTime::now();
        let mut clock = Clock::now();
        let mut tracker = Tracker::new(ConnectionConfig { expires_at_field: settings.expires_at_field, ..Default::default() });
        let mut run = Run { links: None, switch: Switch::default(), reason: None, attach_after: None, capture_ok: capture };
        discover_at_start(&socket, &mut tracker, &mut maps);
        health.set(SourceState::Running, run.detail(&base_detail));

        let mut skipped = Skipped::default();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain = tokio::time::interval(DATA_DRAIN);
        drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_revalidate = SystemTime::now();
        let mut hints_open = true;
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                _ = tx.closed() => break,
                _ = tick.tick() => {
                    health.set_lost(kernel_counter(&counters, counter::LOST) + skipped.total);
                    clock = Clock::now(); // follow wall-clock steps (NTP, manual)
                    let now = SystemTime::now();
                    if now.duration_since(last_revalidate).is_ok_and(|d| d >= REVALIDATE_EVERY) {
                        last_revalidate = now;
                        for (tgid, fd) in tracker.revalidate(|(tgid, fd)| fd_inode(tgid, fd)) {
                            maps.untrack(tgid, fd);
                        }
                    }
                }
                changed = hints.changed(), if hints_open => {
                    if changed.is_err() {
                        hints_open = false; // the state stopped hinting: windows from connects and start only
                    }
                }
                _ = drain.tick(), if run.switch.attached() => {
                    // data records do not wake us (see probes/io.rs): fetch them
                    drain_ring(ring.get_mut(), &clock, &mut tracker, &mut maps, &mut batch, &mut skipped);
                }
                guard = ring.readable_mut() => {
                    let mut guard = guard.map_err(EbpfError::Io)?;
                    drain_ring(guard.get_inner_mut(), &clock, &mut tracker, &mut maps, &mut batch, &mut skipped);
                    guard.clear_ready();
                }
            }
            let inputs = WindowInputs {
                started_at,
                last_tracked_connect: tracker.last_tracked_connect(),
                unsettled_connections: tracker.unsettled(),
                hint: *hints.borrow(),
            };
            if run.evaluate(&mut ebpf, &mut tracker, &settings, &inputs) {
                health.set(SourceState::Running, run.detail(&base_detail));
            }
            if skipped.changed {
                skipped.changed = false;
                health.set_lost(kernel_counter(&counters, counter::LOST) + skipped.total);
            }
            let n = batch.len() as u64;
            for ev in batch.drain(..) {
                if tx.send(ev).await.is_err() {
                    return Ok(());
                }
            }
            if n > 0 {
                health.add_events(n);
            }
        }
        debug!(stats = ?tracker.stats(), connections = tracker.connections(), "eBPF source stopping");
        Ok(())
    }
}

/// The capture probes' state in the run loop.
struct Run {
    links: Option<CaptureLinks>,
    switch: Switch,
    reason: Option<Reason>,
    /// No attach before this (after a failure).
    attach_after: Option<SystemTime>,
    /// `Err`: the capture programs did not load; never attach.
    capture_ok: Result<(), String>,
}

impl Run {
    /// Attaches or detaches as the window says; `true` when that changed.
    fn evaluate(&mut self, ebpf: &mut aya::Ebpf, tracker: &mut Tracker, s: &Settings, inputs: &WindowInputs) -> bool {
        if self.capture_ok.is_err() {
            return false;
        }
        let now = SystemTime::now();
        let reason = want_capture(s.capture, now, inputs, &s.window);
        let changed_reason = reason.is_some() && reason != self.reason;
        if reason.is_some() {
            self.reason = reason;
        }
        match self.switch.step(now, reason.is_some(), s.window.linger) {
            Some(Transition::Attach) if self.attach_after.is_none_or(|t| now >= t) => {
                match load::attach_capture(ebpf) {
                    Ok(links) => {
                        // Bytes from here on are seen; anything earlier is not.
                        tracker.capture_attached(decode::ktime_now());
                        self.links = Some(links);
                        self.switch.set_attached(true);
                        self.attach_after = None;
                        info!(reason = self.reason.map_or("", Reason::as_str), "eBPF capture attached");
                    }
                    Err(e) => {
                        warn!(error = %e, "attaching the eBPF capture probes failed; retrying in {:?}", ATTACH_RETRY);
                        self.attach_after = Some(now + ATTACH_RETRY);
                    }
                }
                true
            }
            Some(Transition::Detach) => {
                if let Some(links) = self.links.take() {
                    load::detach_capture(ebpf, links);
                }
                tracker.capture_detached();
                self.switch.set_attached(false);
                self.reason = None;
                info!(stats = ?tracker.stats(), "eBPF capture detached");
                true
            }
            _ => changed_reason,
        }
    }

    fn detail(&self, base: &str) -> String {
        match (&self.capture_ok, self.switch.attached()) {
            (Err(why), _) => format!("{base}; capture unavailable: {why}"),
            (Ok(()), true) => format!("{base}; capturing ({})", self.reason.map_or("", Reason::as_str)),
            (Ok(()), false) => format!("{base}; capture idle"),
        }
    }
}

/// Handles every record in the ring. Drains fully before anything is
/// awaited: items borrow the ring, and attribution must happen while the
/// caller lives.
fn drain_ring(
    rb: &mut RingBuf<MapData>,
    clock: &Clock,
    tracker: &mut Tracker,
    maps: &mut load::TrackedMaps,
    out: &mut Vec<Event>,
    skipped: &mut Skipped,
) {
    while let Some(item) = rb.next() {
        match decode::parse(&item) {
            Ok(record) => handle(record, clock, tracker, maps, out),
            Err(e) => skipped.record(e),
        }
    }
}

/// One record: tracker updates, kernel-map cleanup, events into `out`.
fn handle(record: Record<'_>, clock: &Clock, tracker: &mut Tracker, maps: &mut load::TrackedMaps, out: &mut Vec<Event>) {
    match record {
        Record::Connect(ev) => {
            let connect = decode::connect_observed(&ev, clock, proc::describe);
            let inode = fd_inode(ev.header.tgid, ev.fd);
            tracker.on_connect(&ev, connect.at, connect.process.clone(), inode);
            out.push(Event::Connect(connect));
        }
        Record::Data { head, payload } => {
            out.extend(tracker.on_data(&head, payload, clock, |pid| proc::describe(pid, &proc_comm(pid))));
        }
        Record::Close(ev) => tracker.on_close((ev.header.tgid, ev.fd)),
        Record::ProcessGone { event, .. } => {
            let tgid = event.header.tgid;
            maps.forget(tgid, tracker.on_process_gone(tgid));
            out.push(Event::ProcessExit { pid: tgid, at: clock.wall(event.header.ts_ns) });
        }
    }
}

/// Finds the connections open before start and tracks them (late join).
fn discover_at_start(socket: &Path, tracker: &mut Tracker, maps: &mut load::TrackedMaps) {
    let found = match discover::discover(socket, std::process::id()) {
        Ok(f) => f,
        Err(e) => return warn!(error = %e, "discovering open connections to token-agent (sock_diag) failed"),
    };
    let mut seeded = 0;
    for f in &found {
        match maps.seed(f.pid, f.fd) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                warn!(error = %e, "tracking an open connection failed");
                continue;
            }
        }
        if tracker.on_discovered((f.pid, f.fd), f.inode, || proc::describe(f.pid, &proc_comm(f.pid))) {
            seeded += 1;
        }
    }
    info!(found = found.len(), tracked = seeded, "open connections to token-agent at start");
}

/// The inode of the socket `tgid` holds as `fd`, if any.
fn fd_inode(tgid: u32, fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{tgid}/fd/{fd}")).ok()?;
    discover::socket_inode(std::os::unix::ffi::OsStrExt::as_bytes(link.as_os_str()))
}

fn proc_comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|s| s.trim_end().to_string()).unwrap_or_default()
}

/// Sum over CPUs of one of the kernel's counters.
fn kernel_counter(counters: &PerCpuArray<MapData, u64>, index: u32) -> u64 {
    match counters.get(&index, 0) {
        Ok(values) => values.iter().sum(),
        Err(e) => {
            debug!(error = %e, index, "reading an eBPF counter");
            0
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
                match source.run_inner(&tx, &health, hints.clone()).await {
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
