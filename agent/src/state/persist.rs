//! Per-client token facts that survive an agent restart, so a restarted agent
//! neither forgets a refresh nor invents one. Encoding only; the file is
//! written atomically by [`crate::statefile`].
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{Client, State, Token};
use crate::events::{LogPosition, Process};

/// The persisted document, versioned so a future layout can read an old one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "version")]
pub enum Facts {
    #[serde(rename = "1")]
    V1 {
        clients: Vec<ClientFacts>,
        lost_tokens: Vec<LostToken>,
        #[serde(default)]
        log_positions: Vec<LogPosition>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientFacts {
    pub pid: u32,
    pub comm: String,
    pub exe: Option<String>,
    pub unit: Option<String>,
    /// Unix nanoseconds (exact: a restored time compares equal to the original).
    pub issued_at: u64,
    pub expires_at: u64,
    pub expires_observed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LostToken {
    pub unit: String,
    /// The process name ("" in facts written before it was kept).
    #[serde(default)]
    pub process: String,
    pub pid: u32,
    pub since: u64,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn from_unix(ns: u64) -> Option<SystemTime> {
    (ns > 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_nanos(ns))
}

impl State {
    /// What to persist: live clients that hold a token, and lost tokens.
    pub fn facts(&self) -> Facts {
        let clients = self
            .clients
            .values()
            .filter(|c| c.exited_at.is_none())
            .filter_map(|c| {
                let t = c.token?;
                Some(ClientFacts {
                    pid: c.process.pid,
                    comm: c.process.comm.clone(),
                    exe: c.process.exe.clone(),
                    unit: c.process.unit.clone(),
                    issued_at: unix(t.issued_at),
                    expires_at: unix(t.expires_at),
                    expires_observed: t.expires_observed,
                })
            })
            .collect();
        let lost_tokens = self
            .lost_tokens
            .iter()
            .map(|((unit, process), (since, pid))| LostToken {
                unit: unit.clone(),
                process: process.clone(),
                pid: *pid,
                since: unix(*since),
            })
            .collect();
        Facts::V1 { clients, lost_tokens, log_positions: self.log_positions.values().cloned().collect() }
    }

    /// Restores persisted facts. `same_process(pid, exe)` tells whether that
    /// pid still runs the same program (the caller asks /proc); a client that
    /// is gone is not restored — its token went with it. Facts never override
    /// what this run already observed.
    pub fn restore(&mut self, facts: &Facts, same_process: impl Fn(u32, Option<&str>) -> bool) -> usize {
        let Facts::V1 { clients, lost_tokens, log_positions } = facts;
        for p in log_positions {
            self.log_positions.entry(p.kind).or_insert_with(|| p.clone());
        }
        let mut restored = 0;
        for f in clients {
            let (Some(issued_at), Some(expires_at)) = (from_unix(f.issued_at), from_unix(f.expires_at)) else { continue };
            if self.clients.contains_key(&f.pid) || !same_process(f.pid, f.exe.as_deref()) {
                continue;
            }
            let process = Process { pid: f.pid, comm: f.comm.clone(), exe: f.exe.clone(), unit: f.unit.clone() };
            let mut c = Client::new(process);
            c.token = Some(Token { issued_at, expires_at, expires_observed: f.expires_observed });
            self.clients.insert(f.pid, c);
            restored += 1;
        }
        for l in lost_tokens {
            if let Some(since) = from_unix(l.since) {
                self.lost_tokens.entry((l.unit.clone(), l.process.clone())).or_insert((since, l.pid));
            }
        }
        restored
    }
}
