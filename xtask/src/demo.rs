//! `cargo xtask demo`: the simulated token-agent and compute-node, the agent
//! watching them, one status line a second, and faults injected on a timer.
use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{build, util};

#[derive(clap::Args)]
pub struct Args {
    /// Where the agent serves /metrics and /status.
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: String,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
}

/// The fault schedule, repeated: (seconds into the cycle, mode). With 100 s
/// tokens the client refreshes every 10 s; the demo config warns 3 s and
/// goes critical 8 s after a missed refresh_at.
const SCHEDULE: &[(u64, &str)] = &[(0, "ok"), (15, "unavailable"), (40, "ok"), (60, "down"), (85, "ok")];
const CYCLE: u64 = 105;

pub(crate) struct Procs(pub(crate) Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &self.0 {
            util::terminate(c);
        }
        for c in &mut self.0 {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && c.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let built = build::all(build::Profile::Release)?;
    let bins = built.agent.parent().context("agent path")?.to_path_buf();
    let dir = util::target_dir().join("demo");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state"))?;
    let socket = dir.join("token-agent.sock");
    let config = write_config(&dir, &socket, &args.listen)?;

    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || s.store(true, Ordering::SeqCst)).context("installing the Ctrl-C handler")?;

    let mut procs = Procs(Vec::new());
    let log = std::fs::File::create(dir.join("agent.log"))?;
    let mut agent = if util::is_root() { Command::new(&built.agent) } else { sudo(&built.agent) };
    procs.0.push(agent.arg("run").arg("-c").arg(&config).stderr(log).spawn().context("starting the agent")?);
    let base = format!("http://{}", args.listen);
    wait_for_agent(&base, &stop)?;
    println!("agent: up on {base} (log: {})", dir.join("agent.log").display());

    let (sim, mut sim_in) = spawn_token_agent(&bins, &dir, &socket)?;
    procs.0.push(sim);
    let client = Command::new(bins.join("sim-compute-node"))
        .arg("--socket")
        .arg(&socket)
        .args(["--retry", "1s", "--retry-max", "2s"])
        .stdout(Stdio::null())
        .spawn()
        .context("starting sim-compute-node")?;
    println!("simulator: token-agent on {}, compute-node client pid {}", socket.display(), client.id());
    procs.0.push(client);

    let start = Instant::now();
    let mut mode = "ok";
    while !stop.load(Ordering::SeqCst) {
        let t = start.elapsed().as_secs();
        if args.duration.is_some_and(|d| t >= d) {
            break;
        }
        let want = SCHEDULE.iter().rev().find(|(at, _)| *at <= t % CYCLE).map_or("ok", |(_, m)| m);
        if want != mode {
            mode = want;
            writeln!(sim_in, "mode {mode}")?;
            println!(">>> fault injection: token-agent mode = {mode}");
        }
        println!("[{t:>3}s] sim={mode:<11} {}", status_line(&base));
        std::thread::sleep(Duration::from_secs(1));
    }
    println!("stopping the simulator and the agent");
    drop(procs);
    Ok(())
}

fn sudo(bin: &Path) -> Command {
    let mut c = Command::new("sudo");
    c.arg(bin);
    c
}

pub(crate) fn write_config(dir: &Path, socket: &Path, listen: &str) -> Result<PathBuf> {
    let path = dir.join("config.toml");
    let text = format!(
        "# written by cargo xtask demo\n[token_agent]\nsocket = {socket:?}\naccess_log = {al:?}\napp_log = {ap:?}\n\n\
         [alert]\nwarn_after = \"3s\"\ncrit_after = \"8s\"\nerror_window = \"10s\"\nassumed_lifetime = \"100s\"\n\n[http]\nlisten = {listen:?}\n\n[state]\ndir = {st:?}\n",
        socket = socket.display().to_string(),
        al = dir.join("access.log").display().to_string(),
        ap = dir.join("token-agent.log").display().to_string(),
        st = dir.join("state").display().to_string(),
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

pub(crate) fn wait_for_agent(base: &str, stop: &AtomicBool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        if let Ok(s) = get_json(&format!("{base}/status")) {
            if s["sources"]["ebpf"]["state"] != "starting" {
                let e = &s["sources"]["ebpf"];
                println!("agent: eBPF source {} — {}", e["state"].as_str().unwrap_or("?"), e["detail"].as_str().unwrap_or(""));
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("the agent did not come up on {base} within 20 s (see target/demo/agent.log)")
}

pub(crate) fn spawn_token_agent(bins: &Path, dir: &Path, socket: &Path) -> Result<(Child, ChildStdin)> {
    let mut child = Command::new(bins.join("sim-token-agent"))
        .arg("--socket")
        .arg(socket)
        .arg("--access-log")
        .arg(dir.join("access.log"))
        .arg("--app-log")
        .arg(dir.join("token-agent.log"))
        .args(["--lifetime", "100s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting sim-token-agent")?;
    let stdin = child.stdin.take().context("sim stdin")?;
    let mut out = BufReader::new(child.stdout.take().context("sim stdout")?);
    let mut line = String::new();
    while out.read_line(&mut line)? > 0 && !line.starts_with("ready") {
        line.clear();
    }
    if !line.starts_with("ready") {
        bail!("sim-token-agent exited before it was ready");
    }
    // keep draining its acknowledgements so it never blocks on a full pipe
    std::thread::spawn(move || for _ in out.lines() {});
    Ok((child, stdin))
}

pub(crate) fn get_json(url: &str) -> Result<serde_json::Value> {
    let body = ureq::get(url).call()?.body_mut().read_to_string()?;
    Ok(serde_json::from_str(&body)?)
}

fn status_line(base: &str) -> String {
    let s = match get_json(&format!("{base}/status")) {
        Ok(s) => s,
        Err(e) => return format!("agent unreachable: {e}"),
    };
    let ta = &s["token_agent"];
    let reach = match ta["reachable"].as_bool() {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "?",
    };
    let clients = s["clients"].as_array().cloned().unwrap_or_default();
    let worst_overdue = clients.iter().filter_map(|c| c["overdue_seconds"].as_f64()).fold(0.0, f64::max);
    let refreshes: u64 = clients.iter().filter_map(|c| c["calls"]["OK"].as_u64()).sum();
    format!(
        "level={:<4} reachable={reach:<3} clients={} ok_calls={refreshes} overdue={worst_overdue:>4.0}s errors={} | {}",
        s["level"].as_str().unwrap_or("?"),
        clients.len(),
        ta["errors_in_window"],
        s["summary"].as_str().unwrap_or("")
    )
}
