//! One client of token-agent (a process): its token facts and recent errors.
use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, SystemTime},
};

use crate::events::{Process, GrpcStatus};

/// At most this many recent errors are remembered per client (older ones only count).
pub const MAX_RECENT_ERRORS: usize = 4096;

/// What is known of the token a client holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// When the client received it (the successful call's end).
    pub issued_at: SystemTime,
    pub expires_at: SystemTime,
    /// false: `expires_at` is `issued_at + assumed_lifetime`.
    pub expires_observed: bool,
}

impl Token {
    /// `issued_at + fraction × (expires_at − issued_at)`.
    pub fn refresh_at(&self, fraction: f64) -> SystemTime {
        let life = self.expires_at.duration_since(self.issued_at).unwrap_or_default();
        self.issued_at + life.mul_f64(fraction)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Client {
    pub process: Process,
    pub token: Option<Token>,
    /// Calls by status name and source, since the agent started (after dedupe).
    pub calls: BTreeMap<String, u64>,
    pub connects_ok: u64,
    pub connect_errors: BTreeMap<String, u64>,
    /// (time, what) of recent failures — non-OK calls and failed connects — oldest first.
    pub recent_errors: VecDeque<(SystemTime, String)>,
    /// The process is gone (exit or exec).
    pub exited_at: Option<SystemTime>,
}

impl Client {
    pub fn new(process: Process) -> Self {
        Self { process, ..Default::default() }
    }

    /// Takes what a newer event knows of the process (exe and unit are read
    /// while it is alive; a later event may find it gone).
    pub fn learn(&mut self, p: &Process) {
        if self.process.exe.is_none() && p.exe.is_some() {
            self.process.exe = p.exe.clone();
        }
        if self.process.unit.is_none() && p.unit.is_some() {
            self.process.unit = p.unit.clone();
        }
        if self.process.comm.is_empty() {
            self.process.comm = p.comm.clone();
        }
    }

    pub fn error(&mut self, at: SystemTime, what: String, window: Duration) {
        self.recent_errors.push_back((at, what));
        let horizon = at.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
        while self.recent_errors.front().is_some_and(|(t, _)| *t < horizon)
            || self.recent_errors.len() > MAX_RECENT_ERRORS
        {
            self.recent_errors.pop_front();
        }
    }

    /// Removes the newest recent error equal to `what` at `at` (a call that a
    /// second source re-judged as OK).
    pub fn forget_error(&mut self, at: SystemTime, what: &str) {
        if let Some(i) = self.recent_errors.iter().rposition(|(t, w)| *t == at && w == what) {
            self.recent_errors.remove(i);
        }
    }

    /// A successful call at `at`: the client holds a fresh token.
    pub fn success(&mut self, at: SystemTime, expires_at: Option<SystemTime>, assumed_lifetime: Duration) {
        if self.token.is_some_and(|t| t.issued_at > at) {
            return; // an older success arriving late changes nothing
        }
        self.token = Some(match expires_at {
            Some(e) if e > at => Token { issued_at: at, expires_at: e, expires_observed: true },
            _ => Token { issued_at: at, expires_at: at + assumed_lifetime, expires_observed: false },
        });
    }

    pub fn count_call(&mut self, status: Option<GrpcStatus>, delta: i64) {
        let key = super::status_label(status);
        let n = self.calls.entry(key.clone()).or_default();
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            self.calls.remove(&key);
        }
    }

    /// Recent failures within `window` of `now`, by kind.
    pub fn errors_in_window(&self, now: SystemTime, window: Duration) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for (t, w) in &self.recent_errors {
            let age = now.duration_since(*t).unwrap_or_default();
            if age <= window {
                *m.entry(w.clone()).or_default() += 1;
            }
        }
        m
    }
}
