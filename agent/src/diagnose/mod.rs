//! `tokenwatch diagnose`: the on-call runbook, automated.
//!
//! The probes ([`probe`], [`logs`]) ask the host — is token-agent running, is
//! its socket accepting, what do its logs and compute-node's journal say, what
//! does a running tokenwatch report — and return plain [`Findings`];
//! [`verdict()`] judges them without I/O; [`report`] prints both. On hosts
//! without systemd or journald the probes say what they could not check.
//!
//! Exit 0 healthy, 1 problems found (2: bad configuration).
use std::{
    path::Path,
    process::ExitCode,
    time::{Duration, SystemTime},
};

use crate::config::Config;

pub mod findings;
pub mod logs;
pub mod probe;
pub mod report;
pub mod verdict;

pub use findings::{Findings, Names, Probe, SocketState};
pub use verdict::{verdict, Cause, Verdict};

/// The default look-back of `--since`.
pub const DEFAULT_SINCE: &str = "30m";

/// `--since`: a duration like `30m`, `2h`, `90s`.
pub fn parse_since(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("bad duration {s:?}: {e} (write it like \"30m\", \"2h\")"))
}

/// Runs the runbook with the configuration at `config` (default path when `None`).
pub fn main(config: Option<&Path>, since: Duration) -> ExitCode {
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tokenwatch: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokenwatch: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let now = SystemTime::now();
    let findings = rt.block_on(gather(&cfg, since, now));
    let v = verdict(&findings);
    print!("{}", report::render(&findings, &v, now));
    if v.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs every probe.
pub async fn gather(cfg: &Config, since: Duration, now: SystemTime) -> Findings {
    let cutoff = now.checked_sub(since).unwrap_or(SystemTime::UNIX_EPOCH);
    let ta = &cfg.token_agent;
    let names = Names { compute_node_unit: probe::compute_node_unit(&cfg.clients.units), ..Names::default() };
    let state = probe::socket(&ta.socket).await;
    let listener = probe::listener(&ta.socket);
    let lookalikes = if matches!(listener, Probe::Done(None)) { probe::lookalikes() } else { Vec::new() };
    let unit = probe::unit(&names.token_agent_unit).await;
    let compute_node_units = if probe::systemd_running() {
        let mut units = Vec::new();
        for u in &cfg.clients.units {
            if let Probe::Done(s) = probe::unit(u).await {
                units.push(s);
            }
        }
        Probe::Done(units)
    } else {
        Probe::Skipped("systemd is not running on this host: compute-node's unit not checked".into())
    };
    Findings {
        now,
        since,
        token_agent: findings::TokenAgentFindings { socket: ta.socket.clone(), state, listener, lookalikes, unit },
        access_log: logs::access_log(ta, cutoff),
        app_log: logs::app_log(&ta.app_log, cutoff),
        journal: probe::journal(&cfg.clients.units, cutoff).await,
        compute_node_units,
        agent: probe::agent(&cfg.http.listen).await,
        names,
    }
}
