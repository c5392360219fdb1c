//! The state machine: everything sources observed, reduced to what on-call needs.
//!
//! Pure: `apply(event)` and `evaluate(now) -> Snapshot` do no I/O and take time
//! as a parameter, so tests are exact to the second. The rules (issue #5):
//! - a successful call gives its client a token: `issued_at` = the call's end,
//!   `expires_at` as decoded, else `issued_at + assumed_lifetime`;
//!   `refresh_at = issued_at + refresh_fraction × lifetime`;
//! - `overdue = now − refresh_at`; WARN from `warn_after`, CRIT from `crit_after`;
//! - WARN on failures (non-OK calls, failed connects, app-log errors) within `error_window`;
//! - a compute-node process that exits while token-agent fails is CRIT at once,
//!   until its unit gets a token again.
mod client;
mod dedupe;
mod evaluate;
pub mod persist;
mod snapshot;

pub use client::{Client, Token};
pub use snapshot::{format_rfc3339, ClientSnapshot, Level, Snapshot, SourcesSnapshot, TokenAgentSnapshot};

use std::{
    collections::{BTreeMap, VecDeque},
    path::PathBuf,
    time::{Duration, SystemTime},
};

use crate::events::{errno_name, AgentError, CallObserved, ConnectObserved, Event, LogKind, LogPosition};

/// What the state machine needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub socket: PathBuf,
    pub method: String,
    pub warn_after: Duration,
    pub crit_after: Duration,
    pub refresh_fraction: f64,
    pub error_window: Duration,
    pub assumed_lifetime: Duration,
    /// Units whose processes are compute-node.
    pub compute_node_units: Vec<String>,
}

impl Settings {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Self {
            socket: c.token_agent.socket.clone(),
            method: c.token_agent.method.clone(),
            warn_after: c.alert.warn_after,
            crit_after: c.alert.crit_after,
            refresh_fraction: c.alert.refresh_fraction,
            error_window: c.alert.error_window,
            assumed_lifetime: c.alert.assumed_lifetime,
            compute_node_units: c.clients.units.clone(),
        }
    }
}

/// The whole state. One owner (the state task) applies events and evaluates.
#[derive(Debug, Clone)]
pub struct State {
    settings: Settings,
    clients: BTreeMap<u32, Client>,
    recent: BTreeMap<u32, dedupe::Recent>,
    /// token-agent errors not tied to a client (its app log), oldest first.
    agent_errors: VecDeque<(SystemTime, String)>,
    /// Calls (after dedupe) by end time, for `calls_in_window`.
    call_times: VecDeque<SystemTime>,
    /// The outcome of the latest connect by anyone: reachable or not, and when.
    last_connect: Option<(SystemTime, bool)>,
    /// (unit, process name) of a compute-node process that exited while
    /// token-agent was failing → since when, which pid. Keyed by the
    /// process name too: the unit's Go and Python processes hold a token
    /// each, and one's success does not give the other its token back.
    lost_tokens: BTreeMap<(String, String), (SystemTime, u32)>,
    /// When token-agent last handed out a token to anyone.
    last_ok: Option<SystemTime>,
    /// How far each log has been applied (persisted with the facts).
    log_positions: BTreeMap<LogKind, LogPosition>,
    /// Bumped whenever persisted facts change.
    generation: u64,
}

impl State {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            clients: BTreeMap::new(),
            recent: BTreeMap::new(),
            agent_errors: VecDeque::new(),
            call_times: VecDeque::new(),
            last_connect: None,
            lost_tokens: BTreeMap::new(),
            last_ok: None,
            log_positions: BTreeMap::new(),
            generation: 0,
        }
    }

    /// Changes whenever a fact worth persisting changed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Where a log source resumes after a restart (restored from the facts file).
    pub fn log_position(&self, kind: LogKind) -> Option<&LogPosition> {
        self.log_positions.get(&kind)
    }

    /// The earliest `refresh_at` among live clients that is not more than
    /// `overdue_max` past (a client that stopped refreshing long ago must
    /// not pin the hint there, hiding everyone else's next refresh from the
    /// capture windows), and whether token-agent is failing anyone now —
    /// what the eBPF capture windows follow.
    pub fn capture_inputs(&self, now: SystemTime, overdue_max: Duration) -> (Option<SystemTime>, bool) {
        let next = self
            .clients
            .values()
            .filter(|c| c.exited_at.is_none())
            .filter_map(|c| c.token.map(|t| t.refresh_at(self.settings.refresh_fraction)))
            .filter(|r| now.duration_since(*r).map_or(true, |past| past < overdue_max))
            .min();
        (next, self.token_agent_failing(now))
    }

    /// Clients believed alive, with the executable they ran (for the exit watcher).
    pub fn live_clients(&self) -> Vec<(u32, Option<String>)> {
        self.clients
            .iter()
            .filter(|(pid, c)| **pid != 0 && c.exited_at.is_none())
            .map(|(p, c)| (*p, c.process.exe.clone()))
            .collect()
    }

    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Connect(c) => self.apply_connect(c),
            Event::Call(c) => self.apply_call(c),
            Event::AgentError(e) => self.apply_agent_error(e),
            Event::ProcessExit { pid, at } => self.apply_exit(*pid, *at),
            Event::LogPosition(p) => {
                self.log_positions.insert(p.kind, p.clone());
                self.generation += 1;
            }
        }
    }


    fn apply_connect(&mut self, c: &ConnectObserved) {
        let window = self.settings.error_window;
        let client = client_entry(&mut self.clients, &c.process);
        match c.errno {
            None => client.connects_ok += 1,
            Some(errno) => {
                let name = errno_name(errno);
                *client.connect_errors.entry(name.clone()).or_default() += 1;
                client.error(c.at, name, window);
            }
        }
        if self.last_connect.is_none_or(|(t, _)| t <= c.at) {
            self.last_connect = Some((c.at, c.errno.is_none()));
        }
    }

    fn apply_call(&mut self, c: &CallObserved) {
        if c.method.as_deref().is_some_and(|m| !crate::format::method_matches(&self.settings.method, m)) {
            return; // another method of token-agent: not about tokens
        }
        let (window, lifetime) = (self.settings.error_window, self.settings.assumed_lifetime);
        let twin = self.recent.entry(c.process.pid).or_default().pair(c.source, c.at, c.status);
        let client = client_entry(&mut self.clients, &c.process);
        let ok = c.status.is_some_and(|s| s.is_ok());
        match twin {
            None => {
                client.count_call(c.status, 1);
                if !ok {
                    client.error(c.at, status_label(c.status), window);
                }
                self.call_times.push_back(c.at);
            }
            // The same call, seen again: the access log's status wins.
            Some(first) if c.source == crate::events::CallSource::AccessLog && first.status != c.status => {
                client.count_call(first.status, -1);
                client.count_call(c.status, 1);
                if !first.status.is_some_and(|s| s.is_ok()) {
                    client.forget_error(first.at, &status_label(first.status));
                }
                if !ok {
                    client.error(c.at, status_label(c.status), window);
                }
            }
            Some(_) => {}
        }
        // a second sighting of a success adds nothing, unless it brings expires_at
        let known = twin.is_some_and(|f| f.status.is_some_and(|s| s.is_ok())) && c.expires_at.is_none();
        if ok && self.last_ok.is_none_or(|t| t < c.at) {
            self.last_ok = Some(c.at);
        }
        // pid 0: log records of no process we can name (no pid logged, or the
        // pid runs another process by now) — no one holds that token
        if ok && !known && c.process.pid != 0 {
            client.success(c.at, c.expires_at, lifetime);
            if let Some(unit) = client.process.unit.clone() {
                // "": a loss persisted before process names were kept: any process of the unit
                for name in [client.process.name().to_string(), String::new()] {
                    let key = (unit.clone(), name);
                    if self.lost_tokens.get(&key).is_some_and(|(since, _)| *since <= c.at) {
                        self.lost_tokens.remove(&key);
                    }
                }
            }
            self.generation += 1;
        }
        let horizon = c.at.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
        while self.call_times.front().is_some_and(|t| *t < horizon) || self.call_times.len() > 100_000 {
            self.call_times.pop_front();
        }
    }

    fn apply_agent_error(&mut self, e: &AgentError) {
        self.agent_errors.push_back((e.at, e.message.clone()));
        let horizon = e.at.checked_sub(self.settings.error_window).unwrap_or(SystemTime::UNIX_EPOCH);
        while self.agent_errors.front().is_some_and(|(t, _)| *t < horizon) || self.agent_errors.len() > 1024 {
            self.agent_errors.pop_front();
        }
    }

    fn apply_exit(&mut self, pid: u32, at: SystemTime) {
        let failing = self.token_agent_failing(at);
        let Some(client) = self.clients.get_mut(&pid) else { return };
        if client.exited_at.is_some() {
            return;
        }
        client.exited_at = Some(at);
        self.generation += 1;
        let unit = client.process.unit.clone();
        if let Some(unit) = unit.filter(|u| self.settings.compute_node_units.contains(u)) {
            if failing {
                let name = client.process.name().to_string();
                self.lost_tokens.entry((unit, name)).or_insert((at, pid));
            }
        }
    }

    /// Whether token-agent is failing at `at`: it failed someone within the
    /// error window, and has handed out no token since. A blip it recovered
    /// from (a release's UNAVAILABLE, then OK) is not failing: a compute-node
    /// restarting after it gets a new token.
    fn token_agent_failing(&self, at: SystemTime) -> bool {
        let window = self.settings.error_window;
        let agent = self.agent_errors.iter().map(|(t, _)| *t);
        let calls = self.clients.values().flat_map(|c| c.recent_errors.iter().map(|(t, _)| *t));
        let Some(last_failure) = agent.chain(calls).filter(|t| within(*t, at, window)).max() else {
            return false;
        };
        self.last_ok.is_none_or(|ok| ok <= last_failure)
    }

    /// Drops clients that exited long ago and were never compute-node's last word.
    pub fn forget_exited(&mut self, now: SystemTime, after: Duration) {
        self.clients.retain(|_, c| c.exited_at.is_none_or(|t| !now.duration_since(t).is_ok_and(|d| d > after)));
        let clients = &self.clients;
        self.recent.retain(|pid, _| clients.contains_key(pid));
    }
}

fn client_entry<'a>(clients: &'a mut BTreeMap<u32, Client>, p: &crate::events::Process) -> &'a mut Client {
    let client = clients.entry(p.pid).or_insert_with(|| Client::new(p.clone()));
    client.learn(p);
    client
}

fn within(t: SystemTime, now: SystemTime, window: Duration) -> bool {
    now.duration_since(t).map_or(true, |age| age <= window)
}

/// `UNAVAILABLE`, or `UNDECODED` for an error whose code the wire hid.
pub(crate) fn status_label(s: Option<crate::events::GrpcStatus>) -> String {
    s.map_or_else(|| "UNDECODED".to_string(), |s| s.name())
}


#[cfg(test)]
mod tests;
