//! The runbook's judgement: findings in, causes and advice out. Pure.
//!
//! The one rule that must never break: while token-agent is down or failing,
//! nothing here advises restarting compute-node — it holds its token in
//! memory, and a restart would lose a token it cannot get back.
use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use super::findings::{Findings, Probe, SocketState};
use crate::state::format_rfc3339;

/// What is wrong, most fundamental first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// token-agent is not running / not accepting connections.
    TokenAgentDown,
    /// token-agent runs but IAM (or the network to it) fails: UNAVAILABLE, DEADLINE_EXCEEDED, …
    IamSide,
    /// token-agent rejects the caller: PERMISSION_DENIED / UNAUTHENTICATED.
    CallerRejected,
    /// token-agent answers other errors, or logs errors.
    TokenAgentErrors,
    /// token-agent is healthy, but a client did not refresh in time.
    ComputeNodeSide,
    /// The running tokenwatch reports a problem none of the above explains.
    AgentReportsProblem,
}

impl Cause {
    /// Whether token-agent itself is down or failing (compute-node must not be restarted).
    pub fn token_agent_failing(self) -> bool {
        matches!(self, Cause::TokenAgentDown | Cause::IamSide | Cause::CallerRejected | Cause::TokenAgentErrors)
    }

    pub fn headline(self) -> &'static str {
        match self {
            Cause::TokenAgentDown => "token-agent is DOWN",
            Cause::IamSide => "token-agent is up but IAM fails (IAM or network side)",
            Cause::CallerRejected => "token-agent rejects the caller (authorization)",
            Cause::TokenAgentErrors => "token-agent answers or logs errors",
            Cause::ComputeNodeSide => "token refresh overdue while token-agent shows no failure (compute-node side)",
            Cause::AgentReportsProblem => "tokenwatch reports a problem",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    pub healthy: bool,
    pub causes: Vec<Cause>,
    /// One line per problem found.
    pub problems: Vec<String>,
    /// What on-call should do, in order.
    pub advice: Vec<String>,
}

/// gRPC statuses that mean token-agent could not get a token from IAM.
const IAM_SIDE: &[&str] =
    &["UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED"];
const REJECTED: &[&str] = &["PERMISSION_DENIED", "UNAUTHENTICATED"];

/// Judges `f`: healthy or not, why, and what to do.
pub fn verdict(f: &Findings) -> Verdict {
    let mut v = Verdict::default();
    let ta_unit = &f.names.token_agent_unit;
    let cn_unit = &f.names.compute_node_unit;
    let socket = f.token_agent.socket.display();
    let dont_restart_cn = format!(
        "Do NOT restart {cn_unit}: it keeps its current token in memory (valid until expires_at); \
         a restart would lose it, and it cannot get a new one while token-agent fails."
    );
    let unit = f.token_agent.unit.done();
    let agent = f.agent.done();

    // 1. Is token-agent down?
    let socket_down = f.token_agent.state.shows_down();
    let unit_down = unit.is_some_and(|u| u.down());
    let agent_unreachable = agent.is_some_and(|a| a.reachable == Some(false));
    let down = socket_down.unwrap_or(unit_down || agent_unreachable);
    if down {
        v.causes.push(Cause::TokenAgentDown);
        v.problems.push(match &f.token_agent.state {
            SocketState::Missing => format!("token-agent's socket {socket} does not exist (ENOENT): token-agent is not running"),
            SocketState::Refused => format!(
                "connect to {socket} refused (ECONNREFUSED): the socket file is left over, nothing listens — token-agent died"
            ),
            SocketState::NotASocket => format!("{socket} exists but is not a socket: token-agent is not running there (check token_agent.socket)"),
            SocketState::NotAccepting(why) => format!("token-agent does not accept connections on {socket} ({why}): it is hung"),
            SocketState::NoPermission(why) | SocketState::Error(why) => {
                format!("token-agent looks down (could not test {socket}: {why}), see its unit state / tokenwatch status")
            }
            SocketState::Accepting => unreachable!("accepting is not down"),
        });
        if let Some(u) = unit {
            if u.down() {
                v.problems.push(format!("unit {}: {} ({})", u.name, u.active, u.sub));
            } else if u.active == "active" {
                v.problems.push(format!(
                    "unit {} is active but its socket is not usable: check that token_agent.socket matches token-agent's configuration",
                    u.name
                ));
            }
        }
        if !f.token_agent.lookalikes.is_empty() {
            let procs: Vec<String> =
                f.token_agent.lookalikes.iter().map(|p| format!("{} ({})", p.pid, p.comm)).collect();
            v.problems.push(format!(
                "processes that look like token-agent run but none listens on {socket}: {}",
                procs.join(", ")
            ));
        }
        v.advice.push(format!(
            "Start token-agent: `systemctl restart {ta_unit}`, then `systemctl status {ta_unit}` and its app log (`journalctl -u {ta_unit}`) for why it stopped."
        ));
        if f.token_agent.state == SocketState::Refused {
            v.advice.push("The stale socket file is harmless: token-agent recreates it when it starts.".into());
        }
        v.advice.push(dont_restart_cn.clone());
        if let Some(left) = min_expiry(f) {
            v.advice.push(format!(
                "compute-node's current token expires in {}: token-agent must be back before then or the node loses API access.",
                fmt_secs(left)
            ));
        }
        v.advice.push(format!("If {ta_unit} does not stay up, escalate to the token-agent owners with this output."));
    }

    // 2. token-agent up (or unknown) but answering errors?
    let mut errors: BTreeMap<String, u64> = f.access_log.done().map(|a| a.errors()).unwrap_or_default();
    if let Some(a) = agent {
        for (s, n) in &a.errors_in_window {
            let e = errors.entry(s.clone()).or_default();
            *e = (*e).max(*n);
        }
    }
    let app_errors = f.app_log.done().map_or(0, |a| a.errors);
    if !down && (!errors.is_empty() || app_errors > 0) {
        let listed = errors.iter().map(|(s, n)| format!("{s} ×{n}")).collect::<Vec<_>>().join(", ");
        let recovered = f.access_log.done().is_some_and(|a| a.recovered());
        let iam = errors.keys().any(|s| IAM_SIDE.contains(&s.as_str()));
        let rejected = errors.keys().any(|s| REJECTED.contains(&s.as_str()));
        if iam {
            v.causes.push(Cause::IamSide);
            v.problems.push(format!(
                "token-agent is up but its calls fail: {listed}{}",
                if recovered { " (the latest call succeeded again)" } else { "" }
            ));
            v.advice.push(
                "token-agent runs but cannot get tokens from IAM: the IAM or network side. Escalate to IAM on-call \
                 with the times and request ids of the failed calls above; check this host's network path to IAM."
                    .into(),
            );
            v.advice.push(format!(
                "Restarting {ta_unit} does not fix an IAM outage and drops its cache; leave it running."
            ));
        }
        if rejected {
            v.causes.push(Cause::CallerRejected);
            v.problems.push(format!("token-agent rejects callers: {listed}"));
            v.advice.push(
                "token-agent refuses the caller: check which uids/gids token-agent allows and the caller's user; \
                 escalate to the token-agent owners."
                    .into(),
            );
        }
        if !iam && !rejected {
            v.causes.push(Cause::TokenAgentErrors);
            if errors.is_empty() {
                v.problems.push(format!(
                    "token-agent logged {app_errors} ERROR line(s) in its app log (clients' calls still succeed)"
                ));
            } else {
                v.problems.push(format!("token-agent answers errors: {listed}"));
            }
            v.advice.push(format!(
                "Read token-agent's app log (above); if it mentions IAM or the network, escalate to IAM on-call, else to the token-agent owners. `journalctl -u {ta_unit}` has its service log."
            ));
        }
        v.advice.push(dont_restart_cn.clone());
    }

    // 3. Refresh overdue while token-agent is fine: the compute-node side.
    let failing = v.causes.iter().any(|c| c.token_agent_failing());
    let overdue: Vec<_> = agent
        .map(|a| a.clients.iter().filter(|c| c.overdue_seconds > 0.0 && c.level != "OK").collect())
        .unwrap_or_default();
    if !failing && !overdue.is_empty() {
        v.causes.push(Cause::ComputeNodeSide);
        for c in &overdue {
            v.problems.push(format!(
                "{} ({}, pid {}) has not refreshed its token: {} past refresh_at ({}); last refresh {}",
                c.client,
                c.process,
                c.pid,
                fmt_secs(c.overdue_seconds),
                c.level,
                c.last_success.as_deref().unwrap_or("never seen")
            ));
        }
        let look_at_client = format!(
            "`journalctl -u {cn_unit} --since -{} | grep -i token` (its lines about tokens are shown above); escalate to compute-node on-call.",
            fmt_secs(f.since.as_secs_f64())
        );
        // Restart advice only on positive evidence that token-agent answers:
        // a connect that succeeds proves nothing (a hung token-agent still
        // completes connects through the listen backlog, logs nothing and
        // sends no trailers, so no error is ever seen).
        match answered_recently(f) {
            Some(at) => {
                v.advice.push(format!("token-agent answers, so look at the client: {look_at_client}"));
                if f.token_agent.state == SocketState::Accepting {
                    v.advice.push(format!(
                        "Only because token-agent answered a token call OK at {} (after its last failure): if {cn_unit} is hung, restarting it is safe — it fetches a fresh token when it starts.",
                        format_rfc3339(at)
                    ));
                }
            }
            None => {
                v.problems.push(format!(
                    "{} but no call it answered OK in the last {} was seen (access log, tokenwatch): it may be hung — a hung token-agent still accepts connections",
                    if f.token_agent.state == SocketState::Accepting {
                        "token-agent accepts connections"
                    } else {
                        "token-agent's socket could not be tested"
                    },
                    fmt_secs(ANSWERED_WITHIN.as_secs_f64())
                ));
                v.advice.push(format!(
                    "Check token-agent first: `systemctl status {ta_unit}`, `journalctl -u {ta_unit}`, and its access log for GetToken calls answered OK in the last minutes. If it hangs, it is token-agent that needs fixing (escalate to the token-agent owners)."
                ));
                v.advice.push(format!(
                    "Do NOT restart {cn_unit} until token-agent is confirmed to answer: it keeps its current token in memory, and a restart would lose it if token-agent cannot hand out a new one."
                ));
                v.advice.push(format!("Once token-agent is confirmed to answer, look at the client: {look_at_client}"));
            }
        }
    }

    // 4. tokenwatch says something is wrong that nothing above explains.
    if let Some(a) = agent {
        if v.causes.is_empty() && a.level != "OK" && !a.level.is_empty() {
            v.causes.push(Cause::AgentReportsProblem);
            v.problems.push(format!("tokenwatch reports {}: {}", a.level, a.summary));
            for r in &a.reasons {
                v.problems.push(format!("  {r}"));
            }
            v.advice.push(format!("Run `tokenwatch status --url {}` for the per-client details.", a.url));
        }
    }

    v.healthy = v.causes.is_empty();
    v.advice.dedup();
    if v.healthy {
        v.advice.push(match answered_recently(f) {
            Some(at) => format!("Nothing to do: token-agent answered a token call OK at {}.", format_rfc3339(at)),
            None => format!(
                "Nothing to do: no problem found (no call token-agent answered OK was seen in the last {} to confirm it answers).",
                fmt_secs(ANSWERED_WITHIN.as_secs_f64())
            ),
        });
    }
    v
}

/// How recent an answered call must be to count as "token-agent answers now".
/// A hung token-agent stops answering at once, so its last answer only ages:
/// five minutes is short enough that such an answer says little about a hang
/// older than that, and long enough to cover clients that call every few
/// minutes. Without such an answer the advice stays on the safe side.
pub const ANSWERED_WITHIN: Duration = Duration::from_secs(300);

/// Positive evidence that token-agent answers now: the latest token call it
/// answered OK — in its access log, or as a client's last refresh seen by the
/// running agent — within [`ANSWERED_WITHIN`] of `f.now` and after the latest
/// failure in the access log. `None`: no such evidence.
pub fn answered_recently(f: &Findings) -> Option<SystemTime> {
    let log = f.access_log.done();
    let last_error = log.and_then(|a| a.last_error);
    let from_agent = f
        .agent
        .done()
        .into_iter()
        .flat_map(|a| &a.clients)
        .filter_map(|c| c.last_success.as_deref().and_then(crate::format::time::parse_time));
    let latest = log.and_then(|a| a.last_token_ok).into_iter().chain(from_agent).max()?;
    // a time ahead of `now` (clocks) counts as now
    let age = f.now.duration_since(latest).unwrap_or_default();
    (age <= ANSWERED_WITHIN && last_error.is_none_or(|e| latest > e)).then_some(latest)
}

/// The shortest time left before a client's token expires, from the running agent.
fn min_expiry(f: &Findings) -> Option<f64> {
    let Probe::Done(a) = &f.agent else { return None };
    a.clients.iter().filter_map(|c| c.expiry_remaining_seconds).reduce(f64::min)
}

/// `754.2` → `12m 34s`; negative → `expired 12m 34s ago`.
pub fn fmt_secs(s: f64) -> String {
    let d = std::time::Duration::from_secs(s.abs().round() as u64);
    let text = humantime::format_duration(d).to_string();
    if s < 0.0 {
        format!("expired {text} ago")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::diagnose::findings::*;

    /// 2026-11-25T14:00:00Z: when the probes ran.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_615_200)
    }

    fn ago(secs: u64) -> SystemTime {
        now() - Duration::from_secs(secs)
    }

    fn healthy() -> Findings {
        Findings {
            now: now(),
            since: Duration::from_secs(1800),
            token_agent: TokenAgentFindings {
                socket: "/var/run/yc/token-agent/socket".into(),
                state: SocketState::Accepting,
                listener: Probe::Done(Some(ProcInfo { pid: 10, comm: "token-agent".into(), exe: None, unit: None })),
                lookalikes: vec![],
                unit: Probe::Skipped("systemd is not running".into()),
            },
            access_log: Probe::Done(AccessLogFindings {
                calls: 3,
                by_status: [("OK".to_string(), 3)].into(),
                last_ok: Some(ago(30)),
                last_token_ok: Some(ago(30)),
                ..Default::default()
            }),
            app_log: Probe::Done(AppLogFindings::default()),
            journal: Probe::Skipped("no journald".into()),
            compute_node_units: Probe::Skipped("no systemd".into()),
            agent: Probe::Skipped("no agent".into()),
            names: Names::default(),
        }
    }

    fn agent(level: &str) -> AgentStatus {
        AgentStatus {
            url: "http://127.0.0.1:9464".into(),
            level: level.into(),
            summary: "s".into(),
            ..Default::default()
        }
    }

    fn overdue_client(secs: f64, level: &str) -> ClientState {
        ClientState {
            client: "yc-compute-node.service".into(),
            process: "compute-node".into(),
            pid: 42,
            level: level.into(),
            overdue_seconds: secs,
            expiry_remaining_seconds: Some(30000.0),
            last_success: Some("2026-11-25T13:00:00Z".into()),
        }
    }

    fn with_errors(mut f: Findings, status: &str, n: u64) -> Findings {
        if let Probe::Done(a) = &mut f.access_log {
            a.by_status.insert(status.into(), n);
        }
        f
    }

    /// The rule that must never break: no advice to restart compute-node while
    /// token-agent fails, nor without evidence that it answers now.
    fn never_restart_compute_node(v: &Verdict) {
        never_restart_compute_node_unless(v, true)
    }

    fn never_restart_compute_node_unless(v: &Verdict, token_agent_answers: bool) {
        if v.causes.iter().any(|c| c.token_agent_failing()) || !token_agent_answers {
            for a in &v.advice {
                let l = a.to_lowercase();
                if l.contains("restart") && l.contains("compute-node") {
                    assert!(
                        a.contains("Do NOT restart"),
                        "advises restarting compute-node while token-agent fails: {a}"
                    );
                }
            }
        }
    }

    #[test]
    fn healthy_host() {
        let v = verdict(&healthy());
        assert!(v.healthy, "{v:?}");
        assert!(v.causes.is_empty() && v.problems.is_empty());
        let mut f = healthy();
        f.agent = Probe::Done(agent("OK"));
        assert!(verdict(&f).healthy);
    }

    #[test]
    fn socket_missing_or_refused_is_down_and_says_restart_token_agent_not_compute_node() {
        for state in [
            SocketState::Missing,
            SocketState::Refused,
            SocketState::NotASocket,
            SocketState::NotAccepting("timeout".into()),
        ] {
            let mut f = healthy();
            f.token_agent.state = state.clone();
            let v = verdict(&f);
            assert!(!v.healthy);
            assert_eq!(v.causes, vec![Cause::TokenAgentDown], "{state:?}");
            assert!(v.advice[0].contains("systemctl restart yc-token-agent"), "{v:?}");
            assert!(v.advice.iter().any(|a| a.contains("Do NOT restart yc-compute-node")), "{v:?}");
            never_restart_compute_node(&v);
        }
        let mut f = healthy();
        f.token_agent.state = SocketState::Missing;
        assert!(verdict(&f).problems[0].contains("ENOENT"));
        f.token_agent.state = SocketState::Refused;
        assert!(verdict(&f).problems[0].contains("ECONNREFUSED"));
    }

    #[test]
    fn unknown_socket_state_falls_back_on_the_unit_and_the_agent() {
        let mut f = healthy();
        f.token_agent.state = SocketState::NoPermission("EACCES".into());
        assert!(verdict(&f).healthy, "cannot tell, nothing else says down");
        f.token_agent.unit = Probe::Done(UnitState {
            name: "yc-token-agent.service".into(),
            load: "loaded".into(),
            active: "failed".into(),
            sub: "failed".into(),
            since: String::new(),
        });
        assert_eq!(verdict(&f).causes, vec![Cause::TokenAgentDown]);
        let mut f = healthy();
        f.token_agent.state = SocketState::Error("EIO".into());
        f.agent = Probe::Done(AgentStatus { reachable: Some(false), ..agent("WARN") });
        assert_eq!(verdict(&f).causes, vec![Cause::TokenAgentDown]);
    }

    #[test]
    fn an_uninstalled_unit_is_not_down() {
        let mut f = healthy();
        f.token_agent.state = SocketState::Error("EIO".into());
        f.token_agent.unit = Probe::Done(UnitState {
            name: "x".into(),
            load: "not-found".into(),
            active: "inactive".into(),
            ..Default::default()
        });
        assert!(verdict(&f).healthy);
    }

    #[test]
    fn down_reports_time_left_from_the_agent() {
        let mut f = healthy();
        f.token_agent.state = SocketState::Missing;
        f.agent = Probe::Done(AgentStatus { clients: vec![overdue_client(0.0, "WARN")], ..agent("WARN") });
        let v = verdict(&f);
        assert!(v.advice.iter().any(|a| a.contains("expires in 8h 20m")), "{v:?}");
        // overdue is explained by token-agent being down: no compute-node-side cause
        assert_eq!(v.causes, vec![Cause::TokenAgentDown]);
        never_restart_compute_node(&v);
    }

    #[test]
    fn unavailable_is_the_iam_side() {
        let f = with_errors(healthy(), "UNAVAILABLE", 5);
        let v = verdict(&f);
        assert_eq!(v.causes, vec![Cause::IamSide]);
        assert!(v.problems[0].contains("UNAVAILABLE ×5"), "{v:?}");
        assert!(v.advice.iter().any(|a| a.contains("IAM on-call")));
        never_restart_compute_node(&v);
        for s in ["DEADLINE_EXCEEDED", "INTERNAL"] {
            assert_eq!(verdict(&with_errors(healthy(), s, 1)).causes, vec![Cause::IamSide]);
        }
    }

    #[test]
    fn errors_from_the_running_agent_count_too() {
        let mut f = healthy();
        f.access_log = Probe::Skipped("unreadable".into());
        f.agent =
            Probe::Done(AgentStatus { errors_in_window: [("UNAVAILABLE".to_string(), 2)].into(), ..agent("WARN") });
        assert_eq!(verdict(&f).causes, vec![Cause::IamSide]);
    }

    #[test]
    fn permission_denied_is_the_caller() {
        let v = verdict(&with_errors(healthy(), "PERMISSION_DENIED", 1));
        assert_eq!(v.causes, vec![Cause::CallerRejected]);
        never_restart_compute_node(&v);
    }

    #[test]
    fn app_log_errors_alone_are_token_agent_errors() {
        let mut f = healthy();
        f.app_log = Probe::Done(AppLogFindings { errors: 2, ..Default::default() });
        let v = verdict(&f);
        assert_eq!(v.causes, vec![Cause::TokenAgentErrors]);
        assert!(v.problems[0].contains("2 ERROR"));
        never_restart_compute_node(&v);
    }

    #[test]
    fn overdue_with_healthy_token_agent_is_the_compute_node_side() {
        let mut f = healthy();
        f.agent = Probe::Done(AgentStatus { clients: vec![overdue_client(300.0, "WARN")], ..agent("WARN") });
        let v = verdict(&f);
        assert_eq!(v.causes, vec![Cause::ComputeNodeSide]);
        assert!(v.problems[0].contains("5m past refresh_at"), "{v:?}");
        assert!(v.advice[0].contains("journalctl -u yc-compute-node"), "{v:?}");
        // a client at OK level (within warn_after) is not a problem
        f.agent = Probe::Done(AgentStatus { clients: vec![overdue_client(30.0, "OK")], ..agent("OK") });
        assert!(verdict(&f).healthy);
    }

    #[test]
    fn overdue_while_token_agent_fails_blames_token_agent_only() {
        let mut f = with_errors(healthy(), "UNAVAILABLE", 3);
        f.agent = Probe::Done(AgentStatus { clients: vec![overdue_client(900.0, "CRIT")], ..agent("CRIT") });
        let v = verdict(&f);
        assert_eq!(v.causes, vec![Cause::IamSide]);
        never_restart_compute_node(&v);
        assert!(!v.advice.iter().any(|a| a.contains("restarting it is safe")));
    }

    #[test]
    fn unexplained_agent_level_is_reported() {
        let mut f = healthy();
        f.agent = Probe::Done(AgentStatus { reasons: vec!["something".into()], ..agent("CRIT") });
        let v = verdict(&f);
        assert_eq!(v.causes, vec![Cause::AgentReportsProblem]);
        assert!(!v.healthy);
    }

    /// What shows that token-agent answers now (or does not).
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Answered {
        /// A GetToken answered OK 30 s ago, in the access log.
        RecentlyInLog,
        /// Another client refreshed 10 s ago, as the running agent saw it.
        RecentlyByAgent,
        /// The last OK answer is 20 min old: a hung token-agent looks like this.
        LongAgo,
        /// The last OK answer came before the last failure.
        BeforeLastError,
        /// Nothing answered in the window at all.
        Never,
    }

    impl Answered {
        const ALL: [Answered; 5] =
            [Self::RecentlyInLog, Self::RecentlyByAgent, Self::LongAgo, Self::BeforeLastError, Self::Never];

        fn evidence(self) -> bool {
            matches!(self, Self::RecentlyInLog | Self::RecentlyByAgent)
        }

        fn apply(self, f: &mut Findings) {
            let Probe::Done(log) = &mut f.access_log else { unreachable!() };
            (log.last_token_ok, log.last_error) = match self {
                Self::RecentlyInLog => (Some(ago(30)), None),
                Self::RecentlyByAgent | Self::Never => (None, None),
                Self::LongAgo => (Some(ago(1200)), None),
                Self::BeforeLastError => (Some(ago(60)), Some(ago(30))),
            };
            log.last_ok = log.last_token_ok;
            if self == Self::RecentlyByAgent {
                if let Probe::Done(a) = &mut f.agent {
                    a.clients.push(ClientState {
                        client: "other".into(),
                        level: "OK".into(),
                        last_success: Some("2026-11-25T13:59:50Z".into()),
                        ..Default::default()
                    });
                }
            }
        }
    }

    #[test]
    fn never_restart_compute_node_in_any_combination() {
        let states =
            [SocketState::Accepting, SocketState::Missing, SocketState::Refused, SocketState::Error("x".into())];
        for state in states {
            for status in [None, Some("UNAVAILABLE"), Some("PERMISSION_DENIED"), Some("DATA_LOSS")] {
                for app in [0, 3] {
                    for level in ["OK", "WARN", "CRIT"] {
                        for answered in Answered::ALL {
                            let mut f = healthy();
                            f.token_agent.state = state.clone();
                            if let Some(s) = status {
                                f = with_errors(f, s, 1);
                            }
                            f.app_log = Probe::Done(AppLogFindings { errors: app, ..Default::default() });
                            f.agent = Probe::Done(AgentStatus {
                                clients: vec![overdue_client(700.0, level)],
                                ..agent(level)
                            });
                            answered.apply(&mut f);
                            let v = verdict(&f);
                            never_restart_compute_node_unless(&v, answered.evidence());
                            assert_eq!(v.healthy, v.causes.is_empty());
                            let safe = v.advice.iter().any(|a| a.contains("restarting it is safe"));
                            let expect_safe = state == SocketState::Accepting
                                && status.is_none()
                                && app == 0
                                && level != "OK"
                                && answered.evidence();
                            assert_eq!(safe, expect_safe, "{state:?} {status:?} app={app} {level} {answered:?}: {v:#?}");
                        }
                    }
                }
            }
        }
    }

    /// A hung token-agent: connects complete (listen backlog), nothing is
    /// logged, no error is seen — compute-node's refresh just goes overdue.
    #[test]
    fn socket_accepting_without_a_recent_answer_says_check_token_agent_first() {
        for answered in [Answered::LongAgo, Answered::Never] {
            let mut f = healthy();
            f.agent = Probe::Done(AgentStatus { clients: vec![overdue_client(300.0, "WARN")], ..agent("WARN") });
            answered.apply(&mut f);
            let v = verdict(&f);
            assert_eq!(v.causes, vec![Cause::ComputeNodeSide], "{v:#?}");
            assert!(v.problems.iter().any(|p| p.contains("it may be hung")), "{v:#?}");
            assert!(v.advice[0].starts_with("Check token-agent first"), "{v:#?}");
            assert!(v.advice.iter().any(|a| a.contains("Do NOT restart yc-compute-node until token-agent")), "{v:#?}");
            assert!(!v.advice.iter().any(|a| a.contains("restarting it is safe")), "{v:#?}");
            never_restart_compute_node_unless(&v, false);
        }
        // a recent answer is the evidence that makes the restart safe
        let mut f = healthy();
        f.agent = Probe::Done(AgentStatus { clients: vec![overdue_client(300.0, "WARN")], ..agent("WARN") });
        let v = verdict(&f);
        assert!(v.advice.iter().any(|a| a.contains("restarting it is safe")), "{v:#?}");
        assert!(answered_recently(&f) == Some(ago(30)));
    }

    #[test]
    fn formats_seconds() {
        assert_eq!(fmt_secs(754.2), "12m 34s");
        assert_eq!(fmt_secs(-60.0), "expired 1m ago");
    }
}
