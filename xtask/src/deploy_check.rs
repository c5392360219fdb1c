//! Checks of `deploy/` before it is packaged: the systemd unit as systemd
//! reads it, the Prometheus rules and their unit tests, the scrape example,
//! the Grafana dashboard's JSON. A missing tool is a note, not a failure here
//! (`tests/tests/deploy.rs` insists under CI).
use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};

use crate::util::root;

/// Runs every check it has the tools for; returns one line per check.
pub fn run() -> Result<Vec<String>> {
    let deploy = root().join("deploy");
    let mut lines = Vec::new();
    lines.push(unit(&deploy.join("systemd/tokenwatch.service"))?);
    lines.extend(prometheus(&deploy.join("prometheus"))?);
    lines.push(dashboard(&deploy.join("grafana/tokenwatch.json"))?);
    Ok(lines)
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// `systemd-analyze verify` with ExecStart pointed at an existing binary (the
/// real one is not installed yet); any warning fails.
pub fn unit(path: &Path) -> Result<String> {
    if !have("systemd-analyze") {
        return Ok("unit: systemd-analyze not found, not verified".into());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let dir = crate::util::target_dir().join("deploy-check");
    std::fs::create_dir_all(&dir)?;
    let copy = dir.join("tokenwatch.service");
    std::fs::write(&copy, text.replace("/usr/bin/tokenwatch", "/bin/true"))?;
    let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().context("systemd-analyze verify")?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !err.trim().is_empty() {
        bail!("systemd-analyze verify {}: {}\n{err}", path.display(), out.status);
    }
    Ok("unit: systemd-analyze verify ok".into())
}

/// `promtool check rules`, `promtool test rules`, `promtool check config`.
pub fn prometheus(dir: &Path) -> Result<Vec<String>> {
    if !have("promtool") {
        return Ok(vec!["prometheus: promtool not found (apt package prometheus), rules not checked".into()]);
    }
    let mut lines = Vec::new();
    for args in [
        &["check", "rules", "tokenwatch-rules.yml"][..],
        &["test", "rules", "tokenwatch-rules.test.yml"][..],
        &["check", "config", "scrape.yml"][..],
    ] {
        let out = Command::new("promtool").args(args).current_dir(dir).output().context("promtool")?;
        if !out.status.success() {
            bail!(
                "promtool {}: {}\n{}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        lines.push(format!("prometheus: promtool {} ok", args.join(" ")));
    }
    Ok(lines)
}

pub fn dashboard(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let panels = v["panels"].as_array().map_or(0, Vec::len);
    if panels == 0 {
        bail!("{} has no panels", path.display());
    }
    Ok(format!("grafana: dashboard parses, {panels} panels"))
}
