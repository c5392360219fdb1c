//! What the capture window attaches and detaches at run time: the capture
//! probes, and in `windows` mode on syscall tracepoints connect/close too
//! (the steps and their order: [`steps`]).
use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use tracing::{info, warn};

use super::{
    capture::Tracker,
    decode,
    hooks::{Group, Kind},
    load::{self, Links},
    maps::{self, TrackedMaps},
    seed, want_capture,
    window::{steps, Step, Switch, Transition},
    EbpfError, Reason, Settings, WindowInputs,
};

/// After a failed attach, try again this much later.
const ATTACH_RETRY: Duration = Duration::from_secs(30);

/// The run-time probes' state in the run loop.
pub(super) struct Attachments {
    capture: Option<Links>,
    connections: Option<Links>,
    switch: Switch,
    reason: Option<Reason>,
    /// No attach before this (after a failure).
    attach_after: Option<SystemTime>,
    /// `Err`: the capture programs did not load; never attach.
    capture_ok: Result<(), String>,
    /// Which of the capture programs were loaded.
    capture_kind: Kind,
    /// connect/close (loaded on syscall tracepoints) move with the window.
    connections_on_demand: bool,
    /// For re-discovery at a window's open.
    socket: PathBuf,
}

/// The loop's tables a transition updates.
pub(super) struct Tables<'a> {
    pub ebpf: &'a mut aya::Ebpf,
    pub tracker: &'a mut Tracker,
    pub maps: &'a mut TrackedMaps,
}

impl Attachments {
    pub(super) fn new(
        capture_ok: Result<(), String>,
        capture_kind: Kind,
        connections_on_demand: bool,
        socket: PathBuf,
    ) -> Self {
        Self {
            capture: None,
            connections: None,
            switch: Switch::default(),
            reason: None,
            attach_after: None,
            capture_ok,
            capture_kind,
            connections_on_demand,
            socket,
        }
    }

    /// Whether the capture probes are attached.
    pub(super) fn capturing(&self) -> bool {
        self.switch.attached()
    }

    /// Attaches or detaches as the window says; `true` when that changed.
    pub(super) fn evaluate(&mut self, t: Tables<'_>, s: &Settings, inputs: &WindowInputs) -> bool {
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
                match self.open(t) {
                    Ok(()) => {
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
                let stats = t.tracker.stats();
                self.close(t);
                self.switch.set_attached(false);
                self.reason = None;
                info!(?stats, "eBPF capture detached");
                true
            }
            _ => changed_reason,
        }
    }

    /// All of the window's steps, or none: what attached before a failure
    /// is detached again.
    fn open(&mut self, mut t: Tables<'_>) -> Result<(), EbpfError> {
        for &step in steps(Transition::Attach, self.connections_on_demand) {
            if let Err(e) = self.step(step, &mut t) {
                self.close(t);
                return Err(e);
            }
        }
        Ok(())
    }

    fn close(&mut self, mut t: Tables<'_>) {
        for &step in steps(Transition::Detach, self.connections_on_demand) {
            // detaching does not fail (a refusal is logged where it happens)
            let _ = self.step(step, &mut t);
        }
    }

    fn step(&mut self, step: Step, t: &mut Tables<'_>) -> Result<(), EbpfError> {
        match step {
            Step::AttachConnections => {
                self.connections = Some(load::attach_links(t.ebpf, Group::Connections, Kind::Tracepoint)?);
            }
            Step::Rediscover => {
                let r = seed::rediscover(&self.socket, t.tracker, t.maps);
                info!(
                    found = r.found,
                    tracked = r.seeded,
                    dropped = r.dropped,
                    "connect/close attached for the capture window; open connections re-discovered"
                );
            }
            Step::AttachCapture => {
                self.capture = Some(load::attach_links(t.ebpf, Group::Capture, self.capture_kind)?);
                // Bytes from here on are seen; anything earlier is not.
                t.tracker.capture_attached(decode::ktime_now());
            }
            Step::DetachCapture => {
                if let Some(links) = self.capture.take() {
                    load::detach(t.ebpf, links);
                    t.maps.clear_pending();
                }
                t.tracker.capture_detached();
            }
            Step::DetachConnections => {
                if let Some(links) = self.connections.take() {
                    load::detach(t.ebpf, links);
                    maps::clear_connect_pending(t.ebpf);
                }
            }
        }
        Ok(())
    }

    /// `base` plus the capture state, and in `windows` mode where
    /// connect/close are now.
    pub(super) fn detail(&self, base: &str) -> String {
        let connections = match (self.connections_on_demand, self.connections.is_some()) {
            (false, _) => "",
            (true, true) => ", connect/close attached",
            (true, false) => ", connect/close detached",
        };
        match (&self.capture_ok, self.switch.attached()) {
            (Err(why), _) => format!("{base}; capture {why}"),
            (Ok(()), true) => format!("{base}; capturing ({}){connections}", self.reason.map_or("", Reason::as_str)),
            (Ok(()), false) => format!("{base}; capture idle{connections}"),
        }
    }
}
