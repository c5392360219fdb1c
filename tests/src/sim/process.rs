//! Handles on running simulator processes: spawn, drive, read, kill on drop.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::{bin_path, CallRecord, Mode};

/// How long to wait for `ready` / `mode=` acknowledgements.
const ACK_TIMEOUT: Duration = Duration::from_secs(15);

fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

/// Spawns `name` with piped stdin/stdout; stdout lines go to a channel.
fn spawn(name: &str, args: &[String]) -> Result<(Child, ChildStdin, Receiver<String>)> {
    let bin = bin_path(name)?;
    let mut child = Command::new(&bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok((child, stdin, rx))
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Options of `sim-token-agent`.
#[derive(Clone, Debug)]
pub struct SimTokenAgentOpts {
    pub socket: PathBuf,
    pub access_log: PathBuf,
    pub app_log: PathBuf,
    pub lifetime: Duration,
    pub mode: Mode,
    pub slow_delay: Duration,
    /// Return the same token for this long (zero: a new token per call).
    pub reuse_for: Duration,
}

impl SimTokenAgentOpts {
    pub fn new(socket: &Path, access_log: &Path, app_log: &Path, lifetime: Duration) -> Self {
        SimTokenAgentOpts {
            socket: socket.into(),
            access_log: access_log.into(),
            app_log: app_log.into(),
            lifetime,
            mode: Mode::Ok,
            slow_delay: Duration::from_secs(2),
            reuse_for: Duration::ZERO,
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--socket".into(),
            self.socket.display().to_string(),
            "--access-log".into(),
            self.access_log.display().to_string(),
            "--app-log".into(),
            self.app_log.display().to_string(),
            "--lifetime".into(),
            secs(self.lifetime),
            "--mode".into(),
            self.mode.to_string(),
            "--slow-delay".into(),
            secs(self.slow_delay),
            "--reuse-for".into(),
            secs(self.reuse_for),
            "--exit-on-stdin-eof".into(),
        ]
    }
}

/// A running `sim-token-agent`; killed on drop.
pub struct SimTokenAgent {
    child: Child,
    stdin: ChildStdin,
    stdout: Receiver<String>,
    opts: SimTokenAgentOpts,
}

impl SimTokenAgent {
    /// Starts in mode `ok` and waits until it serves.
    pub fn spawn(
        socket: &Path,
        access_log: &Path,
        app_log: &Path,
        lifetime: Duration,
    ) -> Result<Self> {
        Self::spawn_with(SimTokenAgentOpts::new(
            socket, access_log, app_log, lifetime,
        ))
    }

    /// Starts with `opts` and waits for `ready`.
    pub fn spawn_with(opts: SimTokenAgentOpts) -> Result<Self> {
        let (child, stdin, stdout) = spawn("sim-token-agent", &opts.args())?;
        let mut sim = SimTokenAgent {
            child,
            stdin,
            stdout,
            opts,
        };
        sim.expect_line("ready ")?;
        Ok(sim)
    }

    fn expect_line(&mut self, prefix: &str) -> Result<String> {
        let deadline = Instant::now() + ACK_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.stdout.recv_timeout(left) {
                Ok(l) => l,
                Err(RecvTimeoutError::Timeout) => {
                    bail!("sim-token-agent: no {prefix:?} line in {ACK_TIMEOUT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("sim-token-agent exited ({:?})", self.child.try_wait())
                }
            };
            if line.starts_with(prefix) {
                return Ok(line);
            }
            if let Some(e) = line.strip_prefix("error=") {
                bail!("sim-token-agent: {e}");
            }
        }
    }

    /// Switches the fault mode; returns once the simulator acknowledged it
    /// (the socket is already gone / back by then).
    pub fn set_mode(&mut self, mode: Mode) -> Result<()> {
        writeln!(self.stdin, "mode {mode}")
            .and_then(|_| self.stdin.flush())
            .context("write to sim-token-agent")?;
        let ack = self.expect_line("mode=")?;
        if ack != format!("mode={mode}") {
            bail!("sim-token-agent acknowledged {ack:?}, wanted mode={mode}");
        }
        self.opts.mode = mode;
        Ok(())
    }

    pub fn mode(&self) -> Mode {
        self.opts.mode
    }
    pub fn opts(&self) -> &SimTokenAgentOpts {
        &self.opts
    }
    pub fn socket(&self) -> &Path {
        &self.opts.socket
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Kills the process (SIGKILL): like a crash, the socket file stays.
    pub fn kill(&mut self) {
        stop(&mut self.child)
    }
}

impl Drop for SimTokenAgent {
    fn drop(&mut self) {
        stop(&mut self.child)
    }
}

/// Options of `sim-compute-node`: the binary's own settings.
pub type SimComputeNodeOpts = super::client::NodeArgs;

impl SimComputeNodeOpts {
    pub fn new(socket: &Path, fraction: f64) -> Self {
        SimComputeNodeOpts {
            socket: socket.into(),
            tag: "compute-node".into(),
            fraction,
            retry: Duration::from_secs(1),
            retry_max: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            count: None,
        }
    }

    fn args(&self) -> Vec<String> {
        let count = self.count.map(|n| vec!["--count".to_string(), n.to_string()]).unwrap_or_default();
        let mut args = vec![
            "--socket".into(),
            self.socket.display().to_string(),
            "--tag".into(),
            self.tag.clone(),
            "--fraction".into(),
            self.fraction.to_string(),
            "--retry".into(),
            secs(self.retry),
            "--retry-max".into(),
            secs(self.retry_max),
            "--timeout".into(),
            secs(self.timeout),
            "--exit-on-stdin-eof".into(),
        ];
        args.extend(count);
        args
    }
}

/// A running `sim-compute-node`; killed on drop.
pub struct SimComputeNode {
    child: Child,
    _stdin: ChildStdin,
    calls: Receiver<CallRecord>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl SimComputeNode {
    pub fn spawn(socket: &Path, fraction: f64) -> Result<Self> {
        Self::spawn_with(SimComputeNodeOpts::new(socket, fraction))
    }

    pub fn spawn_with(opts: SimComputeNodeOpts) -> Result<Self> {
        let (child, stdin, stdout) = spawn("sim-compute-node", &opts.args())?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, calls) = mpsc::channel();
        let all = lines.clone();
        std::thread::spawn(move || {
            for line in stdout {
                let record = serde_json::from_str::<CallRecord>(&line);
                all.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                if let Ok(r) = record {
                    if tx.send(r).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(SimComputeNode {
            child,
            _stdin: stdin,
            calls,
            lines,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next call the client reports.
    pub fn next_call(&self, timeout: Duration) -> Result<CallRecord> {
        self.calls.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => anyhow!("sim-compute-node: no call within {timeout:?}"),
            RecvTimeoutError::Disconnected => anyhow!("sim-compute-node exited"),
        })
    }

    /// Skips calls until one matches `pred`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&CallRecord) -> bool,
    ) -> Result<CallRecord> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let call = self
                .next_call(left)
                .context("waiting for a matching call")?;
            if pred(&call) {
                return Ok(call);
            }
        }
    }

    /// Every stdout line so far (for leak checks).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn kill(&mut self) {
        stop(&mut self.child)
    }
}

impl Drop for SimComputeNode {
    fn drop(&mut self) {
        stop(&mut self.child)
    }
}
