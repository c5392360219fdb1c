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
mod common;

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    time::{Duration, SystemTime},
};

use common::Started;
use tokenwatch::{
    config::{CaptureMode, HookPreference},
    events::{CallObserved, Event, GrpcStatus},
    sources::{
        ebpf::{CaptureHint, Settings, WindowPolicy},
        Health,
    },
};

/// Set in the child: run [`tonic_client_helper`] against this socket.
const TONIC_ENV: &str = "TOKENWATCH_TEST_WINDOWS_SOCKET";
const TIMEOUT: Duration = Duration::from_secs(15);
/// Kernel names (cut at 15 bytes) of the connect/close tracepoint programs.
const CONNECTIONS: [&str; 3] = ["sys_enter_connect", "sys_exit_connect", "sys_enter_close"];

/// Child mode: [`common::tonic_client`] on one lazily connected channel. In
/// a normal test run (no env) it does nothing.
#[test]
#[ignore = "child process of the eBPF tests, not a test"]
fn tonic_client_helper() {
    common::tonic_client(TONIC_ENV, "windows");
}

/// The client process.
struct Client {
    inner: common::Client,
    /// Sockets of the client's runtime (signal handling), held before it
    /// connects: not connections.
    runtime_sockets: HashSet<u64>,
}

impl Client {
    fn spawn(socket: &Path) -> Client {
        let inner = common::Client::tonic(socket, TONIC_ENV, TIMEOUT);
        let mut c = Client { inner, runtime_sockets: HashSet::new() };
        c.runtime_sockets = c.sockets().into_iter().map(|(_, inode)| inode).collect();
        c
    }

    /// One call, which must succeed; its `expires_at`.
    fn call(&mut self) -> SystemTime {
        let called = self.inner.call();
        match called.expires_at {
            Some(expires_at) if called.status == "OK" => expires_at,
            _ => panic!("the call failed: {called:?}"),
        }
    }

    fn reconnect(&mut self) {
        self.inner.reconnect();
    }

    /// (fd, inode) of each socket the client holds.
    fn sockets(&self) -> Vec<(i32, u64)> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(format!("/proc/{}/fd", self.inner.pid)).unwrap().flatten() {
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

/// [`common::wait_for_detail`] with this test's limits.
async fn wait_for_detail(health: &Health, want: &str) -> String {
    common::wait_for_detail(health, want, TIMEOUT, Duration::from_millis(20)).await
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
    common::capture_logs(tracing::Level::DEBUG);
    let dir = tempfile::tempdir().unwrap();
    let Some((socket, _agent)) = common::sim_agent(dir.path()) else { return };
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
    let Some(Started { health, hints: hints_tx, watch: mut w, task }) = common::start(&socket, settings, TIMEOUT) else {
        return;
    };

    // (1) idle: nothing but the sched probes attached, a connect not seen
    let idle = wait_for_detail(&health, "; capture idle").await;
    println!("HOOKS: {idle}");
    assert!(idle.contains("connect/close via syscall tracepoints"), "{idle}");
    assert!(idle.contains("attached only in capture windows"), "{idle}");
    assert!(idle.ends_with("capture idle, connect/close detached"), "{idle}");
    assert!(!idle.contains("syscalls/sys_enter_connect"), "listed as attached: {idle}");
    let links = check_attached(false, "idle at start");
    let mut client = Client::spawn(&socket);
    let pid = client.inner.pid;
    let before = client.call(); // the connect happens here: unseen
    let (fd1, inode1) = client.one_connection().await;
    // The proof that this connect went unseen is in (2): the source reports
    // in ring order, so a reported connect would arrive before the call
    // there, which must come first. Nothing may be queued now either.
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
    // proven unseen in (4), as in (1)
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
    w.stop_after_exit(pid, &health, task).await;

    let logs = common::logs();
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
