//! `cargo xtask bench`: every criterion benchmark, then one table of figures
//! as ratios against the baseline measured in the same run.
use anyhow::{Context, Result};

use crate::{build, util};

/// Bench targets of the agent, in run order.
const BENCHES: &[&str] = &["connect_probe", "capture", "parse", "decode", "tail"];

/// (group, baseline id, measured id, what it means). Time ratios: measured
/// time / baseline time (lower is better, 1.0 = no cost). Throughput ratios
/// (groups with a criterion throughput): measured / baseline throughput.
pub const RATIOS: &[(&str, &str, &str, &str)] = &[
    ("connect_unrelated", "agent_off", "agent_on", "connect()+close(), unwatched socket: agent on / off"),
    ("pipe_write_64", "agent_off", "capture_idle", "64 B pipe write, unwatched process: tracepoints idle / off"),
    ("pipe_write_64", "agent_off", "capture_active", "64 B pipe write, unwatched process: tracepoints active / off"),
    ("pipe_write_64", "agent_off", "windows_idle", "64 B pipe write, unwatched process: windows idle / off"),
    ("pipe_write_64", "agent_off", "fentry_idle", "the same on fentry/fexit: capture idle / off"),
    ("pipe_write_64", "agent_off", "fentry_active", "the same on fentry/fexit: capture active / off"),
    ("get_token", "agent_off", "capture_active", "GetToken call latency (tonic client): captured / off"),
    ("get_token", "agent_off", "fentry_active", "the same, captured on fentry/fexit / off"),
    ("parse", "split_lines", "tskv", "tskv parse throughput / memchr line split"),
    ("parse", "split_lines", "logfmt", "logfmt parse throughput / memchr line split"),
    ("parse", "split_lines", "json", "json parse throughput / memchr line split"),
    ("parse", "split_lines", "delimited", "delimited parse throughput / memchr line split"),
];

/// Absolute throughputs worth printing on their own.
const THROUGHPUTS: &[(&str, &str, &str)] = &[
    ("decode", "get_token_stream", "HTTP/2+HPACK+gRPC decode of captured bytes"),
    ("decode", "get_token_stream_late_join", "the same, joined late"),
    ("tail", "poll_200B_lines", "tailing a growing file (lines of 200 B)"),
    ("tail", "appended_to_applied", "lines appended → parsed → applied to the state"),
];

pub fn run() -> Result<()> {
    // release simulator binaries for the GetToken latency figures
    let built = build::all(build::Profile::Release)?;
    let sims = built.agent.parent().context("agent path")?.to_path_buf();
    // stale estimates from an earlier run must not stand in for this one
    let _ = std::fs::remove_dir_all(util::target_dir().join("criterion"));
    let mut cmd = util::host_cargo();
    cmd.args(["bench", "-p", "tokenwatch"]);
    for b in BENCHES {
        cmd.args(["--bench", b]);
    }
    util::run(cmd.env("TOKENWATCH_EBPF_OBJ", &built.ebpf_object).env("TOKENWATCH_SIM_DIR", &sims))?;

    println!("\n{:<62} {:>14} {:>14} {:>9}", "figure (one run)", "baseline", "measured", "ratio");
    for (group, base, measured, what) in RATIOS {
        match (estimate(group, base), estimate(group, measured)) {
            (Ok(b), Ok(m)) => println!("{what:<62} {:>14} {:>14} {:>8.3}x", b.show(), m.show(), m.ratio_to(&b)),
            (b, m) => println!("{what:<62} not measured: {:#}", b.err().or(m.err()).unwrap()),
        }
    }
    for (group, id, what) in THROUGHPUTS {
        match estimate(group, id) {
            Ok(e) => println!("{what:<62} {:>14}", e.show()),
            Err(e) => println!("{what:<62} not measured: {e:#}"),
        }
    }
    println!();
    crate::bench_agent::run()
}

/// Criterion's mean for one benchmark, with its throughput if it declared one.
struct Estimate {
    mean_ns: f64,
    /// (amount per iteration, unit) — bytes or elements.
    per_iter: Option<(f64, &'static str)>,
}

impl Estimate {
    fn rate(&self) -> Option<f64> {
        self.per_iter.map(|(n, _)| n / (self.mean_ns / 1e9))
    }

    fn show(&self) -> String {
        match (self.rate(), self.per_iter) {
            (Some(r), Some((_, "B"))) => format!("{:.1} MB/s", r / 1e6),
            (Some(r), _) => format!("{:.2} M/s", r / 1e6),
            _ if self.mean_ns >= 1e5 => format!("{:.1} µs", self.mean_ns / 1e3),
            _ => format!("{:.1} ns", self.mean_ns),
        }
    }

    /// Time ratio, or throughput ratio when both declared a throughput.
    fn ratio_to(&self, base: &Estimate) -> f64 {
        match (self.rate(), base.rate()) {
            (Some(m), Some(b)) => m / b,
            _ => self.mean_ns / base.mean_ns,
        }
    }
}

fn estimate(group: &str, id: &str) -> Result<Estimate> {
    let dir = util::target_dir().join("criterion").join(group).join(id).join("new");
    let read = |f: &str| -> Result<serde_json::Value> {
        let text = std::fs::read_to_string(dir.join(f)).with_context(|| format!("{group}/{id}: no {f}"))?;
        Ok(serde_json::from_str(&text)?)
    };
    let mean_ns = read("estimates.json")?["mean"]["point_estimate"].as_f64().context("no mean.point_estimate")?;
    let t = &read("benchmark.json")?["throughput"];
    let per_iter = if let Some(b) = t["Bytes"].as_f64() {
        Some((b, "B"))
    } else {
        t["Elements"].as_f64().map(|e| (e, "elements"))
    };
    Ok(Estimate { mean_ns, per_iter })
}
