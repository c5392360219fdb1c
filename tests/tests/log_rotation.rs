//! Issue #4 end to end: the agent binary tails a TSKV access log that a
//! writer appends to at a steady rate, while the real `logrotate` (Debian's,
//! `-f` with its own config and `-s STATEFILE` in a tempdir) rotates it.
//! The agent's own account on `/metrics`, `tokenwatch_log_lines_total
//! {file="access_log",result="parsed"}`, must match what was written — also
//! across a SIGTERM + restart in the middle, with rotations while it is down
//! (the agent resumes from the log position it persisted under `[state] dir`).
//!
//! Each line carries a unique `request_id`, and each applied access-log record
//! becomes an OTLP SERVER span with `rpc.request.id`: the spans, received by a
//! test OTLP receiver, say *which* lines the agent took, so "no duplicates"
//! and "nothing missed" are checked line by line, not only as counts.
//!
//! - `create` (rename, new file; the writer reopens the path like a daemon
//!   after a reload): every line written is parsed exactly once.
//! - `copytruncate` (the writer keeps its `O_APPEND` fd): lines the writer
//!   appends between logrotate's copy and its truncate end up in no file once
//!   the truncate is done — logrotate's loss, no reader can recover bytes that
//!   exist nowhere (see agent/tests/tail_rotation.rs). So, as there: no line
//!   twice, every line present on disk (the log and all its copies) taken,
//!   and the parsed count equals the number of distinct lines taken.
//!
//! The agent starts on an empty log before the writer writes, so its
//! first-start backfill (12 h by time) has nothing to add.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs::{self, OpenOptions},
    io::{self, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use tokenwatch_tests::{
    agent_proc::{agent_bin, Agent},
    otlp::Receiver,
    proto::GET_TOKEN_METHOD,
    sim::{fmt_time, tskv},
};

/// Lines per second, and lines in all: about 8 s of writing.
const RATE: u64 = 2000;
const TOTAL: u64 = 16_000;
/// `logrotate -f` runs, at even steps of the writer's progress.
const ROTATIONS: u64 = 5;
/// How long the agent may take to catch up once the writer pauses or stops.
const CATCH_UP: Duration = Duration::from_secs(30);
/// Appended after catching up: a line the agent counts as unparsed. Once it
/// is counted, the tailer has read past everything before it, so a late
/// re-read (a duplicate) would have shown in the parsed count by then.
const SENTINEL: &str = "not an access-log record: the end of the test's writing\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    CopyTruncate,
}

impl Mode {
    fn directive(self) -> &'static str {
        match self {
            Mode::Create => "create",
            Mode::CopyTruncate => "copytruncate",
        }
    }
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// logrotate's path when it and the agent binary are there; else fails
/// under CI, or says why and skips (None).
fn ready_or_skip() -> Option<PathBuf> {
    let why = if !agent_bin().is_file() {
        format!("agent binary {} not found (TOKENWATCH_BIN; `cargo build -p tokenwatch`)", agent_bin().display())
    } else {
        match logrotate_bin() {
            Some(p) => return Some(p),
            None => "logrotate not found (Debian package logrotate; `cargo xtask setup` installs it)".to_string(),
        }
    };
    if in_ci() {
        panic!("{why} (CI is set: this test must run)");
    }
    eprintln!("SKIPPED: {why}");
    None
}

fn logrotate_bin() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join("logrotate"))
        .find(|p| p.is_file())
}

fn request_id(seq: u64) -> String {
    format!("rot-{seq:08}")
}

/// A well-formed access-log line as token-agent (and the simulator) writes it.
fn access_line(seq: u64, pid: &str) -> String {
    let mut line = tskv::format_line(&[
        ("time", &fmt_time(SystemTime::now())),
        ("pid", pid),
        ("uid", "0"),
        ("method", GET_TOKEN_METHOD),
        ("status", "OK"),
        ("duration", "0.250ms"),
        ("request_id", &request_id(seq)),
    ]);
    line.push('\n');
    line
}

/// The tempdir: logs (the access log and its generations only), state, runs.
struct Rig {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    logs: PathBuf,
    log: PathBuf,
    mode: Mode,
    logrotate: PathBuf,
    conf: PathBuf,
    lr_state: PathBuf,
    written: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
}

impl Rig {
    fn new(mode: Mode, logrotate: PathBuf) -> Rig {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let logs = root.join("logs");
        fs::create_dir(&logs).expect("mkdir logs");
        let log = logs.join("access.log");
        fs::write(&log, b"").expect("empty access log");
        fs::write(logs.join("token-agent.log"), b"").expect("empty app log");
        let conf = root.join("logrotate.conf");
        let text = format!(
            "{} {{\n    rotate 10\n    {}\n    missingok\n    nocompress\n}}\n",
            log.display(),
            mode.directive()
        );
        fs::write(&conf, text).expect("logrotate config");
        Rig {
            _tmp: tmp,
            lr_state: root.join("logrotate.state"),
            root,
            logs,
            log,
            mode,
            logrotate,
            conf,
            written: Arc::default(),
            failed: Arc::default(),
        }
    }

    fn config(&self, otlp: &str) -> String {
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        format!(
            "[token_agent]\nsocket = {}\naccess_log = {}\napp_log = {}\nlog_format = \"tskv\"\n\
             [export]\notlp_endpoint = {otlp:?}\notlp_protocol = \"grpc\"\ninterval = \"1s\"\n\
             [state]\ndir = {}\n\
             [ebpf]\nenabled = false\n",
            q(&self.root.join("token-agent.sock")),
            q(&self.log),
            q(&self.logs.join("token-agent.log")),
            q(&self.root.join("state")),
        )
    }

    /// Starts the agent in its own folder (config, stderr log), same state dir.
    fn start_agent(&self, run: &str, otlp: &Receiver) -> Agent {
        let dir = self.root.join(run);
        fs::create_dir_all(&dir).expect("run dir");
        // spans leave in 100 ms batches from a queue that holds every line of the run
        let env = [("OTEL_BSP_SCHEDULE_DELAY", "100"), ("OTEL_BSP_MAX_QUEUE_SIZE", "65536")];
        let agent = Agent::start(&dir, &self.config(&otlp.grpc_endpoint()), &env).expect("agent starts");
        // the access log is followed (from its start: empty, or the checkpoint)
        wait_for(&format!("{run}: access_log source running"), Duration::from_secs(20), || {
            let s = agent.status().ok()?;
            (s["sources"]["access_log"]["state"] == "running").then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
        agent
    }

    /// Appends lines 1..=TOTAL at RATE per second, one `write` each, as the
    /// mode's daemon would: reopening the path when it names a new file
    /// (`create`), or keeping its `O_APPEND` fd (`copytruncate`).
    fn writer(&self) -> thread::JoinHandle<io::Result<()>> {
        let (path, mode) = (self.log.clone(), self.mode);
        let (written, failed) = (self.written.clone(), self.failed.clone());
        let pid = std::process::id().to_string();
        thread::spawn(move || {
            let run = || -> io::Result<()> {
                let open = || OpenOptions::new().append(true).open(&path);
                let mut f = open()?;
                let mut ino = f.metadata()?.ino();
                let step = Duration::from_secs(1) / RATE as u32;
                let mut next = Instant::now();
                for seq in 1..=TOTAL {
                    if mode == Mode::Create {
                        if let Ok(m) = fs::metadata(&path) {
                            if m.ino() != ino {
                                f = open()?;
                                ino = f.metadata()?.ino();
                            }
                        }
                    }
                    f.write_all(access_line(seq, &pid).as_bytes())?;
                    written.store(seq, Ordering::SeqCst);
                    next += step;
                    let now = Instant::now();
                    if next > now + Duration::from_millis(2) {
                        thread::sleep(next - now);
                    }
                }
                Ok(())
            };
            let r = run();
            if r.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
            r
        })
    }

    fn wait_written(&self, n: u64) {
        wait_for(&format!("the writer at line {n}"), CATCH_UP, || {
            assert!(!self.failed.load(Ordering::SeqCst), "the writer failed");
            (self.written.load(Ordering::SeqCst) >= n).then_some(())
        })
        .unwrap();
    }

    fn rotate(&self) {
        let out = Command::new(&self.logrotate)
            .arg("-f")
            .arg("-s")
            .arg(&self.lr_state)
            .arg(&self.conf)
            .output()
            .expect("run logrotate");
        assert!(
            out.status.success(),
            "logrotate failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The request ids of every line in the log and all its generations.
    fn on_disk(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for e in fs::read_dir(&self.logs).expect("readdir").flatten() {
            if !e.file_name().to_string_lossy().starts_with("access.log") {
                continue;
            }
            let text = fs::read(e.path()).expect("read a generation");
            for line in String::from_utf8_lossy(&text).lines() {
                let line = line.trim_start_matches('\0');
                if line.is_empty() {
                    continue;
                }
                let pairs = tskv::parse_line(line).unwrap_or_else(|| panic!("a bad line on disk: {line:?}"));
                let id = pairs.into_iter().find(|(k, _)| k == "request_id").map(|(_, v)| v);
                ids.insert(id.unwrap_or_else(|| panic!("no request_id in {line:?}")));
            }
        }
        ids
    }

    fn listing(&self) -> Vec<(String, u64, u64)> {
        let mut v: Vec<_> = fs::read_dir(&self.logs)
            .map(|r| {
                r.flatten()
                    .filter_map(|e| {
                        let m = e.metadata().ok()?;
                        Some((e.file_name().to_string_lossy().into_owned(), m.ino(), m.len()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Polls `f` every 50 ms until it yields, or fails after `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(t) = f() {
            return Ok(t);
        }
        if Instant::now() > deadline {
            return Err(format!("{what}: not reached within {timeout:?}"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The sum of `name`'s samples on /metrics that carry every label in `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let (set, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once('}') {
                Some((set, value)) => (set, value),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        let have: BTreeMap<&str, &str> =
            set.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.trim(), v.trim().trim_matches('"'))).collect();
        if labels.iter().all(|(k, v)| have.get(k) == Some(v)) {
            sum += value.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        }
    }
    sum as u64
}

/// (parsed, unparsed) access-log lines as /metrics says.
fn lines(agent: &Agent) -> Option<(u64, u64)> {
    let text = agent.get("/metrics").ok()?;
    let n = "tokenwatch_log_lines_total";
    Some((
        metric(&text, n, &[("file", "access_log"), ("result", "parsed")]),
        metric(&text, n, &[("file", "access_log"), ("result", "unparsed")]),
    ))
}

/// The request ids of the access-log records the agent applied (its SERVER spans).
fn span_ids(rx: &Receiver) -> Vec<String> {
    rx.spans()
        .into_iter()
        .filter(|s| s.kind == 2 && s.attributes.get("tokenwatch.source").map(String::as_str) == Some("access_log"))
        .filter_map(|s| s.attributes.get("rpc.request.id").cloned())
        .collect()
}

/// The last `tokenwatch.log.lines{access_log, parsed}` the agent exported (cumulative).
fn exported_parsed(rx: &Receiver) -> Option<u64> {
    rx.points()
        .iter()
        .filter(|p| {
            p.metric == "tokenwatch.log.lines"
                && p.attributes.get("file").map(String::as_str) == Some("access_log")
                && p.attributes.get("result").map(String::as_str) == Some("parsed")
        })
        .map(|p| p.value as u64)
        .max()
}

/// Waits until the agent has taken every line on disk and exported a span
/// for each line it counted, then until a sentinel line appended after it
/// is counted (as unparsed) with the parsed count unchanged. Returns its
/// (parsed, unparsed) and the span ids of all runs so far.
fn catch_up(
    what: &str,
    agent: &Agent,
    earlier: &[String],
    earlier_parsed: u64,
    rx: &Receiver,
    on_disk: &BTreeSet<String>,
    rig: &Rig,
) -> ((u64, u64), Vec<String>) {
    let mut last = None;
    let got = wait_for(what, CATCH_UP, || {
        let (parsed, unparsed) = lines(agent)?;
        let mut ids = earlier.to_vec();
        ids.extend(span_ids(rx));
        let have: BTreeSet<&String> = ids.iter().collect();
        let missing = on_disk.iter().filter(|id| !have.contains(id)).count();
        last = Some((parsed, unparsed, ids.len(), missing));
        (missing == 0 && earlier_parsed + parsed == ids.len() as u64).then_some(((parsed, unparsed), ids))
    });
    let ((parsed, unparsed), ids) = got.unwrap_or_else(|e| {
        panic!(
            "{e}; last (parsed, unparsed, spans, on disk but not taken) = {last:?}; written {}; files {:?}\nagent log:\n{}",
            rig.written.load(Ordering::SeqCst),
            rig.listing(),
            agent.log_text()
        )
    });
    OpenOptions::new()
        .append(true)
        .open(&rig.log)
        .and_then(|mut f| f.write_all(SENTINEL.as_bytes()))
        .expect("appending the sentinel");
    let now = wait_for(&format!("{what}: the sentinel counted"), CATCH_UP, || {
        lines(agent).filter(|&(_, u)| u > unparsed)
    })
    .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log_text()));
    assert_eq!(now, (parsed, unparsed + 1), "{what}: the count moved after catching up (a late re-read?)");
    ((parsed, unparsed), ids)
}

/// Every id at most once; returns the distinct set.
fn distinct(ids: &[String]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let dup: Vec<&String> = ids.iter().filter(|id| !seen.insert((*id).clone())).collect();
    assert!(dup.is_empty(), "{} lines taken twice, e.g. {:?}", dup.len(), &dup[..dup.len().min(10)]);
    seen
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime")
}

/// The checks after the last line, for both modes. `parsed` is the sum over runs.
fn verdict(rig: &Rig, label: &str, parsed: u64, unparsed: u64, ids: &[String], on_disk: &BTreeSet<String>) {
    let written = rig.written.load(Ordering::SeqCst);
    assert_eq!(written, TOTAL);
    let taken = distinct(ids);
    let all: BTreeSet<String> = (1..=TOTAL).map(request_id).collect();
    let foreign: Vec<&String> = taken.difference(&all).collect();
    assert!(foreign.is_empty(), "ids never written: {foreign:?}");
    assert_eq!(unparsed, 0, "{label}: unparsed lines");
    assert_eq!(parsed, taken.len() as u64, "{label}: parsed count vs distinct lines taken");
    let in_no_file = TOTAL - on_disk.len() as u64;
    match rig.mode {
        Mode::Create => {
            assert_eq!(in_no_file, 0, "{label}: lines lost on disk with create?");
            assert_eq!(parsed, written, "{label}: parsed == written");
        }
        Mode::CopyTruncate => {
            assert!(on_disk.is_subset(&taken));
            eprintln!(
                "{label}: {in_no_file} lines ended up in no file (written between logrotate's copy and its \
                 truncate); the agent took {} of them",
                parsed - on_disk.len() as u64
            );
        }
    }
    eprintln!("{label}: written {written}, parsed {parsed}, unparsed {unparsed}, files {:?}", rig.listing());
}

fn without_restart(mode: Mode) {
    let Some(logrotate) = ready_or_skip() else { return };
    let started = Instant::now();
    let rt = runtime();
    let rx = rt.block_on(Receiver::start()).expect("OTLP receiver");
    let rig = Rig::new(mode, logrotate);
    let agent = rig.start_agent("run1", &rx);
    let writer = rig.writer();
    for k in 1..=ROTATIONS {
        rig.wait_written(k * TOTAL / (ROTATIONS + 1));
        rig.rotate();
    }
    writer.join().expect("writer thread").expect("writer I/O");
    let on_disk = rig.on_disk();
    let ((parsed, unparsed), ids) = catch_up("caught up", &agent, &[], 0, &rx, &on_disk, &rig);
    let label = format!("{mode:?}");
    verdict(&rig, &label, parsed, unparsed, &ids, &on_disk);
    assert!(agent.stop(Duration::from_secs(5)).expect("stop").success());
    eprintln!("{label}: {:.1} s", started.elapsed().as_secs_f64());
}

/// SIGTERM after rotation 2, rotations 3 and 4 while down, start again
/// (same state dir), rotation 5 with the second run.
fn with_restart(mode: Mode) {
    let Some(logrotate) = ready_or_skip() else { return };
    let started = Instant::now();
    let rt = runtime();
    let (rx1, rx2) = rt.block_on(async { (Receiver::start().await, Receiver::start().await) });
    let (rx1, rx2) = (rx1.expect("OTLP receiver"), rx2.expect("OTLP receiver"));
    let rig = Rig::new(mode, logrotate);
    let step = TOTAL / (ROTATIONS + 1);
    let agent = rig.start_agent("run1", &rx1);
    let writer = rig.writer();
    for k in 1..=2 {
        rig.wait_written(k * step);
        rig.rotate();
    }
    // Stop while the writer goes on: lines in flight at the SIGTERM are
    // either applied, checkpointed and counted by run 1 (the stop drains the
    // queue before it persists) or left to run 2 — never both, never neither.
    rig.wait_written(2 * step + step / 2);
    let log1 = agent.log.clone();
    assert!(agent.stop(Duration::from_secs(5)).expect("stop").success(), "{}", fs::read_to_string(&log1).unwrap_or_default());
    // run 1's final count and spans, as flushed over OTLP at its stop
    let parsed1 = wait_for("run 1's final count over OTLP", CATCH_UP, || exported_parsed(&rx1)).expect("final count");
    let ids1 = span_ids(&rx1);
    assert_eq!(ids1.len() as u64, parsed1, "run 1: a span per counted line");
    let unparsed1 = 0;
    // the clean stop left the access log's position under [state] dir
    let facts: serde_json::Value =
        serde_json::from_slice(&fs::read(rig.root.join("state/tokens.json")).expect("tokens.json after the stop"))
            .expect("tokens.json is JSON");
    assert!(facts["log_positions"].as_array().is_some_and(|p| p.iter().any(|p| p["kind"] == "access_log")), "{facts:#}");

    // down: the writer goes on, logrotate runs twice
    for k in 3..=4 {
        rig.wait_written(k * step);
        rig.rotate();
    }
    rig.wait_written(4 * step + step / 2);
    let agent = rig.start_agent("run2", &rx2);
    let log2 = agent.log_text();
    assert!(log2.contains("resuming from checkpoint"), "run 2 did not resume from its checkpoint:\n{log2}");
    rig.wait_written(5 * step);
    rig.rotate();
    writer.join().expect("writer thread").expect("writer I/O");
    let on_disk = rig.on_disk();
    let ((parsed2, unparsed2), ids) = catch_up("run 2 caught up", &agent, &ids1, parsed1, &rx2, &on_disk, &rig);
    let label = format!("{mode:?} with a restart");
    eprintln!("{label}: parsed {parsed1} before the stop, {parsed2} after");
    verdict(&rig, &label, parsed1 + parsed2, unparsed1 + unparsed2, &ids, &on_disk);
    assert!(agent.stop(Duration::from_secs(5)).expect("stop").success());
    eprintln!("{label}: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn create_every_line_parsed_once() {
    without_restart(Mode::Create);
}

#[test]
fn create_with_a_restart_every_line_parsed_once() {
    with_restart(Mode::Create);
}

#[test]
fn copytruncate_no_duplicates_nothing_on_disk_missed() {
    without_restart(Mode::CopyTruncate);
}

#[test]
fn copytruncate_with_a_restart_no_duplicates_nothing_on_disk_missed() {
    with_restart(Mode::CopyTruncate);
}
