//! `tokenwatch check` and `tokenwatch status`: ask a running agent's `/status`.
use std::time::Duration;

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

/// The one line `check` prints: `LEVEL: summary`.
pub fn check_line(status: &Value) -> (u8, String) {
    let level = status["level"].as_str().unwrap_or("UNKNOWN");
    let summary = status["summary"].as_str().unwrap_or("no summary");
    let code = exit_code(level);
    let level = if code == 3 { "UNKNOWN" } else { level };
    (code, format!("{level}: {summary}"))
}

/// The table `status` prints for a person.
pub fn status_table(s: &Value) -> String {
    let mut out = String::new();
    let str_of = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| "-".into());
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
        "\n{:<8} {:<28} {:<20} {:<21} {:<21} {:>8} {:<5} {}\n",
        "PID", "CLIENT", "PROCESS", "LAST REFRESH", "REFRESH AT", "OVERDUE", "LEVEL", "CONNECT ERRORS"
    );
    for c in s["clients"].as_array().into_iter().flatten() {
        out += &format!(
            "{:<8} {:<28} {:<20} {:<21} {:<21} {:>7.0}s {:<5} {}\n",
            c["pid"],
            str_of(&c["client"]),
            str_of(&c["process"]),
            str_of(&c["last_success"]),
            str_of(&c["refresh_at"]),
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

    #[test]
    fn check_maps_levels_to_exit_codes() {
        assert_eq!(check_line(&json!({"level": "OK", "summary": "fine"})), (0, "OK: fine".into()));
        assert_eq!(check_line(&json!({"level": "WARN", "summary": "late"})).0, 1);
        assert_eq!(check_line(&json!({"level": "CRIT", "summary": "very late"})).0, 2);
        assert_eq!(check_line(&json!({"summary": "?"})), (3, "UNKNOWN: ?".into()));
    }

    #[tokio::test]
    async fn unreachable_agent_is_an_error_line() {
        // port 9 (discard) on loopback: nothing listens there in the test environment
        let e = fetch_status("http://127.0.0.1:9").await.unwrap_err();
        assert!(e.contains("127.0.0.1:9") && !e.contains('\n'), "{e}");
    }
}
