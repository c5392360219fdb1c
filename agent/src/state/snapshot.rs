//! What the state machine tells the exporters: the `/status` document.
use std::{collections::BTreeMap, time::SystemTime};

use serde::{Serialize, Serializer};

use crate::sources::SourceStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    #[default]
    Ok,
    Warn,
    Crit,
}

impl Level {
    /// The gauge value: 0 OK, 1 WARN, 2 CRIT.
    pub fn as_gauge(self) -> i64 {
        self as i64
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub level: Level,
    pub summary: String,
    pub reasons: Vec<String>,
    #[serde(serialize_with = "rfc3339")]
    pub generated_at: SystemTime,
    pub token_agent: TokenAgentSnapshot,
    pub clients: Vec<ClientSnapshot>,
    pub sources: SourcesSnapshot,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenAgentSnapshot {
    pub socket: String,
    /// Whether the latest connect to the socket succeeded; null before any was seen.
    pub reachable: Option<bool>,
    pub calls_in_window: u64,
    pub errors_in_window: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientSnapshot {
    pub pid: u32,
    pub process: String,
    pub exe: Option<String>,
    pub unit: Option<String>,
    /// The `client` metric label.
    pub client: String,
    #[serde(serialize_with = "rfc3339_opt")]
    pub last_success: Option<SystemTime>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub expires_at: Option<SystemTime>,
    /// false: `expires_at` was assumed (`assumed_lifetime`), not decoded.
    pub expires_observed: Option<bool>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub refresh_at: Option<SystemTime>,
    pub overdue_seconds: f64,
    /// `expires_at − now`; negative once expired.
    pub expiry_remaining_seconds: Option<f64>,
    pub level: Level,
    pub calls: BTreeMap<String, u64>,
    pub connects_ok: u64,
    pub connect_errors: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourcesSnapshot {
    pub ebpf: SourceStatus,
    pub access_log: SourceStatus,
    pub app_log: SourceStatus,
}

impl Default for SourcesSnapshot {
    fn default() -> Self {
        let unknown = SourceStatus {
            state: crate::sources::SourceState::Starting,
            detail: String::new(),
            events: 0,
            lost: 0,
            lines: None,
            unparsed: 0,
            damage: None,
        };
        Self { ebpf: unknown.clone(), access_log: unknown.clone(), app_log: unknown }
    }
}

pub fn format_rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn rfc3339<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*t))
}

fn rfc3339_opt<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}
