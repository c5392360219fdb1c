//! The text `tokenwatch diagnose` prints: what each probe found, the verdict,
//! the advice, and what could not be checked.
use std::{fmt::Write as _, time::SystemTime};

use super::{
    findings::{Findings, Probe, SocketState},
    verdict::{fmt_secs, Verdict},
};
use crate::state::format_rfc3339;

const OK: &str = "[ OK ]";
const FAIL: &str = "[FAIL]";
const WARN: &str = "[WARN]";
const INFO: &str = "[INFO]";
const SKIP: &str = "[SKIP]";

pub fn render(f: &Findings, v: &Verdict, now: SystemTime) -> String {
    let mut o = String::new();
    let since = fmt_secs(f.since.as_secs_f64());
    let _ = writeln!(o, "tokenwatch diagnose at {}, looking back {since}", format_rfc3339(now));
    let mut skipped: Vec<String> = Vec::new();
    let mut skip = |o: &mut String, what: &str, why: &str| {
        let _ = writeln!(o, "  {SKIP} {what}: not checked: {why}");
        skipped.push(format!("{what}: {why}"));
    };

    // token-agent
    let ta = &f.token_agent;
    let sock = ta.socket.display();
    let _ = writeln!(o, "\ntoken-agent");
    let _ = match &ta.state {
        SocketState::Accepting => writeln!(o, "  {OK} socket {sock} accepts connections"),
        SocketState::Missing => writeln!(o, "  {FAIL} socket {sock} does not exist (ENOENT): nothing serves tokens"),
        SocketState::Refused => {
            writeln!(o, "  {FAIL} socket {sock}: connection refused (ECONNREFUSED): stale socket file, no listener")
        }
        SocketState::NotASocket => writeln!(o, "  {FAIL} {sock} is not a socket"),
        SocketState::NotAccepting(why) => writeln!(o, "  {FAIL} socket {sock} does not accept connections: {why}"),
        SocketState::NoPermission(why) => writeln!(o, "  {WARN} socket {sock}: cannot test: {why}"),
        SocketState::Error(why) => writeln!(o, "  {WARN} socket {sock}: {why}"),
    };
    match &ta.listener {
        Probe::Done(Some(p)) => {
            let _ = writeln!(
                o,
                "  {OK} listening process: pid {} {} (exe {}, unit {})",
                p.pid,
                p.comm,
                p.exe.as_deref().unwrap_or("unknown"),
                p.unit.as_deref().unwrap_or("none")
            );
        }
        Probe::Done(None) => {
            let _ = writeln!(o, "  {FAIL} no process listens on {sock}");
        }
        Probe::Skipped(why) => skip(&mut o, "listening process", why),
    }
    for p in &ta.lookalikes {
        let _ = writeln!(o, "  {WARN} process {} ({}, exe {}) looks like token-agent but does not listen on {sock} (starting? another socket path?)", p.pid, p.comm, p.exe.as_deref().unwrap_or("unknown"));
    }
    match &ta.unit {
        Probe::Done(u) if !u.installed() => {
            let _ = writeln!(o, "  {INFO} unit {} is not installed here", u.name);
        }
        Probe::Done(u) => {
            let mark = if u.active == "active" { OK } else { FAIL };
            let _ = writeln!(
                o,
                "  {mark} unit {}: {} ({}) since {}",
                u.name,
                u.active,
                u.sub,
                if u.since.is_empty() { "-" } else { &u.since }
            );
        }
        Probe::Skipped(why) => skip(&mut o, &format!("unit {}", f.names.token_agent_unit), why),
    }

    // access log
    let _ = writeln!(o, "\naccess log");
    match &f.access_log {
        Probe::Done(a) => {
            let errors = a.errors();
            let failed: u64 = errors.values().sum();
            let last_ok = a.last_ok.map(format_rfc3339).unwrap_or_else(|| "none in the window".into());
            if a.calls == 0 {
                let _ = writeln!(o, "  {INFO} {}: no calls in the last {since}", a.path.display());
            } else if failed == 0 {
                let _ = writeln!(o, "  {OK} {}: {} call(s), all OK; last at {last_ok}", a.path.display(), a.calls);
            } else {
                let listed: Vec<String> = errors.iter().map(|(s, n)| format!("{s} ×{n}")).collect();
                let _ = writeln!(
                    o,
                    "  {FAIL} {}: {failed} of {} calls failed: {}; last failure {}, last OK {last_ok}",
                    a.path.display(),
                    a.calls,
                    listed.join(", "),
                    a.last_error.map(format_rfc3339).unwrap_or_default()
                );
                for l in &a.recent_errors {
                    let _ = writeln!(o, "         {l}");
                }
            }
            if a.unparsed > 0 || a.undated > 0 {
                let _ = writeln!(
                    o,
                    "  {WARN} {} lines not understood, {} without a time (check token_agent.log_format)",
                    a.unparsed, a.undated
                );
            }
        }
        Probe::Skipped(why) => skip(&mut o, "access log", why),
    }

    // app log
    let _ = writeln!(o, "\napp log");
    match &f.app_log {
        Probe::Done(a) if a.errors == 0 && a.recent.is_empty() => {
            let _ = writeln!(o, "  {OK} {}: no ERROR lines in the last {since}", a.path.display());
        }
        Probe::Done(a) => {
            let mark = if a.errors > 0 { FAIL } else { INFO };
            let _ = writeln!(o, "  {mark} {}: {} ERROR line(s) in the last {since}", a.path.display(), a.errors);
            for l in &a.recent {
                let _ = writeln!(o, "         {l}");
            }
        }
        Probe::Skipped(why) => skip(&mut o, "app log", why),
    }

    // compute-node
    let _ = writeln!(o, "\ncompute-node");
    match &f.compute_node_units {
        Probe::Done(units) => {
            for u in units {
                if u.installed() {
                    let _ = writeln!(
                        o,
                        "  {INFO} unit {}: {} ({}) since {}",
                        u.name,
                        u.active,
                        u.sub,
                        if u.since.is_empty() { "-" } else { &u.since }
                    );
                } else {
                    let _ = writeln!(o, "  {INFO} unit {} is not installed here", u.name);
                }
            }
        }
        Probe::Skipped(why) => skip(&mut o, "compute-node unit", why),
    }
    match &f.journal {
        Probe::Done(j) if j.lines.is_empty() => {
            let _ =
                writeln!(o, "  {INFO} journal of {}: no lines about tokens in the last {since}", j.units.join(", "));
        }
        Probe::Done(j) => {
            let _ = writeln!(
                o,
                "  {INFO} journal of {}: lines about tokens (latest {}):",
                j.units.join(", "),
                j.lines.len()
            );
            for l in &j.lines {
                let _ = writeln!(o, "         {l}");
            }
        }
        Probe::Skipped(why) => skip(&mut o, "compute-node journal", why),
    }

    // the running agent
    let _ = writeln!(o, "\ntokenwatch agent");
    match &f.agent {
        Probe::Done(a) => {
            let mark = match a.level.as_str() {
                "OK" => OK,
                "WARN" => WARN,
                _ => FAIL,
            };
            let _ = writeln!(o, "  {mark} {}: {}: {}", a.url, a.level, a.summary);
            for r in &a.reasons {
                let _ = writeln!(o, "         - {r}");
            }
            for c in &a.clients {
                let expiry = c
                    .expiry_remaining_seconds
                    .map(|s| format!(", token expires in {}", fmt_secs(s)))
                    .unwrap_or_default();
                let _ = writeln!(
                    o,
                    "         client {} ({} pid {}): {}, overdue {}{expiry}",
                    c.client,
                    c.process,
                    c.pid,
                    c.level,
                    fmt_secs(c.overdue_seconds)
                );
            }
        }
        Probe::Skipped(why) => skip(&mut o, "tokenwatch agent", why),
    }

    // verdict
    if v.healthy {
        let _ = writeln!(o, "\nVERDICT: HEALTHY");
    } else {
        let heads: Vec<&str> = v.causes.iter().map(|c| c.headline()).collect();
        let _ = writeln!(o, "\nVERDICT: PROBLEMS FOUND: {}", heads.join("; "));
        for p in &v.problems {
            let _ = writeln!(o, "  - {p}");
        }
    }
    let _ = writeln!(o, "\nADVICE:");
    for (i, a) in v.advice.iter().enumerate() {
        let _ = writeln!(o, "  {}. {a}", i + 1);
    }
    if !skipped.is_empty() {
        let _ = writeln!(o, "\nNOT CHECKED ({}):", skipped.len());
        for s in &skipped {
            let _ = writeln!(o, "  - {s}");
        }
    }
    o
}
