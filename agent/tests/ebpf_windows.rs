//! `[ebpf] capture = "windows"` on syscall tracepoints, end to end: between
//! capture windows no syscall tracepoint is attached (the source's detail
//! says so, and this process holds no BPF link for connect/close or the
//! capture programs, though their programs are loaded), and a connect to
//! the watched socket is not reported; when a window opens (from a
//! [`CaptureHint`], as the state sends them), the connection opened while
//! idle is discovered and tracked — a call on it is decoded — and a new
//! connect is reported; after the window closed and the client reconnected
//! unseen, the next window finds the new connection and drops the stale one.
//!
//! Needs root, the object built in and the simulator binaries:
//! `cargo build -p tokenwatch-tests --bins`, then
//! `TOKENWATCH_EBPF_OBJ=$PWD/target/bpfel-unknown-none/release/tokenwatch cargo test -p tokenwatch --test ebpf_windows -- --nocapture`.
//! Anything missing skips the test, unless `CI` is set: then it fails.
use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{mpsc as std_mpsc, Arc, Mutex, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokenwatch::{
    config::{CaptureMode, HookPreference},
    events::{CallObserved, Event, GrpcStatus},
    sources::{
        ebpf::{CaptureHint, EbpfSource, Settings, WindowPolicy},
        Health, SourceState,
    },
};
use tokenwatch_tests::sim::{self, SimTokenAgent};
use tokio::sync::{mpsc, watch};

/// Set in the child: run [`tonic_client_helper`] against this socket.
const TONIC_ENV: &str = "TOKENWATCH_TEST_WINDOWS_SOCKET";
const TIMEOUT: Duration = Duration::from_secs(15);
/// Kernel names (cut at 15 bytes) of the connect/close tracepoint programs.
const CONNECTIONS: [&str; 3] = ["sys_enter_connect", "sys_exit_connect", "sys_enter_close"];

/// Child mode: a tonic client on one lazily connected channel, driven by
/// stdin (`call`, `reconnect`); prints `CALL OK <secs> <nanos>` or `CALL
/// <CODE>`. In a normal test run (no env) it does nothing.
#[test]
#[ignore = "child process of the eBPF tests, not a test"]
fn tonic_client_helper() {
    let Some(socket) = std::env::var_os(TONIC_ENV) else { return };
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
            "call" => match rt.block_on(sim::get_token(&channel, "windows")) {
                Ok(t) => {
                    let e = t.expires_at.duration_since(UNIX_EPOCH).unwrap();
                    println!("CALL OK {} {}", e.as_secs(), e.subsec_nanos());
                }
                Err(s) => println!("CALL {}", sim::code_name(s.code())),
            },
            // the old connection closes; the new one connects at the next call
            "reconnect" => {
                channel = connect();
                println!("RECONNECTED");
            }
            _ => {}
        }
        std::io::stdout().flush().unwrap();
    }
    std::process::exit(0);
}

/// The client process.
struct Client {
    child: Child,
    stdin: ChildStdin,
    lines: std_mpsc::Receiver<String>,
    pid: u32,
    /// Sockets of the client's runtime (signal handling), held before it
    /// connects: not connections.
    runtime_sockets: HashSet<u64>,
}

impl Client {
    fn spawn(socket: &Path) -> Client {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["tonic_client_helper", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
            .env(TONIC_ENV, socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning the client");
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
        let mut c = Client { child, stdin, lines, pid, runtime_sockets: HashSet::new() };
        c.expect("READY");
        c.runtime_sockets = c.sockets().into_iter().map(|(_, inode)| inode).collect();
        c
    }

    fn expect(&mut self, prefix: &str) -> String {
        loop {
            let line = self.lines.recv_timeout(TIMEOUT).unwrap_or_else(|e| panic!("client: no {prefix:?} line ({e})"));
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").and_then(|_| self.stdin.flush()).expect("writing to the client");
    }

    /// One call, which must succeed; its `expires_at`.
    fn call(&mut self) -> SystemTime {
        self.send("call");
        let line = self.expect("CALL ");
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["CALL", "OK", secs, nanos] => UNIX_EPOCH + Duration::new(secs.parse().unwrap(), nanos.parse().unwrap()),
            _ => panic!("the call failed: {line:?}"),
        }
    }

    fn reconnect(&mut self) {
        self.send("reconnect");
        self.expect("RECONNECTED");
    }

    /// (fd, inode) of each socket the client holds.
    fn sockets(&self) -> Vec<(i32, u64)> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(format!("/proc/{}/fd", self.pid)).unwrap().flatten() {
            let link = std::fs::read_link(e.path()).unwrap_or_default();
            let inode = link.to_str().and_then(|l| l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok());
            if let (Some(inode), Ok(fd)) = (inode, e.file_name().to_string_lossy().parse()) {
                out.push((fd, inode));
            }
        }
        out.sort();
        out
    }

    /// Waits until the client holds exactly one connection (a dropped
    /// channel closes its socket asynchronously); returns it.
    async fn one_connection(&self) -> (i32, u64) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let conns: Vec<_> = self.sockets().into_iter().filter(|(_, i)| !self.runtime_sockets.contains(i)).collect();
            match conns[..] {
                [one] => return one,
                ref other => assert!(tokio::time::Instant::now() < deadline, "client sockets: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The source's tracing output (debug and up), for its own counters.
fn tracing_output() -> Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct W(Arc<Mutex<Vec<u8>>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                std::io::stderr().write_all(b)?;
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let w = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || W(w.clone()))
            .try_init();
        buf
    })
    .clone()
}

fn logs() -> String {
    String::from_utf8_lossy(&tracing_output().lock().unwrap()).into_owned()
}

/// Which of this process's BPF programs are loaded, and which attached:
/// kernel names (cut at 15 bytes) of the programs held through a program
/// fd, and of those a BPF link fd points at.
struct Bpf {
    loaded: HashSet<String>,
    linked: HashSet<String>,
}

fn our_bpf() -> Bpf {
    let (mut prog_ids, mut link_prog_ids) = (HashSet::new(), HashSet::new());
    for e in std::fs::read_dir("/proc/self/fdinfo").unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)?.trim().parse::<u32>().ok());
        let Some(id) = field("prog_id:") else { continue };
        if text.lines().any(|l| l.starts_with("link_type:")) {
            link_prog_ids.insert(id);
        } else if text.lines().any(|l| l.starts_with("prog_type:")) {
            prog_ids.insert(id);
        }
    }
    let mut names: HashMap<u32, String> = HashMap::new();
    for p in aya::programs::loaded_programs().flatten() {
        if prog_ids.contains(&p.id()) || link_prog_ids.contains(&p.id()) {
            names.insert(p.id(), p.name_as_str().unwrap_or_default().to_string());
        }
    }
    let named = |ids: &HashSet<u32>| ids.iter().filter_map(|id| names.get(id).cloned()).collect();
    Bpf { loaded: named(&prog_ids), linked: named(&link_prog_ids) }
}

/// `name` as the kernel keeps it (BPF_OBJ_NAME_LEN − 1 bytes).
fn kernel_name(name: &str) -> &str {
    &name[..name.len().min(15)]
}

fn is_capture_program(kernel: &str) -> bool {
    kernel.starts_with("io_")
}

/// Checks what is attached: connect/close and capture both, or neither.
/// `false` when this kernel attaches tracepoints without BPF links (before
/// 5.15): nothing can be told from the links then.
fn check_attached(window_open: bool, what: &str) -> bool {
    let bpf = our_bpf();
    for name in CONNECTIONS {
        assert!(
            bpf.loaded.contains(kernel_name(name)),
            "{what}: {name} is loaded (verified at start): {:?}",
            bpf.loaded
        );
    }
    if !bpf.linked.contains(kernel_name("sched_process_exit")) {
        eprintln!("no BPF link even for the always-attached sched probes: this kernel attaches without links");
        return false;
    }
    for name in CONNECTIONS {
        assert_eq!(bpf.linked.contains(kernel_name(name)), window_open, "{what}: {name} attached? {:?}", bpf.linked);
    }
    let capture = bpf.linked.iter().filter(|n| is_capture_program(n)).count();
    assert_eq!(capture > 0, window_open, "{what}: capture programs attached: {:?}", bpf.linked);
    true
}

/// The events the source sent.
struct Watch {
    rx: mpsc::Receiver<Event>,
}

impl Watch {
    async fn next(&mut self, what: &str) -> Event {
        tokio::time::timeout(TIMEOUT, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no event within {TIMEOUT:?} waiting for {what}"))
            .expect("eBPF source stopped")
    }

    /// The next event, which must be a call of `pid` with `expires_at`:
    /// anything before it (a connect the idle source must not have seen)
    /// fails the test.
    async fn first_is_call(&mut self, pid: u32, expires_at: SystemTime, what: &str) -> CallObserved {
        match self.next(what).await {
            Event::Call(c) if c.process.pid == pid && c.expires_at == Some(expires_at) => c,
            other => panic!("{what}: expected the call first, got {other:?}"),
        }
    }

    fn assert_quiet(&mut self, what: &str) {
        if let Ok(ev) = self.rx.try_recv() {
            panic!("{what}: the source reported {ev:?}");
        }
    }
}

async fn wait_for_detail(health: &Health, want: &str) -> String {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let d = health.get().detail;
        if d.contains(want) {
            return d;
        }
        assert!(!d.contains("; capture unavailable"), "waiting for {want:?}: {d}");
        assert!(tokio::time::Instant::now() < deadline, "source detail never showed {want:?}: {d:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn skip_or_fail(why: String) {
    if std::env::var_os("CI").is_some() {
        panic!("{why} (CI is set)");
    }
    eprintln!("SKIPPED: {why}");
}

fn check_call(c: &CallObserved, pid: u32, what: &str) {
    assert_eq!(c.status, Some(GrpcStatus::OK), "{what}: {c:?}");
    assert_eq!(c.process.pid, pid, "{what}");
    assert!(c.duration.is_some_and(|d| d > Duration::ZERO && d < TIMEOUT), "{what}: {c:?}");
}

/// The `re-discovered` log lines' (found, tracked, dropped), in order.
fn rediscoveries(logs: &str) -> Vec<(u64, u64, u64)> {
    let num = |l: &str, k: &str| -> u64 {
        l.split_whitespace().find_map(|kv| kv.strip_prefix(k)?.parse().ok()).unwrap_or_else(|| panic!("no {k} in {l}"))
    };
    logs.lines()
        .filter(|l| l.contains("open connections re-discovered"))
        .map(|l| (num(l, "found="), num(l, "tracked="), num(l, "dropped=")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_mode_attaches_connect_close_only_in_capture_windows() {
    let _ = tracing_output();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("token-agent.sock");
    let _agent = match SimTokenAgent::spawn(
        &socket,
        &dir.path().join("access.log"),
        &dir.path().join("app.log"),
        Duration::from_secs(36_000),
    ) {
        Ok(a) => a,
        Err(e) => {
            return skip_or_fail(format!("sim-token-agent: {e:#} (build it: cargo build -p tokenwatch-tests --bins)"))
        }
    };
    let settings = Settings {
        capture: CaptureMode::Windows,
        // connect/close on syscall tracepoints whatever this kernel allows
        hooks: HookPreference::Tracepoint,
        // short windows after a connect, and short lingering: the test waits for each close
        window: WindowPolicy {
            after_connect: Duration::from_secs(2),
            linger: Duration::from_secs(1),
            ..WindowPolicy::default()
        },
        ..Settings::default()
    };
    let source = match EbpfSource::load_with(&socket, settings) {
        Ok(s) => s,
        Err(e) => return skip_or_fail(format!("eBPF source failed to load: {e}")),
    };
    let (tx, rx) = mpsc::channel(256);
    let health = Health::new(SourceState::Starting, "");
    let (hints_tx, hints) = watch::channel(CaptureHint::default());
    let task = tokio::spawn(source.run_with(tx, health.clone(), hints));
    let mut w = Watch { rx };

    // (1) idle: nothing but the sched probes attached, a connect not seen
    let idle = wait_for_detail(&health, "; capture idle").await;
    println!("HOOKS: {idle}");
    assert!(idle.contains("connect/close via syscall tracepoints"), "{idle}");
    assert!(idle.contains("attached only in capture windows"), "{idle}");
    assert!(idle.ends_with("capture idle, connect/close detached"), "{idle}");
    assert!(!idle.contains("syscalls/sys_enter_connect"), "listed as attached: {idle}");
    let links = check_attached(false, "idle at start");
    let mut client = Client::spawn(&socket);
    let pid = client.pid;
    let before = client.call(); // the connect happens here: unseen
    let (fd1, inode1) = client.one_connection().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.assert_quiet("a connect while idle");
    if links {
        check_attached(false, "idle after the connect");
    }
    assert!(health.get().detail.ends_with("capture idle, connect/close detached"));
    eprintln!("idle: connection fd {fd1} (socket {inode1}) opened unseen; call expiring {before:?} not reported");

    // (2) a window opens (a refresh is due): the idle connection is found and captured
    let refresh_at = SystemTime::now() + Duration::from_secs(30);
    hints_tx.send(CaptureHint { next_refresh_at: Some(refresh_at), failing: false }).unwrap();
    // the reason may read "start: open connections" once the connection is
    // found (in the first 2 minutes that reason comes first)
    let open = wait_for_detail(&health, "), connect/close attached").await;
    assert!(open.contains("; capturing ("), "{open}");
    eprintln!("window: {open}");
    if links {
        check_attached(true, "window open");
    }
    let expires = client.call();
    let c = w.first_is_call(pid, expires, "a call on the connection opened while idle").await;
    check_call(&c, pid, "discovered connection");
    // a connect now is seen, and its connection decoded from the first byte
    client.reconnect();
    let expires = client.call();
    let (fd2, _) = client.one_connection().await;
    let mut connected = false;
    let c = loop {
        match w.next("the connect and the call after it").await {
            Event::Connect(c) if c.process.pid == pid => {
                assert_eq!((c.errno, c.fd), (None, fd2), "{c:?}");
                connected = true;
            }
            Event::Call(c) if c.process.pid == pid && c.expires_at == Some(expires) => break c,
            other => panic!("unexpected while waiting for the connect: {other:?}"),
        }
    };
    assert!(connected, "the connect in the window was reported before its call");
    check_call(&c, pid, "connection seen from its connect");
    assert_eq!(c.method.as_deref(), Some("/yandex.cloud.priv.iam.v1.TokenAgent/GetToken"));

    // (3) the window closes: everything detached again; a reconnect goes unseen
    hints_tx.send(CaptureHint::default()).unwrap();
    wait_for_detail(&health, "capture idle, connect/close detached").await;
    if links {
        check_attached(false, "window closed");
    }
    client.reconnect();
    let unseen = client.call();
    let (fd3, inode3) = client.one_connection().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.assert_quiet("a reconnect between windows");
    eprintln!(
        "between windows: fd {fd2} closed and fd {fd3} (socket {inode3}) opened unseen; call expiring {unseen:?}"
    );

    // (4) the next window (errors persist) finds the new connection and drops the old
    hints_tx.send(CaptureHint { next_refresh_at: None, failing: true }).unwrap();
    wait_for_detail(&health, "capturing (errors persist), connect/close attached").await;
    let expires = client.call();
    let c = w.first_is_call(pid, expires, "a call on the connection opened between windows").await;
    check_call(&c, pid, "rediscovered connection");

    // the client exits (tracked: reported); then the source stops
    drop(client);
    loop {
        if let Event::ProcessExit { pid: p, .. } = w.next("the client's exit").await {
            if p == pid {
                break;
            }
        }
    }
    let status = health.get();
    assert_eq!(status.lost, 0, "{status:?}");
    drop(w.rx);
    tokio::time::timeout(TIMEOUT, task).await.expect("run() did not return after the channel closed").unwrap();

    let logs = logs();
    let found = rediscoveries(&logs);
    eprintln!("re-discoveries (found, tracked, dropped): {found:?}");
    assert_eq!(found.len(), 2, "one per window");
    assert_eq!((found[0].0, found[0].1), (1, 1), "window 1: the connection opened while idle");
    assert_eq!((found[1].0, found[1].1), (1, 1), "window 2: the connection opened between windows");
    let last = logs.lines().rfind(|l| l.contains("eBPF source stopping")).expect("the source logged its stop");
    let dropped: u64 = last
        .split("revalidated_out: ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or_else(|| panic!("no revalidated_out in {last}"));
    // fd2's close was not seen: /proc showed it gone, at the window's open or at a periodic check
    assert!(dropped >= 1, "the connection closed between windows was dropped: {last}");
    assert!(last.contains("lost=0") && last.contains("calls_unknown: 0"), "{last}");
}
