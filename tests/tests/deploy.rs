//! deploy/: the Prometheus rules pass promtool and their unit tests, the rules
//! and the Grafana dashboard query only metrics the agent exports, the systemd
//! unit is hardened and verifies, the packaged config parses.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use tokenwatch_tests::agent_proc::agent_bin;

/// The Prometheus names of INTERFACE.md's metrics table (histograms with their series suffixes).
const EXPORTED: &[&str] = &[
    "tokenwatch_alert_level",
    "iam_token_refresh_overdue_seconds",
    "iam_token_expiry_remaining_seconds",
    "rpc_client_call_duration_seconds_bucket",
    "rpc_client_call_duration_seconds_sum",
    "rpc_client_call_duration_seconds_count",
    "token_agent_calls_total",
    "token_agent_connect_errors_total",
    "tokenwatch_log_lines_total",
    "tokenwatch_ebpf_events_lost_total",
];
/// Series Prometheus makes itself for every target (not exported, always there).
const SYNTHETIC: &[&str] = &["up"];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// `tool` when installed; else fail under CI, or skip with the reason.
fn tool_or_skip(tool: &str, package: &str) -> bool {
    if Command::new(tool).arg("--version").output().is_ok() {
        return true;
    }
    let why = format!("{tool} not found (Debian package {package}; `cargo xtask setup` installs it)");
    if in_ci() {
        panic!("{why} (CI is set: this test must run)");
    }
    eprintln!("SKIPPED: {why}");
    false
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed ({}):\n{text}", out.status);
    text
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    if !tool_or_skip("promtool", "prometheus") {
        return;
    }
    let dir = deploy().join("prometheus");
    let out = run_ok(Command::new("promtool").args(["check", "rules", "tokenwatch-rules.yml"]).current_dir(&dir));
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run_ok(Command::new("promtool").args(["test", "rules", "tokenwatch-rules.test.yml"]).current_dir(&dir));
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run_ok(Command::new("promtool").args(["check", "config", "scrape.yml"]).current_dir(&dir));
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The metric names a PromQL expression selects: identifiers that are not
/// functions, keywords, label names, durations or Grafana variables.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        // aggregation operators, which may be followed by `by (…)` rather than `(`
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    let b = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // the index after the `close` that ends the group opened at `i`, strings skipped
    let skip_to = |i: usize, close: u8| {
        let mut j = i + 1;
        while j < b.len() && b[j] != close {
            if matches!(b[j], b'"' | b'\'' | b'`') {
                let quote = b[j];
                j += 1;
                while j < b.len() && b[j] != quote {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
            }
            j += 1;
        }
        j + 1
    };
    let next_non_space = |i: usize| b[i..].iter().position(|c| !c.is_ascii_whitespace()).map(|n| i + n);
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                // a string: skip it, escapes included
                let mut j = i + 1;
                while j < b.len() && b[j] != c {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                i = j + 1;
            }
            b'{' => i = skip_to(i, b'}'), // label matchers
            b'[' => i = skip_to(i, b']'), // ranges
            b'$' => {
                // Grafana variables: $x, ${x}, $__rate_interval
                i += 1;
                if b.get(i) == Some(&b'{') {
                    i = skip_to(i, b'}');
                } else {
                    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                        i += 1;
                    }
                }
            }
            b'0'..=b'9' | b'.' => {
                // numbers and durations (0.99, 5m, 1e3)
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                    i += 1;
                }
                let word = &expr[start..i];
                let next = next_non_space(i).map(|j| b[j]);
                if GROUPING.contains(&word) {
                    // by (a, b): label names, not metrics
                    if let (Some(b'('), Some(j)) = (next, next_non_space(i)) {
                        i = skip_to(j, b')');
                    }
                } else if KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) || next == Some(b'(') {
                    // a keyword or a function call
                } else {
                    names.insert(word.to_string());
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn metric_name_extraction() {
    let n = metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(rpc_client_call_duration_seconds_bucket{instance=~"$instance", x="a}b"}[$__rate_interval]))) > bool 0.5 unless on (instance) up offset 5m"#,
    );
    assert_eq!(n, ["rpc_client_call_duration_seconds_bucket", "up"].map(String::from).into());
    let n = metric_names("sum(rate(a_total[5m])) by (status) / ignoring(x) group_left b");
    assert_eq!(n, ["a_total", "b"].map(String::from).into());
    let n = metric_names("max by (instance) (tokenwatch_alert_level) == 2 or count without (x) (c{a=\"\\\"}\"})");
    assert_eq!(n, ["c", "tokenwatch_alert_level"].map(String::from).into());
}

fn assert_known(what: &str, expr: &str) -> usize {
    let names = metric_names(expr);
    assert!(!names.is_empty(), "{what}: no metric in {expr:?}");
    for n in &names {
        assert!(
            EXPORTED.contains(&n.as_str()) || SYNTHETIC.contains(&n.as_str()),
            "{what} queries {n:?}, which the agent does not export (INTERFACE.md): {expr}"
        );
    }
    names.len()
}

/// Every `expr` string anywhere in a JSON document.
fn json_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => json_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| json_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn dashboard_parses_and_queries_only_exported_metrics() {
    let path = deploy().join("grafana/tokenwatch.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("dashboard is JSON");
    assert_eq!(dash["uid"], "tokenwatch");
    let mut exprs = Vec::new();
    json_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 10, "{} queries", exprs.len());
    let mut used = BTreeSet::new();
    for e in &exprs {
        assert_known("dashboard", e);
        used.extend(metric_names(e));
    }
    // the template variables: label_values(METRIC{…}, label)
    for v in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            let inner = q.strip_prefix("label_values(").and_then(|r| r.rsplit_once(',')).map(|(m, _)| m).expect(q);
            assert_known("dashboard variable", inner);
        }
    }
    // what the issue asks to see: level, overdue, expiry, calls and errors, duration, agent health
    for m in EXPORTED {
        if !m.ends_with("_sum") {
            assert!(used.contains(*m), "the dashboard shows nothing of {m}");
        }
    }
    // every panel has a datasource, a title and a position
    for p in dash["panels"].as_array().unwrap() {
        assert!(p["title"].is_string() && p["gridPos"]["w"].is_number(), "{p}");
    }
}

/// The `expr:` values of a rules file (inline or `|` blocks): enough YAML for our own file.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("expr:") {
            let rest = rest.trim();
            if rest.starts_with('|') || rest.starts_with('>') {
                let indent = line.len() - trimmed.len();
                let mut block = Vec::new();
                while i + 1 < lines.len() {
                    let l = lines[i + 1];
                    let ind = l.len() - l.trim_start().len();
                    if !l.trim().is_empty() && ind <= indent {
                        break;
                    }
                    block.push(l.trim());
                    i += 1;
                }
                out.push(block.join(" "));
            } else {
                out.push(rest.trim_matches(|c| c == '\'' || c == '"').to_string());
            }
        }
        i += 1;
    }
    out
}

#[test]
fn rules_query_only_exported_metrics_and_say_the_runbook() {
    let text = std::fs::read_to_string(deploy().join("prometheus/tokenwatch-rules.yml")).unwrap();
    let exprs = rule_exprs(&text);
    assert_eq!(exprs.len(), text.matches("- alert:").count(), "{exprs:#?}");
    for e in &exprs {
        assert_known("rules", e);
    }
    for want in [
        "iam_token_refresh_overdue_seconds > 120",
        "iam_token_refresh_overdue_seconds > 600",
        "tokenwatch_alert_level) == 2",
        r#"(increase(token_agent_calls_total{status!="OK"}[5m])) > 0"#,
        "(increase(token_agent_connect_errors_total[5m])) > 0",
        r#"tokenwatch_log_lines_total{result="unparsed"}"#,
        "tokenwatch_ebpf_events_lost_total",
        "severity: warning",
        "severity: critical",
    ] {
        assert!(text.contains(want), "rules lack {want:?}");
    }
    // the runbook: no annotation may advise restarting compute-node, only NOT to
    for line in text.lines() {
        let l = line.to_lowercase();
        for pat in
            ["restart yc-compute-node", "restart compute-node", "restarting yc-compute-node", "restarting compute-node"]
        {
            for (at, _) in l.match_indices(pat) {
                assert!(
                    l[..at].ends_with("not ") || l[..at].ends_with("never "),
                    "advises restarting compute-node: {line}"
                );
            }
        }
    }
}

fn unit_text() -> String {
    std::fs::read_to_string(deploy().join("systemd/tokenwatch.service")).unwrap()
}

/// `Key=value` settings of the unit (comments skipped).
fn setting(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

#[test]
fn systemd_unit_is_least_privilege() {
    let u = unit_text();
    let one = |k: &str| setting(&u, k).join(" ");
    assert_eq!(one("ExecStart"), "/usr/bin/tokenwatch run -c /etc/tokenwatch/config.toml");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("StateDirectory"), "tokenwatch");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("NoNewPrivileges"), "yes");
    // not root: a dynamic user, unless an explicit non-root User= replaces it
    assert!(
        one("DynamicUser") == "yes" || !matches!(one("User").as_str(), "" | "root" | "0"),
        "the agent must not run as root"
    );
    let caps = |k: &str| one(k).split_whitespace().map(String::from).collect::<BTreeSet<_>>();
    let allowed: BTreeSet<String> =
        ["CAP_BPF", "CAP_PERFMON", "CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"].map(String::from).into();
    assert_eq!(caps("CapabilityBoundingSet"), allowed);
    assert!(caps("AmbientCapabilities").is_subset(&allowed));
    assert!(!u.lines().any(|l| !l.starts_with('#') && l.contains("CAP_SYS_ADMIN")), "no CAP_SYS_ADMIN");
    for (k, v) in [
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelTunables", "yes"),
    ] {
        assert_eq!(one(k), v, "{k}");
    }
    // /proc must show the other processes
    assert!(!matches!(one("ProtectProc").as_str(), "invisible" | "noaccess"));
    assert!(!matches!(one("ProcSubset").as_str(), "pid"));
    assert!(one("Wants").contains("sys-kernel-tracing.mount"));
}

#[test]
fn systemd_unit_verifies() {
    if !Path::new("/usr/bin/systemd-analyze").exists()
        && Command::new("systemd-analyze").arg("--version").output().is_err()
    {
        if in_ci() {
            panic!("systemd-analyze not found (CI is set)");
        }
        eprintln!("SKIPPED: systemd-analyze not found");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("tokenwatch.service");
    // the binary is not installed here: point ExecStart at one that is
    std::fs::write(&unit, unit_text().replace("/usr/bin/tokenwatch", "/bin/true")).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&unit).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "systemd-analyze verify: {}\n{err}", out.status);
}

/// `diagnose` loads the config first: exit 2 means it did not parse.
fn config_parses(path: &Path) {
    let out = Command::new(agent_bin())
        .args(["diagnose", "--since", "1m", "-c"])
        .arg(path)
        .env("TOKENWATCH_LOG", "error")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", agent_bin().display()));
    // 0 healthy / 1 problems found; 2 is a config error, anything else a crash
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}: exit {:?}: {}",
        path.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn packaged_config_parses_commented_and_uncommented() {
    let path = deploy().join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    config_parses(&path);
    // every documented default, switched on, is accepted too (delimited-only keys aside)
    let dir = tempfile::tempdir().unwrap();
    let on: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(kv)
                if kv.split_once('=').is_some_and(|(k, _)| {
                    let k = k.trim();
                    !k.is_empty()
                        && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        && k != "delimiter"
                        && k != "columns"
                }) =>
            {
                kv.to_string()
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let keys = on.lines().filter(|l| !l.starts_with('#') && l.contains('=')).count();
    assert!(keys >= 17, "{keys} keys uncommented:\n{on}");
    let uncommented = dir.path().join("config.toml");
    std::fs::write(&uncommented, &on).unwrap();
    config_parses(&uncommented);
}
