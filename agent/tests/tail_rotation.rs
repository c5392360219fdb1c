//! The log tailer against the real `logrotate` (`-f`, its own config and
//! `-s STATEFILE` in a tempdir): a writer thread appends numbered lines while
//! the test rotates 6 times; the reader must get every line once, in order.
//!
//! Guarantees checked:
//! - `create`, `nocreate` + the writer recreating, `rotate 0` (delete) + the
//!   writer recreating: exactly lines 1..=N, in order, also across a restart
//!   (resume from the last position while two rotations happen).
//! - `copytruncate` (writer with `O_APPEND`): no duplicates, in order, and
//!   every line present in any file on disk (the log and all its copies) is
//!   received. Lines the writer appended between logrotate's copy and its
//!   truncate are in no file: that loss is logrotate's, it is reported.
use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tokenwatch::events::LogKind;
use tokenwatch::sources::logs::{self, Counters, DriverOptions, Start, TailOptions, TailStatus, Tailer};
use tokenwatch::sources::{Health, SourceState};

const TOTAL: u64 = 20_000;
const ROTATIONS: u64 = 6;
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    CopyTruncate,
    /// `nocreate`: logrotate renames, the writer recreates the file.
    RenameRecreate,
    /// `rotate 0` + `nocreate`: logrotate deletes, the writer recreates.
    DeleteRecreate,
    /// `create` with `dateext` names (`access.log-20251125-1764079200`).
    DateExt,
}

impl Mode {
    fn directives(self) -> &'static str {
        match self {
            Mode::Create => "rotate 10\n    create",
            Mode::CopyTruncate => "rotate 10\n    copytruncate",
            Mode::RenameRecreate => "rotate 10\n    nocreate",
            Mode::DeleteRecreate => "rotate 0\n    nocreate",
            Mode::DateExt => "rotate 10\n    create\n    dateext\n    dateformat -%Y%m%d-%s",
        }
    }

    /// Dated names have a resolution of one second: a second rotation in the
    /// same second is refused by logrotate ("destination already exists").
    fn min_rotation_gap(self) -> Duration {
        if self == Mode::DateExt {
            Duration::from_millis(1100)
        } else {
            Duration::ZERO
        }
    }

    /// The writer's pause after each 50 lines: slow enough for the
    /// rotations to be spread over the writing.
    fn pace(self) -> Duration {
        if self == Mode::DateExt {
            Duration::from_millis(25)
        } else {
            Duration::from_millis(2)
        }
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    path: PathBuf,
    conf: PathBuf,
    state: PathBuf,
    written: Arc<AtomicU64>,
    rotations: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

fn logrotate_bin() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join("logrotate"))
        .find(|p| p.is_file());
    found.expect("logrotate not found: run `cargo xtask setup` (or `apt-get install -y logrotate`)")
}

fn line(seq: u64) -> String {
    format!("seq={seq:08} {}\n", "x".repeat(88))
}

fn seq_of(text: &str) -> u64 {
    text.strip_prefix("seq=")
        .and_then(|r| r.get(..8))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad line {text:?}"))
}

impl Rig {
    fn new(mode: Mode) -> Rig {
        // RUST_LOG=info shows the tailer's view of each rotation.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().to_path_buf();
        let path = dir.join("access.log");
        let conf = dir.join("logrotate.conf");
        let conf_text =
            format!("{} {{\n    {}\n    missingok\n    nocompress\n}}\n", path.display(), mode.directives());
        fs::write(&conf, conf_text).expect("config");
        fs::write(&path, b"").expect("log");
        Rig {
            _dir: d,
            dir: dir.clone(),
            path,
            conf,
            state: dir.join("logrotate.state"),
            written: Arc::default(),
            rotations: Arc::default(),
            done: Arc::default(),
        }
    }

    /// Appends TOTAL numbered lines at a steady rate, reopening the path the
    /// way the mode's daemon would.
    fn writer(&self, mode: Mode) -> thread::JoinHandle<io::Result<()>> {
        let (path, written) = (self.path.clone(), self.written.clone());
        thread::spawn(move || {
            let open = |create: bool| OpenOptions::new().append(true).create(create).open(&path);
            let mut f = open(true)?;
            let mut ino = f.metadata()?.ino();
            for seq in 1..=TOTAL {
                if mode != Mode::CopyTruncate {
                    match fs::metadata(&path) {
                        Ok(m) if m.ino() != ino => {
                            if let Ok(n) = open(false) {
                                (f, ino) = (n, m.ino());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound && mode != Mode::Create => {
                            f = open(true)?;
                            ino = f.metadata()?.ino();
                        }
                        _ => {}
                    }
                }
                f.write_all(line(seq).as_bytes())?;
                written.store(seq, Ordering::SeqCst);
                if seq % 50 == 0 {
                    thread::sleep(mode.pace());
                }
            }
            Ok(())
        })
    }

    /// Runs `logrotate -f` ROTATIONS times, spread over the writer's progress.
    fn rotator(&self, mode: Mode) -> thread::JoinHandle<()> {
        let (bin, conf, state) = (logrotate_bin(), self.conf.clone(), self.state.clone());
        let (written, rotations, done) = (self.written.clone(), self.rotations.clone(), self.done.clone());
        thread::spawn(move || {
            let start = Instant::now();
            let mut last: Option<Instant> = None;
            for k in 1..=ROTATIONS {
                while (written.load(Ordering::SeqCst) < k * TOTAL / (ROTATIONS + 1)
                    || last.is_some_and(|l| l.elapsed() < mode.min_rotation_gap()))
                    && start.elapsed() < TIMEOUT
                {
                    thread::sleep(Duration::from_millis(1));
                }
                last = Some(Instant::now());
                let out =
                    Command::new(&bin).arg("-f").arg("-s").arg(&state).arg(&conf).output().expect("run logrotate");
                assert!(out.status.success(), "logrotate failed: {}", String::from_utf8_lossy(&out.stderr));
                rotations.store(k, Ordering::SeqCst);
            }
            done.store(true, Ordering::SeqCst);
        })
    }

    /// Every sequence number present in the log or any of its generations.
    fn on_disk(&self) -> BTreeSet<u64> {
        let mut seqs = BTreeSet::new();
        for e in fs::read_dir(&self.dir).expect("readdir").flatten() {
            if e.file_name().to_string_lossy().starts_with("access.log") {
                let text = fs::read(e.path()).expect("read generation");
                seqs.extend(
                    String::from_utf8_lossy(&text)
                        .lines()
                        .map(|l| l.trim_start_matches('\0'))
                        .filter(|l| !l.is_empty())
                        .map(seq_of),
                );
            }
        }
        seqs
    }
}

fn options() -> TailOptions {
    // A writer may still append to the renamed file until it reopens the path.
    TailOptions { rotate_grace: Duration::from_millis(500), ..TailOptions::default() }
}

/// Polls the core in a loop until `finished`, optionally dropping it half-way
/// and resuming from the last position while two rotations happen.
fn read_core(rig: &Rig, restart: bool, finished: impl Fn(&Tailer, &[u64]) -> bool) -> (Vec<u64>, Counters) {
    let new = |start| Tailer::with_options(&rig.path, LogKind::AccessLog, start, options());
    let mut t = new(Start::Beginning);
    let (mut got, mut last, mut sum, mut restarted) = (Vec::new(), None, Counters::default(), !restart);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let lines = t.poll();
        let idle = lines.is_empty();
        got.extend(lines.iter().map(|l| seq_of(&l.text)));
        last = t.position().or(last);
        if !restarted && got.len() as u64 >= TOTAL / 3 {
            add(&mut sum, t.counters());
            let r0 = rig.rotations.load(Ordering::SeqCst);
            let until = (r0 + 2).min(ROTATIONS);
            while rig.rotations.load(Ordering::SeqCst) < until {
                assert!(Instant::now() < deadline, "rotations stalled");
                thread::sleep(Duration::from_millis(1));
            }
            t = new(Start::Resume(last.clone().expect("a position")));
            restarted = true;
            continue;
        }
        if finished(&t, &got) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out with {} of {TOTAL} lines, status {:?}, position {:?}, files {:?}",
            got.len(),
            t.status(),
            t.position(),
            listing(&rig.dir)
        );
        if idle {
            thread::sleep(Duration::from_millis(1));
        }
    }
    add(&mut sum, t.counters());
    (got, sum)
}

fn add(sum: &mut Counters, c: Counters) {
    sum.lines += c.lines;
    sum.bytes += c.bytes;
    sum.rotations += c.rotations;
    sum.truncations += c.truncations;
    sum.errors += c.errors;
    sum.cut_lines += c.cut_lines;
    sum.checkpoints_discarded += c.checkpoints_discarded;
}

fn assert_strictly_increasing(got: &[u64]) {
    if let Some(w) = got.windows(2).find(|w| w[1] <= w[0]) {
        panic!("out of order or duplicated: {} then {}", w[0], w[1]);
    }
}

fn exact(mode: Mode, restart: bool) {
    let rig = Rig::new(mode);
    let (w, r) = (rig.writer(mode), rig.rotator(mode));
    let (got, c) = read_core(&rig, restart, |_, got| got.len() as u64 >= TOTAL);
    w.join().expect("writer thread").expect("writer I/O");
    r.join().expect("rotator thread");
    assert_strictly_increasing(&got);
    assert_eq!(got.len() as u64, TOTAL);
    assert_eq!(got.first().copied(), Some(1));
    assert_eq!((c.errors, c.cut_lines, c.checkpoints_discarded, c.truncations), (0, 0, 0, 0), "{c:?}");
    if !restart {
        assert_eq!(c.rotations, ROTATIONS, "{c:?}");
    }
}

fn copytruncate(restart: bool) {
    let rig = Rig::new(Mode::CopyTruncate);
    let (w, r) = (rig.writer(Mode::CopyTruncate), rig.rotator(Mode::CopyTruncate));
    let (got, c) = read_core(&rig, restart, |t, _| {
        let size = fs::metadata(&rig.path).map(|m| m.len()).unwrap_or(0);
        rig.done.load(Ordering::SeqCst)
            && rig.written.load(Ordering::SeqCst) == TOTAL
            && matches!(t.status(), TailStatus::Following { .. })
            && t.position().is_some_and(|p| p.offset == size)
    });
    w.join().expect("writer thread").expect("writer I/O");
    r.join().expect("rotator thread");
    assert_strictly_increasing(&got);
    let on_disk = rig.on_disk();
    let got_set: BTreeSet<u64> = got.iter().copied().collect();
    let missed: Vec<u64> = on_disk.difference(&got_set).copied().collect();
    assert!(missed.is_empty(), "{} lines on disk never received: {}", missed.len(), ranges(&missed));
    // Lines in no file: written after logrotate's copy, truncated away. We
    // still received those we had read before the truncate.
    let in_no_file = TOTAL - on_disk.len() as u64;
    let lost = TOTAL - got.len() as u64;
    eprintln!(
        "copytruncate (restart: {restart}): received {} of {TOTAL}; {in_no_file} lines ended up in no file \
         (written between logrotate's copy and its truncate), {lost} of them lost; counters {c:?}",
        got.len()
    );
    if !restart {
        assert_eq!(c.truncations, ROTATIONS, "{c:?}");
    }
    assert_eq!((c.errors, c.checkpoints_discarded), (0, 0), "{c:?}");
}

#[test]
fn create_every_line_once() {
    exact(Mode::Create, false);
}

#[test]
fn create_with_a_restart() {
    exact(Mode::Create, true);
}

#[test]
fn nocreate_writer_recreates_every_line_once() {
    exact(Mode::RenameRecreate, false);
}

#[test]
fn nocreate_writer_recreates_with_a_restart() {
    exact(Mode::RenameRecreate, true);
}

#[test]
fn delete_and_writer_recreates_every_line_once() {
    exact(Mode::DeleteRecreate, false);
}

#[test]
fn dateext_every_line_once() {
    exact(Mode::DateExt, false);
}

#[test]
fn dateext_with_a_restart() {
    exact(Mode::DateExt, true);
}

#[test]
fn copytruncate_no_duplicates_and_nothing_on_disk_missed() {
    copytruncate(false);
}

#[test]
fn copytruncate_with_a_restart() {
    copytruncate(true);
}

/// The async driver (inotify wakeups) under `create` rotation.
#[test]
fn driver_create_every_line_once() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let rig = Rig::new(Mode::Create);
        let health = Health::new(SourceState::Starting, "");
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let opts = DriverOptions { tail: options(), ..DriverOptions::default() };
        let driver =
            tokio::spawn(logs::run(rig.path.clone(), LogKind::AccessLog, Start::Beginning, opts, tx, health.clone()));
        let (w, r) = (rig.writer(Mode::Create), rig.rotator(Mode::Create));
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while (got.len() as u64) < TOTAL {
            let batch = tokio::time::timeout_at(deadline, rx.recv()).await.expect("timed out").expect("driver ended");
            got.extend(batch.lines.iter().map(|l| seq_of(&l.text)));
        }
        assert_strictly_increasing(&got);
        assert_eq!(got.len() as u64, TOTAL);
        w.join().expect("writer thread").expect("writer I/O");
        r.join().expect("rotator thread");
        let status = health.get();
        assert_eq!(status.state, SourceState::Running);
        assert!(status.detail.starts_with("following "), "{}", status.detail);
        assert_eq!(status.events, TOTAL);
        drop(rx);
        let c = driver.await.expect("driver task");
        assert_eq!(c.rotations, ROTATIONS, "{c:?}");
    });
}

/// Counts WARN events (the "logged once" check).
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *e.metadata().level() == tracing::Level::WARN {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(e.metadata().name().to_string());
        }
    }
}

#[test]
fn garbage_is_counted_logged_once_and_the_tail_keeps_running() {
    use tracing_subscriber::layer::SubscriberExt;
    let warnings = Warnings::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    tracing::subscriber::with_default(subscriber, || {
        let rig = Rig::new(Mode::Create);
        let p = &rig.path;
        let mut t = Tailer::with_options(
            p,
            LogKind::AccessLog,
            Start::Beginning,
            TailOptions { rotate_grace: Duration::ZERO, ..options() },
        );
        assert!(t.poll().is_empty(), "an empty file");
        let mut garbage: Vec<u8> = (0..=255u8).cycle().take(4096).filter(|&b| b != b'\n').collect();
        garbage.extend_from_slice(b"\nbad \xc3\x28 utf8\n");
        garbage.extend(std::iter::repeat_n(b'y', 1 << 20));
        garbage.extend_from_slice(b"\nok\n");
        append(p, &garbage);
        let lines = poll_until(&mut t, 4);
        assert_eq!(lines[1], "bad \u{FFFD}( utf8");
        assert_eq!(lines[2].len(), 64 * 1024);
        assert_eq!(lines[3], "ok");
        let c = t.counters();
        assert_eq!((c.cut_lines, c.invalid_utf8_lines, c.errors), (1, 2, 0), "{c:?}");

        fs::remove_file(p).expect("rm");
        fs::create_dir(p).expect("a directory where the log was");
        for _ in 0..50 {
            assert!(t.poll().is_empty());
        }
        assert_eq!(*t.status(), TailStatus::NotAFile);
        assert_eq!(t.counters().errors, 1, "counted once");
        assert_eq!(warnings.0.lock().map(|w| w.len()).unwrap_or(0), 1, "logged once");

        fs::remove_dir(p).expect("rmdir");
        append(p, &line(1).into_bytes());
        assert_eq!(poll_until(&mut t, 1), [line(1).trim_end()]);
        assert!(matches!(t.status(), TailStatus::Following { .. }));
    });
}

fn append(p: &Path, data: &[u8]) {
    OpenOptions::new().append(true).create(true).open(p).and_then(|mut f| f.write_all(data)).expect("append");
}

fn poll_until(t: &mut Tailer, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while got.len() < n {
        got.extend(t.poll().into_iter().map(|l| l.text));
        assert!(Instant::now() < deadline, "timed out");
    }
    got
}

/// `1-5, 9, 12-13`
fn ranges(seqs: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
            j += 1;
        }
        out.push(if i == j { seqs[i].to_string() } else { format!("{}-{}", seqs[i], seqs[j]) });
        i = j + 1;
    }
    out.join(", ")
}

/// (name, inode, size) of each file in `dir`, for failure messages.
fn listing(dir: &Path) -> Vec<(String, u64, u64)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .filter_map(|e| {
                    Some((
                        e.file_name().to_string_lossy().into_owned(),
                        e.metadata().ok()?.ino(),
                        e.metadata().ok()?.len(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
