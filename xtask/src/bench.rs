//! `cargo xtask bench`: criterion benchmarks, printed as ratios against the
//! baseline measured in the same run.
use anyhow::{Context, Result};

use crate::{build, util};

/// (criterion group, baseline id, measured id, what it means).
const RATIOS: &[(&str, &str, &str, &str)] =
    &[("connect_unrelated", "agent_off", "agent_on", "connect()+close() on a socket the agent does not watch")];

pub fn run() -> Result<()> {
    let obj = build::ebpf()?;
    // stale estimates from an earlier run must not stand in for this one
    for (group, ..) in RATIOS {
        let _ = std::fs::remove_dir_all(util::target_dir().join("criterion").join(group));
    }
    util::run(
        util::host_cargo()
            .args(["bench", "-p", "tokenwatch", "--bench", "connect_probe"])
            .env("TOKENWATCH_EBPF_OBJ", &obj),
    )?;
    println!("\n{:<60} {:>12} {:>12} {:>8}", "benchmark", "baseline", "measured", "ratio");
    for (group, base, measured, what) in RATIOS {
        let b = mean_ns(group, base)?;
        match mean_ns(group, measured) {
            Ok(m) => println!("{what:<60} {b:>10.1}ns {m:>10.1}ns {:>7.3}x", m / b),
            Err(e) => println!("{what:<60} {b:>10.1}ns {:>12} (not measured: {e:#})", "-"),
        }
    }
    Ok(())
}

/// Criterion's mean estimate for `group/id` from this run.
fn mean_ns(group: &str, id: &str) -> Result<f64> {
    let path = util::target_dir().join("criterion").join(group).join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    v["mean"]["point_estimate"].as_f64().context("no mean.point_estimate")
}
