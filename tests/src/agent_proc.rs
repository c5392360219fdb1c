//! Runs the real `tokenwatch` binary for end-to-end tests.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// The agent binary: `TOKENWATCH_BIN` (set by `cargo xtask test`), else target/debug/tokenwatch.
pub fn agent_bin() -> PathBuf {
    std::env::var_os("TOKENWATCH_BIN").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/tokenwatch")
    })
}

/// A binary of this package (connect-once, sim-*), next to the test executable's target dir.
pub fn test_bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("TOKENWATCH_SIM_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/<test> → target/debug/<name>
    exe.parent().and_then(Path::parent).expect("target dir").join(name)
}

/// A free loopback port (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A running `tokenwatch run`, stopped with SIGTERM on drop.
pub struct Agent {
    child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Agent {
    /// Starts the agent with `config` (TOML text; `[http] listen` is added) and
    /// extra environment; waits until `/status` answers.
    pub fn start(dir: &Path, config: &str, env: &[(&str, &str)]) -> Result<Self> {
        let port = free_port();
        let cfg = dir.join("tokenwatch.toml");
        std::fs::write(&cfg, format!("{config}\n[http]\nlisten = \"127.0.0.1:{port}\"\n"))?;
        let log = dir.join("agent.log");
        let mut cmd = Command::new(agent_bin());
        cmd.arg("run").arg("-c").arg(&cfg).stderr(std::fs::File::create(&log)?).stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("starting {}", agent_bin().display()))?;
        let mut agent = Self { child, base: format!("http://127.0.0.1:{port}"), log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = agent.status() {
                if s["sources"]["ebpf"]["state"] != "starting" {
                    return Ok(agent);
                }
            }
            if let Some(code) = agent.child.try_wait()? {
                bail!("agent exited with {code}: {}", agent.log_text());
            }
            if Instant::now() > deadline {
                bail!("agent did not answer /status within 20 s: {}", agent.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn get(&self, path: &str) -> Result<String> {
        let url = format!("{}{path}", self.base);
        Ok(ureq::get(&url).call().with_context(|| url.clone())?.body_mut().read_to_string()?)
    }

    pub fn status(&self) -> Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.get("/status")?)?)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the exit status (at most `timeout`).
    pub fn stop(mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        // SAFETY: signalling our own, unreaped child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("agent did not stop within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// When the eBPF source did not start: fail under CI, else say why and skip.
/// Returns true when the test should go on.
pub fn ebpf_running_or_skip(status: &serde_json::Value) -> bool {
    let e = &status["sources"]["ebpf"];
    if e["state"] == "running" {
        return true;
    }
    let why = format!("eBPF source is {}: {}", e["state"], e["detail"]);
    if std::env::var_os("CI").is_some() {
        panic!("{why} (CI is set: eBPF tests must run)");
    }
    eprintln!("SKIPPED: {why}");
    false
}
