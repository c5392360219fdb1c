//! What the eBPF capture costs, in one run (`cargo xtask bench` prints the
//! ratios against `agent_off`):
//!
//! - `pipe_write_64`: a process the agent does not watch writes 64 bytes to
//!   a pipe in a loop (drained every 1024 writes): with no probes
//!   (`agent_off`), with the always-attached probes only (`capture_idle`:
//!   connect/close/exit/exec, what adaptive capture costs between windows),
//!   and with the capture probes attached too (`capture_active`) — on
//!   syscall tracepoints; `windows_idle`: `[ebpf] capture = "windows"` on
//!   syscall tracepoints between windows (connect/close detached too: only
//!   exit/exec, on sched tracepoints); `fentry_idle`/`fentry_active` the
//!   same as the first two on fentry/fexit where the kernel allows them (not
//!   measured elsewhere).
//! - `get_token`: one GetToken call as a tonic client in another process
//!   sees it (the agent never traces itself), against the simulator's
//!   token-agent, on a long-lived channel the source tracks.
//!
//! Needs root, the object built in and the simulator binaries
//! (`cargo xtask bench` builds them; by hand: `cargo build --release -p
//! tokenwatch-tests --bins`, then `TOKENWATCH_EBPF_OBJ=… cargo bench -p
//! tokenwatch --bench capture`).
use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

use criterion::{measurement::WallTime, BenchmarkGroup, Criterion};
use tokenwatch::{
    config::{CaptureMode, HookPreference},
    sources::{
        ebpf::{EbpfSource, Settings, WindowPolicy},
        Health, SourceState,
    },
};
use tokenwatch_tests::sim::{self, SimTokenAgent};

/// Set in the child: run the tonic client against this socket.
const CLIENT_ENV: &str = "TOKENWATCH_BENCH_CLIENT_SOCKET";

fn main() {
    if let Some(socket) = std::env::var_os(CLIENT_ENV) {
        return client_child(Path::new(&socket));
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("token-agent.sock");
    let agent = SimTokenAgent::spawn(
        &socket,
        &dir.path().join("access.log"),
        &dir.path().join("app.log"),
        Duration::from_secs(36_000),
    );
    let mut client = match &agent {
        Ok(_) => Some(Client::spawn(&socket)),
        Err(e) => {
            eprintln!("get_token not measured: sim-token-agent: {e:#}");
            None
        }
    };

    use HookPreference::{Auto, Tracepoint};
    let modes = [
        ("agent_off", None),
        ("capture_idle", Some((CaptureMode::Off, Tracepoint))),
        ("capture_active", Some((CaptureMode::Always, Tracepoint))),
        ("windows_idle", Some((CaptureMode::Windows, Tracepoint))),
        ("fentry_idle", Some((CaptureMode::Off, Auto))),
        ("fentry_active", Some((CaptureMode::Always, Auto))),
    ];
    for (id, mode) in modes {
        let running = match mode {
            None => None,
            Some((capture, hooks)) => match Running::start(&rt, &socket, capture, hooks) {
                Ok(r) => Some(r),
                Err(e) => {
                    eprintln!("{id} not measured: {e}");
                    continue;
                }
            },
        };
        // a group per mode: criterion's groups borrow it mutably
        let mut pipe = c.benchmark_group("pipe_write_64");
        pipe.measurement_time(Duration::from_secs(5));
        pipe_loop(&mut pipe, id);
        pipe.finish();
        if let Some(client) = client.as_mut() {
            // a connection opened while this source runs: tracked from its connect
            client.reconnect();
            let mut calls = c.benchmark_group("get_token");
            calls.measurement_time(Duration::from_secs(5));
            calls.bench_function(id, |b| b.iter_custom(|n| client.calls(n)));
            calls.finish();
            if mode.is_some_and(|(capture, _)| capture == CaptureMode::Always) {
                probe_time_per_call(client);
            }
        }
        if let Some(r) = running {
            let captured = r.stop(&rt);
            eprintln!("{id}: the source sent {captured} events");
        }
    }
}

/// The capture programs' own run time per GetToken call, from the kernel's
/// BPF run-time statistics (all processes' syscalls: client, token-agent, the rest).
fn probe_time_per_call(client: &mut Client) {
    const CALLS: u64 = 2000;
    let Ok(_stats) = aya::sys::enable_stats(aya::sys::Stats::RunTime) else {
        return eprintln!("BPF run-time statistics unavailable");
    };
    let totals = || {
        aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .filter(|p| p.name_as_str().is_some_and(is_capture_program))
            .fold((Duration::ZERO, 0u64), |(t, n), p| (t + p.run_time(), n + p.run_count()))
    };
    let (t0, n0) = totals();
    client.calls(CALLS);
    let (t1, n1) = totals();
    eprintln!(
        "capture probes per GetToken call: {:.2} µs of BPF run time in {:.1} program runs (host-wide, {CALLS} calls)",
        (t1 - t0).as_secs_f64() * 1e6 / CALLS as f64,
        (n1 - n0) as f64 / CALLS as f64
    );
}

/// The data-capture programs, either kind (kernel names are cut at 15 bytes).
fn is_capture_program(name: &str) -> bool {
    name.starts_with("io_") || (name.starts_with("fexit_") && name != "fexit_connect")
}

/// 64-byte writes to a pipe by this (unwatched) process.
fn pipe_loop(g: &mut BenchmarkGroup<'_, WallTime>, id: &str) {
    let mut fds = [0i32; 2];
    // SAFETY: plain syscalls on fds this function owns.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 1 << 20);
    }
    let buf = [7u8; 64];
    let mut sink = vec![0u8; 1 << 16];
    g.bench_function(id, |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            for i in 0..n {
                // SAFETY: valid fds and buffers of the stated lengths.
                unsafe {
                    libc::write(fds[1], buf.as_ptr().cast(), buf.len());
                    if i % 1024 == 1023 {
                        libc::read(fds[0], sink.as_mut_ptr().cast(), sink.len());
                    }
                }
            }
            let took = start.elapsed();
            // SAFETY: as above; empties the pipe between samples.
            unsafe {
                libc::fcntl(fds[0], libc::F_SETFL, libc::O_NONBLOCK);
                while libc::read(fds[0], sink.as_mut_ptr().cast(), sink.len()) > 0 {}
                libc::fcntl(fds[0], libc::F_SETFL, 0);
            }
            took
        })
    });
    // SAFETY: closing the fds opened above.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
}

/// A running eBPF source and the task draining its events.
struct Running {
    task: tokio::task::JoinHandle<()>,
    drain: tokio::task::JoinHandle<u64>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    /// With `hooks = auto`, fails unless the kernel put every probe on
    /// fentry/fexit (a fallback to tracepoints would measure those twice).
    fn start(
        rt: &tokio::runtime::Runtime,
        socket: &Path,
        capture: CaptureMode,
        hooks: HookPreference,
    ) -> Result<Self, String> {
        // the bench client's open connection would open a start window
        // (until it calls, which the pipe loop does not wait for): none here
        let window = WindowPolicy { startup_max: Duration::ZERO, ..WindowPolicy::default() };
        let source = EbpfSource::load_with(socket, Settings { capture, hooks, window, ..Settings::default() })
            .map_err(|e| format!("the probes did not load: {e}"))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let health = Health::new(SourceState::Starting, "bench");
        let task = rt.spawn(source.run(tx, health.clone()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let drain = rt.spawn(async move {
            let mut n = 0;
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev { Some(_) => n += 1, None => return n },
                    _ = &mut stopped => return n,
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while health.get().state != SourceState::Running && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let running = Self { task, drain, stop };
        let detail = health.get().detail;
        if hooks == HookPreference::Auto && detail.contains("via syscall tracepoints") {
            running.stop(rt);
            let why = detail.split("; ").filter(|p| p.contains("via syscall tracepoints")).collect::<Vec<_>>();
            return Err(format!("fentry/fexit not in use: {}", why.join("; ")));
        }
        if capture == CaptureMode::Windows && !detail.ends_with("capture idle, connect/close detached") {
            running.stop(rt);
            return Err(format!("something is attached between windows: {detail}"));
        }
        if capture == CaptureMode::Always {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !health.get().detail.contains("capturing") {
                if Instant::now() > deadline {
                    running.stop(rt);
                    return Err(format!("capture never attached: {}", health.get().detail));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(running)
    }

    /// Stops the source (its probes detach); returns how many events it sent.
    fn stop(self, rt: &tokio::runtime::Runtime) -> u64 {
        let _ = self.stop.send(());
        let n = rt.block_on(self.drain).unwrap_or(0);
        let _ = rt.block_on(self.task);
        n
    }
}

/// The tonic client process: `calls N` → N GetToken calls, prints the ns taken.
struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Client {
    fn spawn(socket: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CLIENT_ENV, socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning the bench client");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self { child, stdin, stdout }
    }

    fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").and_then(|_| self.stdin.flush()).expect("writing to the bench client");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("reading the bench client");
        line
    }

    fn reconnect(&mut self) {
        self.ask("reconnect");
    }

    fn calls(&mut self, n: u64) -> Duration {
        let line = self.ask(&format!("calls {n}"));
        Duration::from_nanos(line.trim().parse().unwrap_or_else(|_| panic!("bench client said {line:?}")))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client_child(socket: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let connect = |socket: &PathBuf| {
        let _guard = rt.enter();
        sim::connect(socket, Duration::from_secs(10)).unwrap()
    };
    let socket = socket.to_path_buf();
    let mut channel = connect(&socket);
    let mut out = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let reply = match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["reconnect"] => {
                channel = connect(&socket);
                rt.block_on(sim::get_token(&channel, "bench")).expect("GetToken");
                "ok".to_string()
            }
            ["calls", n] => {
                let n: u64 = n.parse().unwrap();
                let start = Instant::now();
                for _ in 0..n {
                    rt.block_on(sim::get_token(&channel, "bench")).expect("GetToken");
                }
                start.elapsed().as_nanos().to_string()
            }
            _ => "?".to_string(),
        };
        writeln!(out, "{reply}").and_then(|_| out.flush()).unwrap();
    }
}
