//! The state machine: everything sources observed, reduced to what on-call needs.
//!
//! Pure: `apply(event)` and `evaluate(now) -> Snapshot` do no I/O and take time
//! as a parameter, so tests are exact to the second.
mod snapshot;

pub use snapshot::{ClientSnapshot, Level, Snapshot, SourcesSnapshot, TokenAgentSnapshot};

use std::{
    collections::{BTreeMap, VecDeque},
    path::PathBuf,
    time::{Duration, SystemTime},
};

use crate::events::{errno_name, ConnectObserved, Event, Process};

/// At most this many recent errors are remembered per client (older ones only count).
const MAX_RECENT_ERRORS: usize = 4096;

/// What the state machine needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub socket: PathBuf,
    pub error_window: Duration,
    /// Units whose processes are compute-node (for the runbook advice).
    pub compute_node_units: Vec<String>,
}

impl Settings {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Self {
            socket: c.token_agent.socket.clone(),
            error_window: c.alert.error_window,
            compute_node_units: c.clients.units.clone(),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Client {
    process: Process,
    connects_ok: u64,
    /// Failed connects by errno name, since the agent started.
    connect_errors: BTreeMap<String, u64>,
    /// (time, errno name) of recent failed connects, oldest first.
    recent_errors: VecDeque<(SystemTime, String)>,
    last_seen: Option<SystemTime>,
}

/// The whole state. One owner (the state task) applies events and evaluates.
#[derive(Debug, Clone)]
pub struct State {
    settings: Settings,
    clients: BTreeMap<u32, Client>,
    /// The outcome of the latest connect by anyone: reachable or not, and when.
    last_connect: Option<(SystemTime, bool)>,
}

impl State {
    pub fn new(settings: Settings) -> Self {
        Self { settings, clients: BTreeMap::new(), last_connect: None }
    }

    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Connect(c) => self.apply_connect(c),
        }
    }

    fn apply_connect(&mut self, c: &ConnectObserved) {
        let client = self.clients.entry(c.process.pid).or_default();
        // A later event may know more (the exe, the unit) than the first one did.
        if client.process.exe.is_none() || client.process.pid == 0 {
            client.process = c.process.clone();
        }
        client.last_seen = Some(client.last_seen.map_or(c.at, |t| t.max(c.at)));
        match c.errno {
            None => client.connects_ok += 1,
            Some(errno) => {
                let name = errno_name(errno);
                *client.connect_errors.entry(name.clone()).or_default() += 1;
                client.recent_errors.push_back((c.at, name));
                let horizon = c.at.checked_sub(self.settings.error_window).unwrap_or(SystemTime::UNIX_EPOCH);
                while client.recent_errors.front().is_some_and(|(t, _)| *t < horizon)
                    || client.recent_errors.len() > MAX_RECENT_ERRORS
                {
                    client.recent_errors.pop_front();
                }
            }
        }
        if self.last_connect.is_none_or(|(t, _)| t <= c.at) {
            self.last_connect = Some((c.at, c.errno.is_none()));
        }
    }

    /// The verdict at `now`. Source health is filled in by the caller.
    pub fn evaluate(&self, now: SystemTime) -> Snapshot {
        let window = self.settings.error_window;
        let in_window = |t: SystemTime| now.duration_since(t).map_or(true, |age| age <= window);
        let mut reasons = Vec::new();
        let mut errors_in_window: BTreeMap<String, u64> = BTreeMap::new();
        let mut clients = Vec::new();
        for client in self.clients.values() {
            let mut mine: BTreeMap<String, u64> = BTreeMap::new();
            for (_, name) in client.recent_errors.iter().filter(|(t, _)| in_window(*t)) {
                *mine.entry(name.clone()).or_default() += 1;
            }
            let level = if mine.is_empty() { Level::Ok } else { Level::Warn };
            if !mine.is_empty() {
                reasons.push(format!(
                    "{} ({}) could not connect to token-agent: {} in {}",
                    client.process.client(),
                    client.process.pid,
                    counts(&mine),
                    humantime::format_duration(window)
                ));
            }
            for (k, v) in &mine {
                *errors_in_window.entry(k.clone()).or_default() += v;
            }
            clients.push(ClientSnapshot::new(&client.process, level, client.connects_ok, &client.connect_errors));
        }
        let level = clients.iter().map(|c| c.level).max().unwrap_or(Level::Ok);
        if level > Level::Ok {
            reasons.push(format!(
                "token-agent is failing: do not restart {} (its cached token would be lost)",
                self.compute_node_name()
            ));
        }
        let summary = match reasons.first() {
            Some(first) => first.clone(),
            None if clients.is_empty() => "no token-agent clients observed yet".to_string(),
            None => format!("{} client(s) talking to token-agent, no errors", clients.len()),
        };
        Snapshot {
            level,
            summary,
            reasons,
            generated_at: now,
            token_agent: TokenAgentSnapshot {
                socket: self.settings.socket.display().to_string(),
                reachable: self.last_connect.map(|(_, ok)| ok),
                calls_in_window: 0,
                errors_in_window,
            },
            clients,
            sources: SourcesSnapshot::default(),
        }
    }

    fn compute_node_name(&self) -> String {
        let unit = self.settings.compute_node_units.first().map_or("yc-compute-node.service", |s| s.as_str());
        unit.trim_end_matches(".service").to_string()
    }
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    m.iter().map(|(k, v)| format!("{k} ×{v}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests;
