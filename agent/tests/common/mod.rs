//! What the eBPF integration tests (`agent/tests/ebpf_*.rs`, each with
//! `mod common;`) share: skipping when something is missing, the source's
//! log output captured, the simulator and the source started, the source's
//! events awaited, and the tonic client a test drives in a child process.
//!
//! The timeouts are the caller's: each test has its own.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{mpsc as std_mpsc, Mutex, Once},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokenwatch::{
    events::{CallObserved, Event},
    sources::{
        ebpf::{CaptureHint, EbpfSource, Settings},
        Health, SourceState,
    },
};
use tokenwatch_tests::sim::{self, SimTokenAgent};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

/// Something the test needs is missing: a skip, or with `CI` set a failure.
pub fn skip_or_fail(why: String) {
    if std::env::var_os("CI").is_some() {
        panic!("{why} (CI is set)");
    }
    eprintln!("SKIPPED: {why}");
}

/// This process's tracing output since [`capture_logs`].
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Captures this process's tracing output (`level` and up; the first call
/// sets it) for [`logs`], and still writes it to stderr.
pub fn capture_logs(level: tracing::Level) {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        struct W;
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                LOGS.lock().unwrap().extend_from_slice(b);
                std::io::stderr().write_all(b)?;
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let _ = tracing_subscriber::fmt().with_max_level(level).with_ansi(false).with_writer(|| W).try_init();
    });
}

/// The tracing output captured so far (see [`capture_logs`]).
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

/// The simulated token-agent on `dir/token-agent.sock`, and that socket;
/// `None` (after [`skip_or_fail`]) when it does not start.
pub fn sim_agent(dir: &Path) -> Option<(PathBuf, SimTokenAgent)> {
    let socket = dir.join("token-agent.sock");
    match SimTokenAgent::spawn(&socket, &dir.join("access.log"), &dir.join("app.log"), Duration::from_secs(36_000)) {
        Ok(agent) => Some((socket, agent)),
        Err(e) => {
            skip_or_fail(format!("sim-token-agent: {e:#} (build it: cargo build -p tokenwatch-tests --bins)"));
            None
        }
    }
}

/// An eBPF source running in a task.
pub struct Started {
    pub health: Health,
    /// The capture hints the source follows, as the state would send them.
    pub hints: watch::Sender<CaptureHint>,
    pub watch: Watch,
    pub task: JoinHandle<()>,
}

/// Loads the source for `socket` and runs it; `None` (after
/// [`skip_or_fail`]) when it does not load. `timeout` bounds each wait on
/// its events (see [`Watch`]).
pub fn start(socket: &Path, settings: Settings, timeout: Duration) -> Option<Started> {
    let source = match EbpfSource::load_with(socket, settings) {
        Ok(s) => s,
        Err(e) => {
            skip_or_fail(format!("eBPF source failed to load: {e}"));
            return None;
        }
    };
    let (tx, rx) = mpsc::channel(256);
    let health = Health::new(SourceState::Starting, "");
    let (hints, hints_rx) = watch::channel(CaptureHint::default());
    let task = tokio::spawn(source.run_with(tx, health.clone(), hints_rx));
    Some(Started { health, hints, watch: Watch { rx, seen: Vec::new(), timeout }, task })
}

/// Waits until the source's detail contains `want` (at most `within`,
/// looking every `poll`); the detail.
pub async fn wait_for_detail(health: &Health, want: &str, within: Duration, poll: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let d = health.get().detail;
        if d.contains(want) {
            return d;
        }
        // the capture programs did not load: no window will ever open
        assert!(!d.contains("; capture unavailable"), "waiting for {want:?}: {d}");
        assert!(tokio::time::Instant::now() < deadline, "source detail never showed {want:?}: {d:?}");
        tokio::time::sleep(poll).await;
    }
}

/// The events the source sent, with the Debug text of every one kept.
pub struct Watch {
    pub rx: mpsc::Receiver<Event>,
    pub seen: Vec<String>,
    /// How long to wait for one event (and for the source to stop).
    timeout: Duration,
}

impl Watch {
    pub async fn next(&mut self, what: &str) -> Event {
        let ev = tokio::time::timeout(self.timeout, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no event within {:?} waiting for {what}", self.timeout))
            .expect("eBPF source stopped");
        self.seen.push(format!("{ev:?}"));
        ev
    }

    /// The next call event of `pid` that `pred` accepts (others are kept in `seen`).
    pub async fn call(&mut self, pid: u32, what: &str, pred: impl Fn(&CallObserved) -> bool) -> CallObserved {
        loop {
            if let Event::Call(c) = self.next(what).await {
                if c.process.pid == pid && pred(&c) {
                    return c;
                }
                eprintln!("(skipping {c:?} while waiting for {what})");
            }
        }
    }

    /// The next event, which must be a call of `pid` with `expires_at`:
    /// anything before it (a connect the idle source must not have seen)
    /// fails the test.
    pub async fn first_is_call(&mut self, pid: u32, expires_at: SystemTime, what: &str) -> CallObserved {
        match self.next(what).await {
            Event::Call(c) if c.process.pid == pid && c.expires_at == Some(expires_at) => c,
            other => panic!("{what}: expected the call first, got {other:?}"),
        }
    }

    /// Waits for the `Connect` of `pid`.
    pub async fn connect(&mut self, pid: u32) {
        loop {
            if let Event::Connect(c) = self.next("a connect").await {
                if c.process.pid == pid && c.errno.is_none() {
                    return;
                }
            }
        }
    }

    /// Everything already queued, without waiting.
    pub fn drain(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(ev) = self.rx.try_recv() {
            self.seen.push(format!("{ev:?}"));
            out.push(ev);
        }
        out
    }

    /// Fails the test when an event is queued.
    pub fn assert_quiet(&mut self, what: &str) {
        if let Ok(ev) = self.rx.try_recv() {
            panic!("{what}: the source reported {ev:?}");
        }
    }

    /// Waits for the exit of `pid` (the client, gone), checks that the source
    /// lost nothing, and stops it: with the channel closed, its `task`
    /// returns. The Debug text of every event seen.
    pub async fn stop_after_exit(mut self, pid: u32, health: &Health, task: JoinHandle<()>) -> Vec<String> {
        loop {
            if let Event::ProcessExit { pid: p, .. } = self.next("the client's exit").await {
                if p == pid {
                    break;
                }
            }
        }
        let status = health.get();
        assert_eq!(status.lost, 0, "{status:?}");
        drop(self.rx);
        tokio::time::timeout(self.timeout, task).await.expect("run() did not return after the channel closed").unwrap();
        self.seen
    }
}

/// The name of the ignored test through which a test binary runs
/// [`tonic_client`] as a child (see [`Client::tonic`]).
pub const TONIC_HELPER: &str = "tonic_client_helper";

/// Child mode: the tonic client (the simulator's) on one lazily connected
/// channel to the socket in the environment variable `env`, driven by stdin
/// (`call`, `reconnect`, `quit`); prints `READY <pid>`, then
/// `CALL OK <secs> <nanos> <token>` or `CALL <CODE>` per call, `RECONNECTED`.
/// Requests carry `tag`. Without `env` set (a normal test run) it does nothing.
pub fn tonic_client(env: &str, tag: &str) {
    let Some(socket) = std::env::var_os(env) else { return };
    let socket = PathBuf::from(socket);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let connect = || {
        let _guard = rt.enter();
        sim::connect(&socket, Duration::from_secs(10)).unwrap()
    };
    let mut channel = connect();
    println!("READY {}", std::process::id());
    for line in std::io::stdin().lock().lines() {
        match line.unwrap().trim() {
            "call" => match rt.block_on(sim::get_token(&channel, tag)) {
                Ok(t) => {
                    let e = t.expires_at.duration_since(UNIX_EPOCH).unwrap();
                    println!("CALL OK {} {} {}", e.as_secs(), e.subsec_nanos(), t.token);
                }
                Err(s) => println!("CALL {}", sim::code_name(s.code())),
            },
            // the old connection closes; the new one connects at the next call
            "reconnect" => {
                channel = connect();
                println!("RECONNECTED");
            }
            "quit" => break,
            _ => {}
        }
        std::io::stdout().flush().unwrap();
    }
    std::process::exit(0);
}

/// What a client printed about one call.
#[derive(Debug, Clone)]
pub struct Called {
    pub status: String,
    pub expires_at: Option<SystemTime>,
    pub token: Option<String>,
}

/// A client process driven through stdin/stdout (the protocol of
/// [`tonic_client`]).
pub struct Client {
    child: Child,
    stdin: ChildStdin,
    lines: std_mpsc::Receiver<String>,
    pub pid: u32,
    /// The tokens of the calls so far.
    pub tokens: Vec<String>,
    /// How long to wait for a line.
    timeout: Duration,
}

impl Client {
    /// Runs `cmd` and waits for its `READY`.
    pub fn spawn(mut cmd: Command, timeout: Duration) -> Client {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("spawning a client");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let pid = child.id();
        let mut c = Client { child, stdin, lines, pid, tokens: Vec::new(), timeout };
        c.expect("READY");
        c
    }

    /// [`tonic_client`] on `socket`: this test binary re-executed to run its
    /// [`TONIC_HELPER`] test, which reads the socket from `env`.
    pub fn tonic(socket: &Path, env: &str, timeout: Duration) -> Client {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([TONIC_HELPER, "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"]).env(env, socket);
        Client::spawn(cmd, timeout)
    }

    pub fn expect(&mut self, prefix: &str) -> String {
        loop {
            let line =
                self.lines.recv_timeout(self.timeout).unwrap_or_else(|e| panic!("client: no {prefix:?} line ({e})"));
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    pub fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").and_then(|_| self.stdin.flush()).expect("writing to the client");
    }

    pub fn call(&mut self) -> Called {
        self.call_with("call")
    }

    pub fn call_with(&mut self, cmd: &str) -> Called {
        self.send(cmd);
        let line = self.expect("CALL ");
        let parts: Vec<&str> = line.split_whitespace().collect();
        let called = match parts[..] {
            ["CALL", "OK", secs, nanos, token] => Called {
                status: "OK".into(),
                expires_at: Some(UNIX_EPOCH + Duration::new(secs.parse().unwrap(), nanos.parse().unwrap())),
                token: Some(token.to_string()),
            },
            ["CALL", code] => Called { status: code.into(), expires_at: None, token: None },
            _ => panic!("client printed {line:?}"),
        };
        self.tokens.extend(called.token.clone());
        called
    }

    pub fn reconnect(&mut self) {
        self.send("reconnect");
        self.expect("RECONNECTED");
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
