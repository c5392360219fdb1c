//! The running agent measured against the simulator (part of `cargo xtask
//! bench`): idle cost (CPU % of one core, RSS) at the simulator's call rate,
//! and detection latency — from a failed call, and from a threshold passing,
//! to the level at `/status`.
use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    sync::atomic::AtomicBool,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context, Result};

use crate::{
    build,
    demo::{get_json, spawn_token_agent, wait_for_agent, write_config, Procs},
    util,
};

const LISTEN: &str = "127.0.0.1:19465";
const IDLE_SECONDS: u64 = 60;

pub fn run() -> Result<()> {
    let built = build::all(build::Profile::Release)?;
    let bins = built.agent.parent().context("agent path")?.to_path_buf();
    let dir = util::target_dir().join("bench-agent");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state"))?;
    let socket = dir.join("token-agent.sock");
    let config = write_config(&dir, &socket, LISTEN)?;
    let mut procs = Procs(Vec::new());
    let log = std::fs::File::create(dir.join("agent.log"))?;
    procs.0.push(Command::new(&built.agent).arg("run").arg("-c").arg(&config).stderr(log).spawn()?);
    let agent_pid = procs.0[0].id();
    let base = format!("http://{LISTEN}");
    wait_for_agent(&base, &AtomicBool::new(false))?;
    let (sim, mut sim_in) = spawn_token_agent(&bins, &dir, &socket)?;
    procs.0.push(sim);
    let mut client = Command::new(bins.join("sim-compute-node"))
        .arg("--socket")
        .arg(&socket)
        .args(["--retry", "200ms", "--retry-max", "200ms"])
        .stdout(Stdio::piped())
        .spawn()?;
    let calls = BufReader::new(client.stdout.take().context("client stdout")?);
    procs.0.push(client);
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for l in calls.lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&l) {
                let _ = tx.send(v);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30)).context("the simulated client made no call")?;

    // idle cost: a refresh every 10 s (360× the real rate of one an hour)
    std::thread::sleep(Duration::from_secs(5));
    let (cpu0, t0) = (cpu_ticks(agent_pid)?, Instant::now());
    let mut rss_max = 0;
    while t0.elapsed() < Duration::from_secs(IDLE_SECONDS) {
        rss_max = rss_max.max(rss_kib(agent_pid)?);
        std::thread::sleep(Duration::from_secs(1));
    }
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let cpu = (cpu_ticks(agent_pid)? - cpu0) as f64 / ticks_per_s / t0.elapsed().as_secs_f64() * 100.0;
    println!("agent idle, {IDLE_SECONDS} s with a refresh every 10 s: CPU {cpu:.2} % of one core, RSS max {:.1} MB", rss_max as f64 / 1024.0);

    // detection: the first failed call → WARN at /status
    while rx.try_recv().is_ok() {}
    writeln!(sim_in, "mode unavailable")?;
    let failed = loop {
        let c = rx.recv_timeout(Duration::from_secs(30)).context("no call after the fault")?;
        if c["status"] != "OK" {
            break parse_time(c["time"].as_str().unwrap_or(""))?;
        }
    };
    let warn_at = wait_level(&base, &["WARN", "CRIT"])?;
    println!("detection, failed call → WARN at /status: {:.0} ms", ms_between(failed, warn_at));

    // detection: refresh_at + crit_after passes → CRIT at /status
    let s = get_json(&format!("{base}/status"))?;
    let refresh_at = s["clients"]
        .as_array()
        .and_then(|c| c.iter().find_map(|c| c["refresh_at"].as_str()))
        .context("no client refresh_at")?;
    let threshold = parse_time(refresh_at)? + Duration::from_secs(8);
    let crit_at = wait_level(&base, &["CRIT"])?;
    println!("detection, refresh_at + crit_after passed → CRIT at /status: {:.0} ms", ms_between(threshold, crit_at));
    drop(procs);
    Ok(())
}

fn wait_level(base: &str, levels: &[&str]) -> Result<SystemTime> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let s = get_json(&format!("{base}/status"))?;
        if levels.iter().any(|l| s["level"] == *l) {
            return Ok(SystemTime::now());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("level {levels:?} not reached within 60 s")
}

fn ms_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

fn parse_time(s: &str) -> Result<SystemTime> {
    // the simulator and the agent print RFC 3339 in UTC ("…Z")
    let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).with_context(|| format!("time {s:?}"))?;
    Ok(t)
}

fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // fields 14 and 15 (utime, stime) are the 12th and 13th after the comm
    Ok(f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?)
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")
}
