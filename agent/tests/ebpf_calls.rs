//! End to end: real gRPC clients — Python grpcio and Rust tonic — call the
//! simulator's token-agent while the eBPF source watches. Each client opens
//! its long-lived channel and makes a call *before* the source starts
//! (discovery + late join), then calls OK / UNAVAILABLE / OK, reconnects
//! (a connection seen from its first byte), and finally calls while capture
//! is idle and across the window a reconnect opens. The test checks the
//! events (method where decodable, status, duration, `expires_at` exact,
//! pid) and that no token the clients received appears in any event or in
//! the source's own log output.
//!
//! Needs root, the object built in, the simulator binaries and the Python
//! venv (`cargo xtask test` provides all; by hand:
//! `cargo build -p tokenwatch-tests --bins` and
//! `TOKENWATCH_EBPF_OBJ=$PWD/target/bpfel-unknown-none/release/tokenwatch cargo test -p tokenwatch --test ebpf_calls -- --nocapture`).
//! Anything missing skips the test, unless `CI` is set: then it fails.
//!
//! `cargo xtask vm-test` runs it in qemu too, with the simulator packed and
//! `TOKENWATCH_VM` set: there the tonic scenario runs and the Python one
//! returns early (no venv in the guest), and the timeouts are longer (TCG).
//!
//! vm-test: yes
mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::{Called, Client, Started};
use tokenwatch::{
    events::{CallObserved, GrpcStatus},
    sources::{
        ebpf::{Settings, WindowPolicy},
        Health, SourceState,
    },
};
use tokenwatch_tests::sim::Mode;

const METHOD: &str = "/yandex.cloud.priv.iam.v1.TokenAgent/GetToken";
/// Set in the child: run [`tonic_client_helper`] against this socket.
const TONIC_ENV: &str = "TOKENWATCH_TEST_TONIC_SOCKET";
/// How long a client or the source may take to answer; three times that in
/// the VMs, where the CPU is emulated.
fn timeout() -> Duration {
    let base = Duration::from_secs(15);
    if in_vm() {
        base * 3
    } else {
        base
    }
}

/// Run by `cargo xtask vm-test` (in qemu, or its host row).
fn in_vm() -> bool {
    std::env::var_os("TOKENWATCH_VM").is_some()
}

/// The Python client: one channel, driven by stdin (`call`, `bigcall` — a
/// request of 40 kB, beyond what the probes copy per syscall —,
/// `reconnect`, `quit`); prints `CALL OK <secs> <nanos> <token>` or `CALL <CODE>`.
const PYTHON_CLIENT: &str = r#"
import os, sys, grpc
sock = sys.argv[1]
def channel():
    # the default :authority (the socket path) is not a valid authority for h2
    # servers; a local subchannel pool makes `reconnect` really connect anew
    ch = grpc.insecure_channel('unix:' + sock, options=[('grpc.default_authority', 'localhost'),
                                                        ('grpc.use_local_subchannel_pool', 1)])
    return ch, ch.unary_unary('/yandex.cloud.priv.iam.v1.TokenAgent/GetToken',
                              request_serializer=lambda b: b, response_deserializer=lambda b: b)
def varint(b, i):
    v = s = 0
    while True:
        x = b[i]; i += 1; v |= (x & 0x7f) << s; s += 7
        if x < 0x80: return v, i
def fields(b):
    i, out = 0, {}
    while i < len(b):
        key, i = varint(b, i)
        if key & 7 == 0:
            out[key >> 3], i = varint(b, i)
        else:
            n, i = varint(b, i); out[key >> 3] = b[i:i + n]; i += n
    return out
def request(tag):
    n, out = len(tag), bytearray(b'\x0a')
    while n >= 0x80:
        out.append((n & 0x7f) | 0x80); n >>= 7
    out.append(n)
    return bytes(out) + tag
ch, get = channel()
print('READY', os.getpid(), flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd in ('call', 'bigcall'):
        try:
            tag = b'python' if cmd == 'call' else b'x' * 40000
            resp = fields(get(request(tag), timeout=10))
            ts = fields(resp.get(2, b''))
            print('CALL OK', ts.get(1, 0), ts.get(2, 0), resp[1].decode(), flush=True)
        except grpc.RpcError as e:
            print('CALL', e.code().name, flush=True)
    elif cmd == 'reconnect':
        ch.close()
        ch, get = channel()
        print('RECONNECTED', flush=True)
    elif cmd == 'quit':
        break
"#;

/// Child mode: [`common::tonic_client`], same protocol as the Python client.
/// In a normal test run (no env) it does nothing.
#[test]
#[ignore = "child process of the eBPF tests, not a test"]
fn tonic_client_helper() {
    common::tonic_client(TONIC_ENV, "tonic");
}

/// [`PYTHON_CLIENT`] on `socket`, run by the venv's Python.
fn python_client(venv: &Path, socket: &Path) -> Client {
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.args(["-c", PYTHON_CLIENT]).arg(socket);
    Client::spawn(cmd, timeout())
}

/// [`common::wait_for_detail`] with this test's limits.
async fn wait_for_detail(health: &Health, want: &str) -> String {
    common::wait_for_detail(health, want, timeout().max(Duration::from_secs(30)), Duration::from_millis(50)).await
}

/// The detail once the source runs.
async fn wait_for_running(health: &Health) -> String {
    let deadline = tokio::time::Instant::now() + timeout();
    loop {
        let s = health.get();
        if s.state == SourceState::Running {
            return s.detail;
        }
        assert!(tokio::time::Instant::now() < deadline, "the source never ran: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn venv() -> PathBuf {
    std::env::var_os("TOKENWATCH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/venv"))
}

/// One client kind, start to end.
async fn scenario(kind: &str) {
    // The two scenarios load their own probes; running them one at a time
    // keeps the timing of each honest on a 2-CPU machine.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _serial = SERIAL.lock().await;
    common::capture_logs(tracing::Level::TRACE);
    let dir = tempfile::tempdir().unwrap();
    let Some((socket, mut agent)) = common::sim_agent(dir.path()) else { return };
    let mut client = match kind {
        "python" => {
            let venv = venv();
            if !venv.join("bin/python").exists() {
                return common::skip_or_fail(format!("no Python venv at {} (cargo xtask setup)", venv.display()));
            }
            python_client(&venv, &socket)
        }
        _ => Client::tonic(&socket, TONIC_ENV, timeout()),
    };
    let pid = client.pid;

    // (1) a long-lived channel and a call before the source exists
    let first = client.call();
    assert_eq!(first.status, "OK", "{first:?}");

    let settings = Settings {
        window: WindowPolicy {
            after_connect: Duration::from_secs(5),
            linger: Duration::from_secs(1),
            ..WindowPolicy::default()
        },
        ..Settings::default()
    };
    let Some(Started { health, hints: _hints_tx, watch: mut w, task }) = common::start(&socket, settings, timeout())
    else {
        return;
    };
    // for `cargo xtask vm-test`'s table: which hooks this kernel ran, and why not others
    println!("HOOKS: {}", wait_for_running(&health).await);
    // discovery found the open connection: the start window captures until it showed a call
    let detail = wait_for_detail(&health, "capturing (start: open connections)").await;
    eprintln!("[{kind}] {detail}");

    // (2) late join: OK, UNAVAILABLE, OK on the connection opened before
    let ok = client.call();
    let c = w.call(pid, "the late-joined OK call", |c| c.expires_at == ok.expires_at).await;
    check_ok(&c, &ok, pid, kind, "late join");
    eprintln!("[{kind}] late join, call 1: method {:?} status {:?}", c.method, c.status);
    if let Some(m) = &c.method {
        assert_eq!(m, METHOD);
    }

    agent.set_mode(Mode::Unavailable).unwrap();
    let failed = client.call();
    assert_eq!(failed.status, "UNAVAILABLE", "{failed:?}");
    let c = w.call(pid, "the UNAVAILABLE call", |_| true).await;
    eprintln!("[{kind}] late join, UNAVAILABLE call: method {:?} status {:?}", c.method, c.status);
    assert!(c.status.is_none_or(|s| s == GrpcStatus::UNAVAILABLE), "{c:?}");
    assert_eq!(c.expires_at, None);
    assert!(c.duration.is_some_and(|d| d > Duration::ZERO), "{c:?}");

    agent.set_mode(Mode::Ok).unwrap();
    let ok = client.call();
    let c = w.call(pid, "the second late-joined OK call", |c| c.expires_at == ok.expires_at).await;
    check_ok(&c, &ok, pid, kind, "late join");
    eprintln!("[{kind}] late join, call 3: method {:?}", c.method);

    // (3) a new connection while capturing: decoded from its first byte
    client.reconnect();
    let ok = client.call();
    w.connect(pid).await;
    let c = w.call(pid, "the call on the new connection", |c| c.expires_at == ok.expires_at).await;
    check_ok(&c, &ok, pid, kind, "from start");
    assert_eq!(c.method.as_deref(), Some(METHOD), "a connection seen from its start names its method");
    agent.set_mode(Mode::Unavailable).unwrap();
    let failed = client.call();
    assert_eq!(failed.status, "UNAVAILABLE");
    let c = w.call(pid, "UNAVAILABLE on the new connection", |_| true).await;
    assert_eq!((c.method.as_deref(), c.status), (Some(METHOD), Some(GrpcStatus::UNAVAILABLE)), "{c:?}");
    agent.set_mode(Mode::Ok).unwrap();
    let ok = client.call();
    let c = w.call(pid, "the second call on the new connection", |c| c.expires_at == ok.expires_at).await;
    check_ok(&c, &ok, pid, kind, "from start");
    assert_eq!(c.method.as_deref(), Some(METHOD));

    if kind == "python" {
        // a request larger than the probes copy per syscall: the rest is a
        // gap, the response still decodes, and the next call resynchronises
        let big = client.call_with("bigcall");
        let c = w.call(pid, "the big call", |c| c.expires_at == big.expires_at).await;
        check_ok(&c, &big, pid, kind, "big request");
        let ok = client.call();
        let c = w.call(pid, "the call after the big one", |c| c.expires_at == ok.expires_at).await;
        check_ok(&c, &ok, pid, kind, "after a gap");
        eprintln!("[{kind}] after the truncated request: method {:?}", c.method);
    }

    // (4) idle: no call is decoded; a reconnect opens a window after the fact
    let detail = wait_for_detail(&health, "capture idle").await;
    eprintln!("[{kind}] {detail}");
    let idle = client.call();
    assert_eq!(idle.status, "OK");
    client.reconnect();
    let missed = client.call(); // the connect opens the window; this call races the attach
    w.connect(pid).await;
    wait_for_detail(&health, "capturing (a client connected)").await;
    let after = client.call();
    let c = w.call(pid, "the call after the window opened", |c| c.expires_at == after.expires_at).await;
    check_ok(&c, &after, pid, kind, "after a reconnect while idle");
    let early = w.drain();
    let saw = |e: &Called| w.seen.iter().any(|s| e.expires_at.is_some_and(|x| s.contains(&format!("{:?}", Some(x)))));
    eprintln!(
        "[{kind}] idle: call on the idle connection reported: {}; first call after the reconnect reported: {}; next call: method {:?}",
        saw(&idle),
        saw(&missed),
        c.method
    );
    assert!(!saw(&idle), "capture was detached: nothing of that call can have been decoded");
    drop(early);

    // (5) the client exits: reported as a process exit
    let tokens = std::mem::take(&mut client.tokens);
    drop(client);
    let seen = w.stop_after_exit(pid, &health, task).await;

    // (6) no token in anything the source emitted or logged
    let logs = common::logs();
    check_no_tokens(&tokens, &seen, &logs, kind);

    // the source's own counters, from its last words
    let last = logs.lines().rfind(|l| l.contains("eBPF source stopping")).expect("the source logged its stop");
    eprintln!("[{kind}] {last}");
    assert!(last.contains("lost=0") && last.contains("read_fault=0") && last.contains("calls_unknown: 0"), "{last}");
    if kind == "python" {
        assert!(last.contains("gaps: 1,") && !last.contains("truncated=0"), "the big request: {last}");
    }
}

fn check_ok(c: &CallObserved, called: &Called, pid: u32, kind: &str, what: &str) {
    assert_eq!(c.status, Some(GrpcStatus::OK), "[{kind}] {what}: {c:?}");
    assert_eq!(c.expires_at, called.expires_at, "[{kind}] {what}: expires_at as the server sent it");
    assert_eq!(c.process.pid, pid, "[{kind}] {what}");
    assert!(c.duration.is_some_and(|d| d > Duration::ZERO && d < timeout()), "[{kind}] {what}: {c:?}");
    // SAFETY: getuid cannot fail.
    assert_eq!(c.uid, Some(unsafe { libc::getuid() }), "[{kind}] {what}");
    assert_eq!(c.request_id, None);
    assert_eq!(c.error, None);
}

/// None of `tokens` (nor a distinctive part of one) in the events or the logs.
fn check_no_tokens(tokens: &[String], seen: &[String], logs: &str, kind: &str) {
    assert!(tokens.len() >= 8, "[{kind}] the clients received {} tokens", tokens.len());
    assert!(seen.iter().any(|s| s.contains("Call(")), "[{kind}] no call events to search");
    for token in tokens {
        assert!(token.starts_with("t1.") && token.len() > 100, "[{kind}] not an IAM-shaped token");
        // the signature part (last 86 characters) is what must never leak
        let secret = &token[token.len() - 40..];
        for (i, ev) in seen.iter().enumerate() {
            assert!(!ev.contains(secret), "[{kind}] event {i} holds a token: {ev}");
        }
        assert!(!logs.contains(secret), "[{kind}] the source's log output holds a token");
    }
    eprintln!("[{kind}] {} tokens, none in {} events or {} bytes of logs", tokens.len(), seen.len(), logs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_calls_are_reported() {
    if in_vm() {
        // not a skip that CI would catch: the guest has no Python by design
        eprintln!("not run: TOKENWATCH_VM is set (no Python venv in the VM); the tonic test covers the kernel");
        return;
    }
    scenario("python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_calls_are_reported() {
    scenario("tonic").await;
}
