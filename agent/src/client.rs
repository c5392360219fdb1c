//! `tokenwatch check` and `tokenwatch status`: ask a running agent's `/status`.
use std::time::{Duration, SystemTime};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::Value;

pub const DEFAULT_URL: &str = "http://127.0.0.1:9464";
const TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches and parses `URL/status`; the error is one line for the UNKNOWN output.
pub async fn fetch_status(base: &str) -> Result<Value, String> {
    let url = format!("{}/status", base.trim_end_matches('/'));
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let resp = tokio::time::timeout(TIMEOUT, client.get(uri))
        .await
        .map_err(|_| format!("no answer from {url} within {TIMEOUT:?}"))?
        .map_err(|e| format!("agent unreachable at {url}: {e}"))?;
    let code = resp.status();
    let body = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
        .await
        .map_err(|_| format!("{url}: body not received within {TIMEOUT:?}"))?
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    if !code.is_success() {
        return Err(format!("{url} answered {code}: {}", String::from_utf8_lossy(&body).trim()));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: not a status document: {e}"))
}

/// Nagios/Juggler exit code for a level string.
pub fn exit_code(level: &str) -> u8 {
    match level {
        "OK" => 0,
        "WARN" => 1,
        "CRIT" => 2,
        _ => 3,
    }
}

/// How old `/status`'s `generated_at` may be before `check` calls the
/// document stale. The agent re-evaluates twice a second, so a snapshot older
/// than this means its state task is stuck (and its level frozen); 60 s rides
/// out a busy host or a slow scrape many times over and is still well inside
/// `alert.warn_after` (2 min), so a stuck agent cannot hide a late refresh for
/// long behind a frozen OK.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// The one line `check` prints: `LEVEL: summary`, and its exit code.
///
/// UNKNOWN (3) besides an unknown level: when the document is stale or has no
/// usable `generated_at` (its level cannot be trusted to be current), and when
/// the agent has no data — no client observed yet and the level OK, which
/// would otherwise be an OK about nothing. WARN and CRIT stand without
/// clients: token-agent errors alone must still page.
pub fn check_line(status: &Value, now: SystemTime) -> (u8, String) {
    let level = status["level"].as_str().unwrap_or("UNKNOWN");
    let summary = status["summary"].as_str().unwrap_or("no summary");
    let code = exit_code(level);
    if code == 3 {
        return (3, format!("UNKNOWN: {summary}"));
    }
    let generated = status["generated_at"].as_str();
    let Some(at) = generated.and_then(crate::format::time::parse_time) else {
        return (
            3,
            format!(
                "UNKNOWN: status has no valid generated_at ({}): cannot tell whether {level} is current; it said: {summary}",
                generated.map_or("missing".to_string(), |g| format!("{g:?}"))
            ),
        );
    };
    let (age, ahead) = match now.duration_since(at) {
        Ok(d) => (d, false),
        Err(e) => (e.duration(), true),
    };
    if age > STALE_AFTER {
        let age = humantime::format_duration(Duration::from_secs(age.as_secs()));
        let when = if ahead {
            format!("{age} in the future (clocks differ?)")
        } else {
            format!("{age} ago: the agent's evaluation is stuck")
        };
        return (
            3,
            format!(
                "UNKNOWN: stale status: generated {when} (at {}); last said {level}: {summary}",
                generated.unwrap_or_default()
            ),
        );
    }
    let no_clients = status["clients"].as_array().is_none_or(|c| c.is_empty());
    if code == 0 && no_clients {
        return (3, format!("UNKNOWN: no data: no token-agent client observed yet; sources: {}", sources_line(status)));
    }
    (code, format!("{level}: {summary}"))
}

/// `ebpf running, access_log failed (why), …`: each source's state, with the
/// detail of those not running.
fn sources_line(status: &Value) -> String {
    let Some(sources) = status["sources"].as_object().filter(|s| !s.is_empty()) else {
        return "none reported".into();
    };
    sources
        .iter()
        .map(|(name, v)| {
            let state = v["state"].as_str().unwrap_or("unknown");
            match v["detail"].as_str().map(str::trim).filter(|d| !d.is_empty()) {
                Some(detail) if state != "running" && detail != state => format!("{name} {state} ({detail})"),
                _ => format!("{name} {state}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table `status` prints for a person.
pub fn status_table(s: &Value) -> String {
    let mut out = String::new();
    let str_of = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| "-".into());
    // times to the second, so they fit their columns; as sent when they do not parse
    let time_of = |v: &Value| match v.as_str().and_then(crate::format::time::parse_time) {
        Some(t) => humantime::format_rfc3339_seconds(t).to_string(),
        None => str_of(v),
    };
    out += &format!("level: {}   {}\n", str_of(&s["level"]), str_of(&s["summary"]));
    for r in s["reasons"].as_array().into_iter().flatten() {
        out += &format!("  - {}\n", str_of(r));
    }
    let ta = &s["token_agent"];
    let reach = match ta["reachable"].as_bool() {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "unknown",
    };
    out += &format!("token-agent: {}  reachable: {reach}  errors in window: {}\n", str_of(&ta["socket"]), ta["errors_in_window"]);
    out += &format!(
        "\n{:<8} {:<28} {:<20} {:<21} {:<21} {:<21} {:>8} {:<5} {}\n",
        "PID", "CLIENT", "PROCESS", "LAST REFRESH", "REFRESH AT", "EXPIRES AT", "OVERDUE", "LEVEL", "CONNECT ERRORS"
    );
    for c in s["clients"].as_array().into_iter().flatten() {
        out += &format!(
            "{:<8} {:<28} {:<20} {:<21} {:<21} {:<21} {:>7.0}s {:<5} {}\n",
            // a JSON value ignores the width: pad its text
            c["pid"].to_string(),
            str_of(&c["client"]),
            str_of(&c["process"]),
            time_of(&c["last_success"]),
            time_of(&c["refresh_at"]),
            time_of(&c["expires_at"]),
            c["overdue_seconds"].as_f64().unwrap_or(0.0),
            str_of(&c["level"]),
            c["connect_errors"]
        );
    }
    out += "\nsources:\n";
    if let Some(src) = s["sources"].as_object() {
        for (name, v) in src {
            out += &format!("  {:<11} {:<9} {}\n", name, str_of(&v["state"]), str_of(&v["detail"]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2026-11-25T14:00:00Z
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_615_200)
    }

    /// A current status document at `level`, with one client.
    fn status(level: &str, summary: &str) -> Value {
        json!({"level": level, "summary": summary, "generated_at": "2026-11-25T13:59:59.500Z",
               "clients": [{"pid": 7, "client": "yc-compute-node.service", "level": level}],
               "sources": {"ebpf": {"state": "running", "detail": ""}}})
    }

    #[test]
    fn check_maps_levels_to_exit_codes() {
        assert_eq!(check_line(&status("OK", "fine"), now()), (0, "OK: fine".into()));
        assert_eq!(check_line(&status("WARN", "late"), now()), (1, "WARN: late".into()));
        assert_eq!(check_line(&status("CRIT", "very late"), now()).0, 2);
        assert_eq!(check_line(&json!({"summary": "?"}), now()), (3, "UNKNOWN: ?".into()));
    }

    /// eBPF disabled, both logs missing: nothing was ever observed.
    fn no_data(level: &str) -> Value {
        json!({"level": level, "summary": "no token-agent clients observed yet", "reasons": [],
               "generated_at": "2026-11-25T14:00:00Z",
               "token_agent": {"socket": "/s", "reachable": null, "calls_in_window": 0, "errors_in_window": {}},
               "clients": [],
               "sources": {"ebpf": {"state": "disabled", "detail": "[ebpf] enabled = false"},
                           "access_log": {"state": "failed", "detail": "/x/access.log: no such file"},
                           "app_log": {"state": "running", "detail": "tailing /x/app.log"}}})
    }

    #[test]
    fn ok_without_any_client_is_unknown_no_data_naming_the_sources() {
        let (code, line) = check_line(&no_data("OK"), now());
        assert_eq!(code, 3, "{line}");
        assert_eq!(
            line,
            "UNKNOWN: no data: no token-agent client observed yet; sources: access_log failed (/x/access.log: no such file), app_log running, ebpf disabled ([ebpf] enabled = false)"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn warn_and_crit_without_clients_still_page() {
        // e.g. token-agent's app log has errors, but no client call was seen
        let mut s = no_data("WARN");
        s["summary"] = json!("token-agent logged 2 error(s) in 5m");
        assert_eq!(check_line(&s, now()), (1, "WARN: token-agent logged 2 error(s) in 5m".into()));
        assert_eq!(check_line(&no_data("CRIT"), now()).0, 2);
    }

    #[test]
    fn a_stale_or_undated_status_is_unknown() {
        let mut s = status("OK", "fine");
        for (at, code) in [
            ("2026-11-25T13:59:01Z", 0),
            ("2026-11-25T13:58:59Z", 3),
            ("2026-11-25T12:00:00Z", 3),
            ("2026-11-25T14:00:30Z", 0),
            ("2026-11-25T14:05:00Z", 3),
        ] {
            s["generated_at"] = json!(at);
            assert_eq!(check_line(&s, now()).0, code, "{at}");
        }
        let mut crit = status("CRIT", "very late");
        crit["generated_at"] = json!("2026-11-25T12:00:00Z");
        let (_, line) = check_line(&crit, now());
        assert!(line.starts_with("UNKNOWN: stale status: generated 2h ago"), "{line}");
        assert!(line.ends_with("last said CRIT: very late"), "{line}");
        s.as_object_mut().unwrap().remove("generated_at");
        let (code, line) = check_line(&s, now());
        assert_eq!(code, 3);
        assert!(line.contains("no valid generated_at"), "{line}");
        s["generated_at"] = json!("yesterday");
        assert_eq!(check_line(&s, now()).0, 3);
    }

    #[test]
    fn status_table_shows_expires_at() {
        let s = json!({"level": "OK", "summary": "fine", "token_agent": {},
            "clients": [{"pid": 7, "client": "yc-compute-node.service", "process": "compute-node",
                         "last_success": "2026-11-25T13:00:00Z", "refresh_at": "2026-11-25T14:00:00Z",
                         "expires_at": "2026-11-25T23:00:00.123456Z", "overdue_seconds": 0.0, "level": "OK"}]});
        let t = status_table(&s);
        let header = t.lines().find(|l| l.starts_with("PID")).unwrap();
        let row = t.lines().find(|l| l.starts_with('7')).unwrap();
        let (refresh, expires) = (header.find("REFRESH AT").unwrap(), header.find("EXPIRES AT").expect(&t));
        assert!(refresh < expires, "{t}");
        // each value sits under its header
        assert_eq!(&row[refresh..refresh + 20], "2026-11-25T14:00:00Z", "{t}");
        assert_eq!(&row[expires..expires + 20], "2026-11-25T23:00:00Z", "{t}");
    }

    #[tokio::test]
    async fn unreachable_agent_is_an_error_line() {
        // port 9 (discard) on loopback: nothing listens there in the test environment
        let e = fetch_status("http://127.0.0.1:9").await.unwrap_err();
        assert!(e.contains("127.0.0.1:9") && !e.contains('\n'), "{e}");
    }
}
