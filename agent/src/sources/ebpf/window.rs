//! When the capture probes should be attached: a pure function of the inputs
//! and the time ([`want_capture`]), and a hysteresis ([`Switch`]) so that a
//! window closing and reopening within seconds does not re-attach.
//!
//! Attached, the I/O probes cost every read/write on the host a few hundred
//! ns (see `agent-ebpf/src/probes/io.rs`), so `adaptive` keeps them attached
//! only while a call worth decoding is likely: just after a client connected,
//! at start until every discovered connection showed a call, around a
//! client's `refresh_at`, and while errors persist. `windows` uses the same
//! windows and, when connect/close run on syscall tracepoints, moves those
//! with the capture probes ([`connections_on_demand`], [`steps`]): any
//! enabled syscall tracepoint slows every syscall on the host, so between
//! windows none is left enabled.
use std::time::{Duration, SystemTime};

use super::hooks::Kind;
use crate::config::CaptureMode;

/// What the state knows that makes capture worthwhile (fed by the runtime).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureHint {
    /// The earliest `refresh_at` among the clients not yet refreshed.
    pub next_refresh_at: Option<SystemTime>,
    /// Calls are failing (or token-agent is unreachable): capture until it clears.
    pub failing: bool,
}

/// The durations of the adaptive windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPolicy {
    /// Capture this long after a tracked connect.
    pub after_connect: Duration,
    /// At start, capture until each discovered connection showed a complete
    /// call, but at most this long.
    pub startup_max: Duration,
    /// Open this long before the earliest `refresh_at`.
    pub refresh_lead: Duration,
    /// Keep capturing an overdue refresh at most this long after `refresh_at`
    /// (a client that stopped calling must not keep capture on forever).
    pub refresh_overdue_max: Duration,
    /// Detach only after capture was not wanted for this long.
    pub linger: Duration,
}

impl Default for WindowPolicy {
    fn default() -> Self {
        Self {
            after_connect: Duration::from_secs(30),
            startup_max: Duration::from_secs(120),
            refresh_lead: Duration::from_secs(60),
            refresh_overdue_max: Duration::from_secs(15 * 60),
            linger: Duration::from_secs(10),
        }
    }
}

/// Everything [`want_capture`] looks at besides the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowInputs {
    pub started_at: SystemTime,
    pub last_tracked_connect: Option<SystemTime>,
    /// Discovered (late-joined) connections that have not shown a complete call.
    pub unsettled_connections: usize,
    pub hint: CaptureHint,
}

/// Why capture is wanted (the first that applies, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Always,
    Failing,
    Connect,
    Startup,
    Refresh,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Always => "always",
            Reason::Failing => "errors persist",
            Reason::Connect => "a client connected",
            Reason::Startup => "start: open connections",
            Reason::Refresh => "a refresh is due",
        }
    }
}

/// Whether the capture probes should be attached at `now`, and why.
pub fn want_capture(mode: CaptureMode, now: SystemTime, i: &WindowInputs, p: &WindowPolicy) -> Option<Reason> {
    match mode {
        CaptureMode::Off => return None,
        CaptureMode::Always => return Some(Reason::Always),
        CaptureMode::Adaptive | CaptureMode::Windows => {}
    }
    // `a` is within `d` after `b` (a clock step backwards counts as within).
    let within = |a: SystemTime, b: SystemTime, d: Duration| a.duration_since(b).map_or(true, |e| e < d);
    if i.hint.failing {
        return Some(Reason::Failing);
    }
    if i.last_tracked_connect.is_some_and(|c| within(now, c, p.after_connect)) {
        return Some(Reason::Connect);
    }
    if i.unsettled_connections > 0 && within(now, i.started_at, p.startup_max) {
        return Some(Reason::Startup);
    }
    if let Some(r) = i.hint.next_refresh_at {
        let opens = r.checked_sub(p.refresh_lead).unwrap_or(r);
        if now >= opens && within(now, r, p.refresh_overdue_max) {
            return Some(Reason::Refresh);
        }
    }
    None
}

/// Whether connect/close are attached only while a capture window is open:
/// in `windows` mode when they run on syscall tracepoints (on trampolines
/// they cost other syscalls nothing, so they stay, as in `adaptive`), and
/// only when the capture programs loaded — else no window would ever open
/// and no connect would ever be seen.
pub(super) fn connections_on_demand(mode: CaptureMode, connections: Kind, capture_loaded: bool) -> bool {
    mode == CaptureMode::Windows && connections == Kind::Tracepoint && capture_loaded
}

/// One step of opening or closing a capture window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    AttachConnections,
    /// Learn from /proc and sock_diag what connect/close missed while
    /// detached: drop tracked entries whose fd no longer holds the same
    /// socket, track the connections opened meanwhile.
    Rediscover,
    AttachCapture,
    DetachCapture,
    DetachConnections,
}

/// The steps of `t`, in order. Opening attaches connect/close before
/// re-discovering, so that a connection opened during the discovery is
/// seen by one or the other, and both before the capture probes, so that
/// these never run on an fd whose close would go unseen. Closing is the
/// reverse.
pub(super) fn steps(t: Transition, connections_on_demand: bool) -> &'static [Step] {
    use Step::*;
    match (t, connections_on_demand) {
        (Transition::Attach, true) => &[AttachConnections, Rediscover, AttachCapture],
        (Transition::Attach, false) => &[AttachCapture],
        (Transition::Detach, true) => &[DetachCapture, DetachConnections],
        (Transition::Detach, false) => &[DetachCapture],
    }
}

/// A transition of the capture probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Attach,
    Detach,
}

/// Attach as soon as wanted; detach once not wanted for `linger`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Switch {
    attached: bool,
    last_wanted: Option<SystemTime>,
}

impl Switch {
    pub fn attached(&self) -> bool {
        self.attached
    }

    /// The transition to make now, if any; the caller reports the outcome
    /// with [`Switch::set_attached`] (an attach may fail).
    pub fn step(&mut self, now: SystemTime, want: bool, linger: Duration) -> Option<Transition> {
        if want {
            self.last_wanted = Some(now);
            return (!self.attached).then_some(Transition::Attach);
        }
        let lingered = self.last_wanted.is_none_or(|w| now.duration_since(w).is_ok_and(|d| d >= linger));
        (self.attached && lingered).then_some(Transition::Detach)
    }

    pub fn set_attached(&mut self, attached: bool) {
        self.attached = attached;
    }
}
