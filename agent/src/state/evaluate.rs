//! `State::evaluate(now)`: the verdict, its reasons and the `/status` document.
use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use super::{client::Client, snapshot::*, within, State};

fn secs(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Signed seconds from `a` to `b`.
fn signed(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

impl State {
    /// The verdict at `now`. Source health is filled in by the caller.
    pub fn evaluate(&self, now: SystemTime) -> Snapshot {
        let s = &self.settings;
        let mut reasons = Vec::new();
        let mut errors_in_window: BTreeMap<String, u64> = BTreeMap::new();
        let mut clients = Vec::new();
        let mut level = Level::Ok;
        for c in self.clients.values() {
            let errs = c.errors_in_window(now, s.error_window);
            for (k, v) in &errs {
                *errors_in_window.entry(k.clone()).or_default() += v;
            }
            if c.exited_at.is_none() {
                let snap = self.client_snapshot(c, &errs, now, &mut reasons);
                level = level.max(snap.level);
                clients.push(snap);
            } else if !errs.is_empty() {
                // a client gone since still saw token-agent fail
                level = level.max(Level::Warn);
                let list: Vec<String> = errs.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
                reasons.push(format!(
                    "{} (pid {}, exited) was failed by token-agent: {} in {}",
                    c.process.client(),
                    c.process.pid,
                    list.join(", "),
                    secs(s.error_window)
                ));
            }
        }
        for ((unit, name), (since, pid)) in &self.lost_tokens {
            level = Level::Crit;
            let who = if name.is_empty() { format!("pid {pid}") } else { format!("{name}, pid {pid}") };
            reasons.insert(
                0,
                format!(
                    "{unit} ({who}) exited at {} while token-agent was failing: its cached token is lost and no new one can be had",
                    format_rfc3339(*since)
                ),
            );
        }
        let agent_errors: Vec<_> = self.agent_errors.iter().filter(|(t, _)| within(*t, now, s.error_window)).collect();
        if let Some((_, last)) = agent_errors.last() {
            level = level.max(Level::Warn);
            reasons.push(format!(
                "token-agent logged {} error(s) in {}; last: {last}",
                agent_errors.len(),
                secs(s.error_window)
            ));
            *errors_in_window.entry("AGENT_ERROR".into()).or_default() += agent_errors.len() as u64;
        }
        let failing = !errors_in_window.is_empty();
        if failing {
            reasons.push(format!(
                "token-agent is failing: do not restart {} (its cached token would be lost); check token-agent (yc-token-agent, /var/log/yc/token-agent/)",
                self.compute_node_name()
            ));
        }
        let summary = match reasons.first() {
            Some(first) => first.clone(),
            None if clients.is_empty() => "no token-agent clients observed yet".to_string(),
            None => format!("{} client(s) hold fresh tokens", clients.iter().filter(|c| c.last_success.is_some()).count())
                + &format!(", {} observed", clients.len()),
        };
        Snapshot {
            level,
            summary,
            reasons,
            generated_at: now,
            token_agent: TokenAgentSnapshot {
                socket: s.socket.display().to_string(),
                reachable: self.last_connect.map(|(_, ok)| ok),
                calls_in_window: self.call_times.iter().filter(|t| within(**t, now, s.error_window)).count() as u64,
                errors_in_window,
            },
            clients,
            sources: SourcesSnapshot::default(),
        }
    }

    fn client_snapshot(
        &self,
        c: &Client,
        errs: &BTreeMap<String, u64>,
        now: SystemTime,
        reasons: &mut Vec<String>,
    ) -> ClientSnapshot {
        let s = &self.settings;
        let who = format!("{} (pid {}, {})", c.process.client(), c.process.pid, c.process.name());
        let mut level = Level::Ok;
        let (mut refresh_at, mut overdue, mut remaining) = (None, 0.0, None);
        if let Some(t) = &c.token {
            let r = t.refresh_at(s.refresh_fraction);
            refresh_at = Some(r);
            remaining = Some(signed(now, t.expires_at));
            let late = now.duration_since(r).unwrap_or_default();
            overdue = late.as_secs_f64();
            if late >= s.crit_after || late >= s.warn_after {
                level = if late >= s.crit_after { Level::Crit } else { Level::Warn };
                let left = match remaining {
                    Some(r) if r > 0.0 => format!("token expires in {}", secs(Duration::from_secs_f64(r))),
                    _ => "token EXPIRED".to_string(),
                };
                reasons.push(format!("{who}: refresh {} late (refresh_at {}); {left}", secs(late), format_rfc3339(r)));
            }
        }
        if !errs.is_empty() {
            level = level.max(Level::Warn);
            let list: Vec<String> = errs.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
            reasons.push(format!("{who}: token-agent failed it {} in {}", list.join(", "), secs(s.error_window)));
        }
        ClientSnapshot {
            pid: c.process.pid,
            process: c.process.name().to_string(),
            exe: c.process.exe.clone(),
            unit: c.process.unit.clone(),
            client: c.process.client().to_string(),
            last_success: c.token.map(|t| t.issued_at),
            expires_at: c.token.map(|t| t.expires_at),
            expires_observed: c.token.map(|t| t.expires_observed),
            refresh_at,
            overdue_seconds: overdue,
            expiry_remaining_seconds: remaining,
            level,
            calls: c.calls.clone(),
            connects_ok: c.connects_ok,
            connect_errors: c.connect_errors.clone(),
        }
    }

    fn compute_node_name(&self) -> String {
        let unit = self.settings.compute_node_units.first().map_or("yc-compute-node.service", |s| s.as_str());
        unit.trim_end_matches(".service").to_string()
    }
}
