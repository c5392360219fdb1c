//! End-to-end test of the eBPF connect probes: loads the real object, makes
//! child processes connect to a watched Unix socket path (and to paths that
//! must not be reported), and checks the events that come back.
//!
//! Needs root (CAP_BPF + CAP_PERFMON) and the object built in:
//! `TOKENWATCH_EBPF_OBJ=$PWD/target/bpfel-unknown-none/release/tokenwatch cargo test -p tokenwatch --test ebpf_connect`.
//! When loading fails the test is skipped, unless `CI` is set: then it fails.
//!
//! The child is this test binary itself, re-executed to run [`connect_helper`]
//! with the connect to make described in environment variables.
mod common;

use std::{
    os::{
        linux::net::SocketAddrExt,
        unix::{ffi::OsStrExt, net::UnixListener},
    },
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use tokenwatch::{
    events::{ConnectObserved, Event},
    sources::{ebpf::EbpfSource, Health, SourceState},
};
use tokio::sync::mpsc;

/// Set in the child: the path to connect to.
const TARGET_ENV: &str = "TOKENWATCH_TEST_CONNECT_PATH";
/// Set in the child: how to pass the address (see [`AddrForm`]).
const FORM_ENV: &str = "TOKENWATCH_TEST_CONNECT_FORM";
/// Set in the child: exec /bin/true after connecting.
const EXEC_ENV: &str = "TOKENWATCH_TEST_CONNECT_EXEC";
/// The child's `comm` (at most 15 bytes), set before it connects.
const CHILD_COMM: &str = "tw-connect-test";
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the child builds `sockaddr_un` and `addrlen`; clients differ.
#[derive(Clone, Copy, Debug)]
enum AddrForm {
    /// `addrlen` = 2 + path length (Python).
    Exact,
    /// `addrlen` counts a trailing NUL (Go, Rust std).
    Nul,
    /// `addrlen` = sizeof(struct sockaddr_un) (much C code).
    Full,
    /// Abstract socket: `sun_path[0] == 0`, then the path's bytes.
    Abstract,
}

impl AddrForm {
    fn name(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Nul => "nul",
            Self::Full => "full",
            Self::Abstract => "abstract",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "exact" => Self::Exact,
            "nul" => Self::Nul,
            "full" => Self::Full,
            "abstract" => Self::Abstract,
            other => panic!("unknown address form {other}"),
        }
    }
}

/// What the child reports about its connect.
#[derive(Debug)]
struct ChildConnect {
    pid: u32,
    fd: i32,
    /// 0 on success.
    errno: i32,
}

/// Child mode: connects once and exits. Ignored in a normal run (it is not a
/// test); the parent runs it with `--ignored --exact`.
#[test]
#[ignore = "child process of the eBPF tests, not a test"]
fn connect_helper() {
    let Some(target) = std::env::var_os(TARGET_ENV) else { return };
    let form = AddrForm::parse(&std::env::var(FORM_ENV).expect("form"));
    let comm = std::ffi::CString::new(CHILD_COMM).unwrap();
    // SAFETY: PR_SET_NAME with a NUL-terminated string of ≤ 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) };
    let (fd, errno) = raw_connect(Path::new(&target), form);
    println!("TW_RESULT pid={} fd={fd} errno={errno}", std::process::id());
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    if std::env::var_os(EXEC_ENV).is_some() {
        // Become another program, as a restarting service might: the
        // token it held in memory is gone.
        let prog = std::ffi::CString::new("/bin/true").unwrap();
        // SAFETY: a NUL-terminated path and a NULL-terminated argv.
        unsafe { libc::execv(prog.as_ptr(), [prog.as_ptr(), std::ptr::null()].as_ptr()) };
        panic!("execv: {}", std::io::Error::last_os_error());
    }
    // Leave before libtest prints anything else or closes the socket politely.
    std::process::exit(0);
}

/// `socket()` + `connect()` with the address built as `form` says.
fn raw_connect(path: &Path, form: AddrForm) -> (i32, i32) {
    // SAFETY: plain syscalls on a zeroed, fully initialised sockaddr_un.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = path.as_os_str().as_bytes();
        let start = usize::from(matches!(form, AddrForm::Abstract));
        assert!(start + bytes.len() < addr.sun_path.len(), "path too long");
        for (i, &b) in bytes.iter().enumerate() {
            addr.sun_path[start + i] = b as libc::c_char;
        }
        let base = std::mem::offset_of!(libc::sockaddr_un, sun_path);
        let len = match form {
            AddrForm::Exact => base + bytes.len(),
            AddrForm::Nul => base + bytes.len() + 1,
            AddrForm::Full => std::mem::size_of::<libc::sockaddr_un>(),
            AddrForm::Abstract => base + 1 + bytes.len(),
        };
        let rc = libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len as libc::socklen_t);
        let errno = if rc == 0 { 0 } else { std::io::Error::last_os_error().raw_os_error().unwrap() };
        (fd, errno)
    }
}

/// Runs this binary's [`connect_helper`] as a child process.
async fn connect_child(path: &Path, form: AddrForm) -> ChildConnect {
    connect_child_then(path, form, false).await
}

/// [`connect_child`]; with `exec`, the child execs /bin/true after connecting.
async fn connect_child_then(path: &Path, form: AddrForm, exec: bool) -> ChildConnect {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = tokio::process::Command::new(exe);
    if exec {
        cmd.env(EXEC_ENV, "1");
    }
    let out = cmd
        .args(["connect_helper", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env(TARGET_ENV, path)
        .env(FORM_ENV, form.name())
        .output()
        .await
        .expect("spawning the connect helper");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("TW_RESULT "))
        .unwrap_or_else(|| panic!("helper printed no result: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    let field = |k: &str| -> i64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {k} in {line}"))
            .parse()
            .unwrap()
    };
    ChildConnect { pid: field("pid") as u32, fd: field("fd") as i32, errno: field("errno") as i32 }
}

/// The next event, which must be a connect by `pid`: anything else (e.g. a
/// connect that should have been filtered in the kernel) fails the test.
/// `silent` names the children whose connects must not be reported.
/// Exits of children whose connect succeeded (tracked processes) are
/// collected into `exits` on the way.
async fn next_connect(
    rx: &mut mpsc::Receiver<Event>,
    pid: u32,
    what: &str,
    silent: &[(u32, String)],
    exits: &mut Vec<u32>,
) -> ConnectObserved {
    let ev = loop {
        let ev = tokio::time::timeout(EVENT_TIMEOUT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no event within {EVENT_TIMEOUT:?} for {what} (pid {pid})"))
            .expect("eBPF source stopped");
        match ev {
            Event::ProcessExit { pid, .. } => exits.push(pid),
            other => break other,
        }
    };
    let Event::Connect(c) = ev else { panic!("the eBPF source sent a non-connect event: {ev:?}") };
    if let Some((_, leaked)) = silent.iter().find(|(p, _)| *p == c.process.pid) {
        panic!("{leaked} was reported, but must not leave the kernel: {c:?}");
    }
    assert_eq!(c.process.pid, pid, "expected the event of {what}, got {c:?}");
    c
}

fn check(c: &ConnectObserved, child: &ChildConnect, what: &str) {
    assert_eq!(c.process.comm, CHILD_COMM, "{what}");
    assert_eq!(c.fd, child.fd, "{what}");
    assert_eq!(c.errno, (child.errno != 0).then_some(child.errno), "{what}");
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    assert_eq!((c.uid, c.gid), (uid, gid), "{what}");
    assert!(c.latency < Duration::from_secs(5), "{what}: {:?}", c.latency);
    let skew = c.at.duration_since(SystemTime::now()).unwrap_or_else(|e| e.duration());
    assert!(skew < Duration::from_secs(30), "{what}: event time {:?} is {skew:?} off", c.at);
}

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("tokenwatch-ebpf-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_connects_to_the_watched_socket_only() {
    let dir = TempDir::new();
    let watched = dir.0.join("token-agent.sock");
    let listener = UnixListener::bind(&watched).unwrap();

    let source = match EbpfSource::load(&watched) {
        Ok(s) => s,
        Err(e) => return common::skip_or_fail(format!("eBPF source failed to load: {e}")),
    };
    let (tx, mut rx) = mpsc::channel(64);
    let health = Health::new(SourceState::Starting, "");
    let task = tokio::spawn(source.run(tx, health.clone()));
    let mut expected_events = 0;
    // Children whose connect succeeded: tracked, so their exit is reported.
    let mut tracked_children = Vec::new();
    let mut exits = Vec::new();

    // (a) successful connects, with each way clients size the address
    for form in [AddrForm::Nul, AddrForm::Exact, AddrForm::Full] {
        let what = format!("successful connect ({form:?})");
        let child = connect_child(&watched, form).await;
        assert_eq!(child.errno, 0, "{what}: {child:?}");
        let c = next_connect(&mut rx, child.pid, &what, &[], &mut exits).await;
        check(&c, &child, &what);
        expected_events += 2; // the connect and the exit
        tracked_children.push(child.pid);
    }
    // (a') a tracked client that execs: reported once, at the exec (the new
    // program is not a tracked client, so its exit is not)
    let child = connect_child_then(&watched, AddrForm::Nul, true).await;
    assert_eq!(child.errno, 0, "{child:?}");
    let c = next_connect(&mut rx, child.pid, "connect before exec", &[], &mut exits).await;
    check(&c, &child, "connect before exec");
    expected_events += 2;
    tracked_children.push(child.pid);
    assert_eq!(health.get().state, SourceState::Running);
    // the connects above came through whichever hook the kernel allowed, and the detail says which
    let detail = health.get().detail;
    let on_tracepoints = detail.contains("syscalls/sys_enter_connect") && detail.contains("connect/close via syscall tracepoints");
    let on_trampolines = detail.contains("fentry/__x64_sys_connect") && detail.contains("connect/close via fentry/fexit");
    assert!(on_tracepoints != on_trampolines, "{detail}");
    // for `cargo xtask vm-test`'s table: which hooks this kernel ran
    println!("HOOKS: {}", health.get().detail);

    // (c) stale socket file: the listener is gone, the file stays
    drop(listener);
    let child = connect_child(&watched, AddrForm::Nul).await;
    assert_eq!(child.errno, libc::ECONNREFUSED, "{child:?}");
    let c = next_connect(&mut rx, child.pid, "stale socket", &[], &mut exits).await;
    check(&c, &child, "stale socket");
    assert_eq!(c.errno, Some(libc::ECONNREFUSED));
    expected_events += 1;

    // (b) missing socket file
    std::fs::remove_file(&watched).unwrap();
    let child = connect_child(&watched, AddrForm::Exact).await;
    assert_eq!(child.errno, libc::ENOENT, "{child:?}");
    let c = next_connect(&mut rx, child.pid, "missing socket", &[], &mut exits).await;
    check(&c, &child, "missing socket");
    assert_eq!(c.errno, Some(libc::ENOENT));
    expected_events += 1;

    // Connects that must never leave the kernel.
    let other = dir.0.join("other.sock");
    let _other_listener = UnixListener::bind(&other).unwrap();
    let abstract_name = format!("tokenwatch-test-{}", std::process::id());
    let abstract_addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
    let _abstract_listener = UnixListener::bind_addr(&abstract_addr).unwrap();
    let unrelated: [(&str, PathBuf, AddrForm); 6] = [
        ("an unrelated socket", other.clone(), AddrForm::Nul),
        ("an unrelated socket (full addrlen)", other.clone(), AddrForm::Full),
        ("a path extending the watched one", with_suffix(&watched, "x"), AddrForm::Nul),
        ("a prefix of the watched path", dir.0.join("token-agent.soc"), AddrForm::Full),
        ("an abstract socket", PathBuf::from(&abstract_name), AddrForm::Abstract),
        ("an abstract socket named like the watched path", watched.clone(), AddrForm::Abstract),
    ];
    let mut silent = Vec::new();
    for (what, path, form) in &unrelated {
        let child = connect_child(path, *form).await;
        silent.push((child.pid, format!("a connect to {what} ({child:?})")));
    }
    // The agent itself is never traced.
    assert!(std::os::unix::net::UnixStream::connect(&watched).is_err());

    // Sentinel: once its event arrives, everything above would have too;
    // next_connect fails on any event that is not the sentinel's.
    let child = connect_child(&watched, AddrForm::Nul).await;
    let c = next_connect(&mut rx, child.pid, "sentinel connect", &silent, &mut exits).await;
    check(&c, &child, "sentinel connect");
    expected_events += 1; // the socket is gone by now: a failed connect, not tracked
                          // Each tracked child's exit, and nothing else (failed connects are not tracked).
    while exits.len() < tracked_children.len() {
        match tokio::time::timeout(EVENT_TIMEOUT, rx.recv()).await {
            Ok(Some(Event::ProcessExit { pid, .. })) => exits.push(pid),
            other => panic!("expected the exits of {tracked_children:?} (have {exits:?}), got {other:?}"),
        }
    }
    exits.sort();
    tracked_children.sort();
    assert_eq!(exits, tracked_children, "exits of the tracked children");
    assert!(rx.try_recv().is_err(), "unexpected extra event");

    let status = health.get();
    assert_eq!(status.events, expected_events, "{status:?}");
    assert_eq!(status.lost, 0, "{status:?}");

    // The source stops when the receiver goes away.
    drop(rx);
    tokio::time::timeout(EVENT_TIMEOUT, task).await.expect("run() did not return after the channel closed").unwrap();
}
