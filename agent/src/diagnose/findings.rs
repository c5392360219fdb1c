//! What the probes found: plain data, no I/O. [`super::verdict`] judges it,
//! [`super::report`] prints it.
use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, SystemTime},
};

/// A probe's result, or why it could not run (printed as "not checked: …").
#[derive(Debug, Clone, PartialEq)]
pub enum Probe<T> {
    Done(T),
    Skipped(String),
}

impl<T> Probe<T> {
    pub fn done(&self) -> Option<&T> {
        match self {
            Probe::Done(t) => Some(t),
            Probe::Skipped(_) => None,
        }
    }
}

/// Everything `tokenwatch diagnose` looked at.
#[derive(Debug, Clone, PartialEq)]
pub struct Findings {
    /// When the probes ran: what "recent" is measured from.
    pub now: SystemTime,
    /// How far back the logs and the journal were read.
    pub since: Duration,
    pub token_agent: TokenAgentFindings,
    pub access_log: Probe<AccessLogFindings>,
    pub app_log: Probe<AppLogFindings>,
    /// compute-node's journal lines about tokens.
    pub journal: Probe<JournalFindings>,
    /// compute-node's systemd units.
    pub compute_node_units: Probe<Vec<UnitState>>,
    /// A running tokenwatch agent's `/status`.
    pub agent: Probe<AgentStatus>,
    /// The systemd unit names the advice uses (`yc-token-agent`, `yc-compute-node`).
    pub names: Names,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Names {
    pub token_agent_unit: String,
    pub compute_node_unit: String,
}

impl Default for Names {
    fn default() -> Self {
        Self { token_agent_unit: "yc-token-agent".into(), compute_node_unit: "yc-compute-node".into() }
    }
}

/// What a `connect()` to token-agent's socket said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketState {
    /// A listener accepted the connection.
    Accepting,
    /// ENOENT: no socket file (token-agent not running, or never started).
    Missing,
    /// ECONNREFUSED: the socket file exists but nothing listens (token-agent died, stale file).
    Refused,
    /// The path exists but is not a socket (ENOTSOCK / wrong path configured).
    NotASocket,
    /// A listener exists but did not accept in time (backlog full: token-agent hung).
    NotAccepting(String),
    /// diagnose itself may not connect (EACCES): says nothing about token-agent.
    NoPermission(String),
    /// Any other error.
    Error(String),
}

impl SocketState {
    /// Whether this result alone shows token-agent down; `None` when it cannot tell.
    pub fn shows_down(&self) -> Option<bool> {
        match self {
            SocketState::Accepting => Some(false),
            SocketState::Missing | SocketState::Refused | SocketState::NotASocket | SocketState::NotAccepting(_) => {
                Some(true)
            }
            SocketState::NoPermission(_) | SocketState::Error(_) => None,
        }
    }
}

/// A process, as /proc describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub comm: String,
    pub exe: Option<String>,
    pub unit: Option<String>,
}

/// A systemd unit's state (`systemctl show`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitState {
    pub name: String,
    /// `loaded`, `not-found`, …
    pub load: String,
    /// `active`, `inactive`, `failed`, `activating`, …
    pub active: String,
    pub sub: String,
    /// When it last entered the active state, as systemd prints it.
    pub since: String,
}

impl UnitState {
    pub fn installed(&self) -> bool {
        self.load != "not-found"
    }

    /// Installed and not running (or failed).
    pub fn down(&self) -> bool {
        self.installed() && matches!(self.active.as_str(), "inactive" | "failed" | "deactivating")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenAgentFindings {
    pub socket: PathBuf,
    pub state: SocketState,
    /// The process that owns the listening socket; `Done(None)`: nothing listens.
    pub listener: Probe<Option<ProcInfo>>,
    /// Processes whose name looks like token-agent (looked for when nothing listens).
    pub lookalikes: Vec<ProcInfo>,
    /// The `yc-token-agent` unit where systemd runs.
    pub unit: Probe<UnitState>,
}

/// token-agent's access log within the window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccessLogFindings {
    pub path: PathBuf,
    /// Dated records within the window.
    pub calls: u64,
    /// Records within the window, by gRPC status name.
    pub by_status: BTreeMap<String, u64>,
    /// The latest OK call of any method.
    pub last_ok: Option<SystemTime>,
    /// The latest OK call of the token method (`token_agent.method`, or a record
    /// that names no method): token-agent handed out a token then.
    pub last_token_ok: Option<SystemTime>,
    pub last_error: Option<SystemTime>,
    /// The latest failed calls, rendered from the parsed fields (never the raw line).
    pub recent_errors: Vec<String>,
    /// Lines that did not parse (or had no status).
    pub unparsed: u64,
    /// Records without a time: cannot be placed in the window, not counted.
    pub undated: u64,
}

impl AccessLogFindings {
    /// Failed calls in the window, by status.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.by_status.iter().filter(|(s, _)| s.as_str() != "OK").map(|(s, n)| (s.clone(), *n)).collect()
    }

    /// Whether the latest call in the window succeeded after the latest failure.
    pub fn recovered(&self) -> bool {
        matches!((self.last_ok, self.last_error), (Some(ok), Some(err)) if ok > err)
    }
}

/// ERROR lines of token-agent's application log within the window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppLogFindings {
    pub path: PathBuf,
    pub errors: u64,
    /// The latest error lines (time, level, redacted message).
    pub recent: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct JournalFindings {
    pub units: Vec<String>,
    /// The latest journal lines mentioning tokens (redacted).
    pub lines: Vec<String>,
}

/// What a running tokenwatch agent says (`/status`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentStatus {
    pub url: String,
    pub level: String,
    pub summary: String,
    pub reasons: Vec<String>,
    /// Whether the clients' latest connect to token-agent succeeded.
    pub reachable: Option<bool>,
    pub errors_in_window: BTreeMap<String, u64>,
    pub clients: Vec<ClientState>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientState {
    pub client: String,
    pub process: String,
    pub pid: u64,
    pub level: String,
    pub overdue_seconds: f64,
    pub expiry_remaining_seconds: Option<f64>,
    pub last_success: Option<String>,
}
