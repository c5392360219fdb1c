//! The eBPF source: loads `tokenwatch-ebpf` (embedded at build time), attaches
//! its syscall tracepoints for token-agent's socket path, and turns ring-buffer
//! records into [`Event`]s.
//!
//! Kernel side: `agent-ebpf/src/probes/connect.rs`. Record layouts are shared
//! through `tokenwatch_common`; this module decodes them defensively (length,
//! kind and version are checked; anything else is counted and skipped).
use std::{
    collections::BTreeMap,
    io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{ProgramError, TracePoint},
    Ebpf, EbpfLoader,
};
use tokenwatch_common::{
    counter, ConnectEvent, EventHeader, EventKind, ProbeConfig, COMM_LEN, EVENT_VERSION, SUN_PATH_MAX,
};
use tokio::{io::unix::AsyncFd, sync::mpsc};
use tracing::{debug, error, info, warn};

use crate::{
    events::{ConnectObserved, Event, Process},
    sources::{proc, Health, SourceState},
};

/// The object built by `cargo xtask build`; empty when the agent was built
/// without it (see `agent/build.rs`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tokenwatch.bpf.o"));

/// The probes this source attaches, all required: program name in the object,
/// tracepoint category, tracepoint name.
const PROBES: &[(&str, &str, &str)] =
    &[("sys_enter_connect", "syscalls", "sys_enter_connect"), ("sys_exit_connect", "syscalls", "sys_exit_connect")];

/// Names of the object's maps and globals.
const MAP_EVENTS: &str = "EVENTS";
const MAP_COUNTERS: &str = "COUNTERS";
const GLOBAL_CONFIG: &str = "CONFIG";

/// How often the kernel's per-CPU drop counter is read (and the clock offset refreshed).
const LOST_POLL: Duration = Duration::from_secs(1);

/// Where tracefs is looked for (the order aya uses).
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Why the eBPF source could not start. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("eBPF object not built into this binary (build with `cargo xtask build`)")]
    NotBuilt,
    #[error("cannot watch socket path {path:?}: {reason}")]
    SocketPath { path: PathBuf, reason: &'static str },
    #[error("tracefs is not mounted at /sys/kernel/tracing and mounting it failed: {0}")]
    Tracefs(io::Error),
    /// EPERM from the kernel; `hint` names the missing capabilities.
    #[error("{stage}: permission denied (EPERM); {hint}")]
    PermissionDenied { stage: String, hint: String },
    #[error("{stage}: rejected by the verifier: {reason} (full log at debug level)")]
    Verifier { stage: String, reason: String },
    #[error("{stage}: {reason}")]
    Kernel { stage: String, reason: String },
    #[error("eBPF object is missing {0}")]
    Missing(String),
    #[error("watching the ring buffer: {0}")]
    Io(#[source] io::Error),
}

impl EbpfError {
    /// Errors that retrying cannot fix (the binary or the config must change).
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::NotBuilt | Self::SocketPath { .. } | Self::Missing(_))
    }
}

/// The loaded and attached probes plus the maps userspace reads.
pub struct EbpfSource {
    /// Owns the programs and their links: dropping it detaches the probes.
    _ebpf: Ebpf,
    events: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    clock: Clock,
    attached: Vec<String>,
    socket: PathBuf,
}

impl EbpfSource {
    /// Loads and attaches the probes for `socket` (path of token-agent's socket).
    pub fn load(socket: &Path) -> Result<Self, EbpfError> {
        if OBJECT.is_empty() {
            return Err(EbpfError::NotBuilt);
        }
        let config = probe_config(socket, std::process::id())?;
        raise_memlock_rlimit();
        // aya caches the tracefs lookup for the life of the process, so it has
        // to be mounted before the first attach is even tried.
        ensure_tracefs()?;

        let mut ebpf = EbpfLoader::new()
            .override_global(GLOBAL_CONFIG, &config, true)
            .load(OBJECT)
            .map_err(|e| kernel_error("loading the eBPF object (maps)", &e))?;

        let mut attached = Vec::new();
        for &(prog, category, name) in PROBES {
            let tp: &mut TracePoint = ebpf
                .program_mut(prog)
                .ok_or_else(|| EbpfError::Missing(format!("program `{prog}`")))?
                .try_into()
                .map_err(|e: ProgramError| kernel_error(&format!("program `{prog}`"), &e))?;
            tp.load().map_err(|e| program_error(&format!("loading program `{prog}`"), e))?;
            tp.attach(category, name)
                .map_err(|e| kernel_error(&format!("attaching `{prog}` to {category}/{name}"), &e))?;
            attached.push(format!("{category}/{name}"));
        }

        let events = ebpf.take_map(MAP_EVENTS).ok_or_else(|| EbpfError::Missing(format!("map `{MAP_EVENTS}`")))?;
        let events = RingBuf::try_from(events).map_err(|e| kernel_error(&format!("map `{MAP_EVENTS}`"), &e))?;
        let counters =
            ebpf.take_map(MAP_COUNTERS).ok_or_else(|| EbpfError::Missing(format!("map `{MAP_COUNTERS}`")))?;
        let counters =
            PerCpuArray::try_from(counters).map_err(|e| kernel_error(&format!("map `{MAP_COUNTERS}`"), &e))?;

        Ok(Self { _ebpf: ebpf, events, counters, clock: Clock::now(), attached, socket: socket.to_path_buf() })
    }

    /// Reads the ring buffer until `tx` closes, sending each record as an
    /// [`Event`]; keeps `health` current (events, lost, state).
    pub async fn run(self, tx: mpsc::Sender<Event>, health: Health) {
        if let Err(e) = self.run_inner(&tx, &health).await {
            error!(error = %e, "eBPF source stopped");
            health.set(SourceState::Failed, e.to_string());
        }
    }

    /// `Ok` when `tx` closed; `Err` when the ring buffer cannot be watched.
    async fn run_inner(self, tx: &mpsc::Sender<Event>, health: &Health) -> Result<(), EbpfError> {
        let Self { _ebpf, events, counters, mut clock, attached, socket } = self;
        // SAFETY: the RingBuf owns its map fd (an OwnedFd in MapData) for as
        // long as it lives, and as_raw_fd always returns that fd.
        let mut ring = unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }
            .map_err(|e| EbpfError::Io(e.into_parts().1))?;
        let detail = format!("attached {} (socket {})", attached.join(", "), socket.display());
        info!(socket = %socket.display(), probes = %attached.join(", "), "eBPF source running");
        health.set(SourceState::Running, detail);

        let mut skipped = Skipped::default();
        let mut tick = tokio::time::interval(LOST_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                _ = tx.closed() => return Ok(()),
                _ = tick.tick() => {
                    health.set_lost(kernel_lost(&counters) + skipped.total);
                    // follow wall-clock steps (NTP, manual) in event times
                    clock = Clock::now();
                    continue;
                }
                guard = ring.readable_mut() => {
                    let mut guard = guard.map_err(EbpfError::Io)?;
                    let rb = guard.get_inner_mut();
                    // Drain fully before awaiting anything: the item borrows the
                    // ring, and attribution must happen while the caller lives.
                    while let Some(item) = rb.next() {
                        match decode(&item, &clock, proc::describe) {
                            Ok(ev) => batch.push(ev),
                            Err(e) => skipped.record(e),
                        }
                    }
                    guard.clear_ready();
                }
            }
            if skipped.changed {
                skipped.changed = false;
                health.set_lost(kernel_lost(&counters) + skipped.total);
            }
            let n = batch.len() as u64;
            for ev in batch.drain(..) {
                if tx.send(ev).await.is_err() {
                    return Ok(());
                }
            }
            if n > 0 {
                health.add_events(n);
            }
        }
    }
}

/// The retry loop for the (non-required) eBPF source: tries [`EbpfSource::load`]
/// every `retry`; while it fails, `health` is Failed with the reason, logged
/// once per distinct reason. Returns when `tx` closes, or at once on an error
/// retrying cannot fix (e.g. the object is not built in).
pub async fn run_with_retry(socket: PathBuf, tx: mpsc::Sender<Event>, health: Health, retry: Duration) {
    let mut last_error: Option<String> = None;
    loop {
        let path = socket.clone();
        let loaded = match tokio::task::spawn_blocking(move || EbpfSource::load(&path)).await {
            Ok(r) => r,
            Err(join) => {
                // A panic inside aya: report it like any other load failure.
                Err(EbpfError::Kernel { stage: "loading eBPF".into(), reason: join.to_string() })
            }
        };
        match loaded {
            Ok(source) => {
                if last_error.take().is_some() {
                    info!("eBPF source loaded after earlier failures");
                }
                match source.run_inner(&tx, &health).await {
                    Ok(()) => return,
                    Err(e) => {
                        let msg = e.to_string();
                        error!(error = %msg, "eBPF source stopped; reloading in {}", humantime::format_duration(retry));
                        health.set(SourceState::Failed, msg.clone());
                        last_error = Some(msg);
                    }
                }
            }
            Err(e) => {
                let msg = e.to_string();
                health.set(SourceState::Failed, msg.clone());
                if e.is_permanent() {
                    error!(error = %msg, "eBPF source disabled");
                    return;
                }
                if last_error.as_deref() != Some(msg.as_str()) {
                    error!(error = %msg, "eBPF source failed to load; retrying every {}", humantime::format_duration(retry));
                } else {
                    debug!(error = %msg, "eBPF source still failing to load");
                }
                last_error = Some(msg);
            }
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(retry) => {}
        }
    }
}

/// The probes' load-time config for `socket`, excluding the agent (`self_tgid`).
fn probe_config(socket: &Path, self_tgid: u32) -> Result<ProbeConfig, EbpfError> {
    let bytes = socket.as_os_str().as_bytes();
    let bad = |reason| Err(EbpfError::SocketPath { path: socket.to_path_buf(), reason });
    if bytes.is_empty() {
        return bad("empty path");
    }
    if bytes.len() > SUN_PATH_MAX {
        return bad("longer than sun_path (108 bytes)");
    }
    if bytes.contains(&0) {
        return bad("contains a NUL byte");
    }
    let mut config = ProbeConfig::empty();
    config.self_tgid = self_tgid;
    config.socket_path_len = bytes.len() as u32;
    config.socket_path[..bytes.len()].copy_from_slice(bytes);
    Ok(config)
}

/// Converts `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) to wall-clock time, with the
/// offset between the two clocks taken at load and refreshed every [`LOST_POLL`].
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// CLOCK_REALTIME − CLOCK_MONOTONIC, in ns.
    realtime_minus_monotonic_ns: i128,
}

impl Clock {
    fn now() -> Self {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Self { realtime_minus_monotonic_ns: real - mono }
    }

    fn wall(&self, ktime_ns: u64) -> SystemTime {
        let ns = (ktime_ns as i128 + self.realtime_minus_monotonic_ns).clamp(0, u64::MAX as i128);
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; these clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// Why a ring-buffer record was not turned into an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum RecordError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("header length {header} does not fit the record ({actual} bytes) or its kind")]
    BadLen { header: u32, actual: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    #[error("record kind {kind} has version {version}, expected {EVENT_VERSION}")]
    Version { kind: u16, version: u16 },
}

/// Undecodable records: counted (into `lost`) and logged once per reason.
#[derive(Default)]
struct Skipped {
    total: u64,
    changed: bool,
    seen: BTreeMap<String, u64>,
}

impl Skipped {
    fn record(&mut self, e: RecordError) {
        self.total += 1;
        self.changed = true;
        let key = match e {
            RecordError::Short(_) | RecordError::BadLen { .. } => "malformed".to_string(),
            other => other.to_string(),
        };
        let n = self.seen.entry(key).or_default();
        if *n == 0 {
            warn!(error = %e, "skipping ring-buffer record (counted as lost; agent and eBPF object out of step?)");
        }
        *n += 1;
    }
}

/// Decodes one ring-buffer record into an event; `describe` attributes the
/// caller (normally [`proc::describe`]). Pure apart from `describe`.
fn decode(bytes: &[u8], clock: &Clock, describe: impl Fn(u32, &str) -> Process) -> Result<Event, RecordError> {
    let header: EventHeader = read_pod(bytes).ok_or(RecordError::Short(bytes.len()))?;
    let len = header.len as usize;
    if len < size_of::<EventHeader>() || len > bytes.len() {
        return Err(RecordError::BadLen { header: header.len, actual: bytes.len() });
    }
    let bytes = &bytes[..len];
    match EventKind::from_u16(header.kind) {
        Some(EventKind::Connect) => {
            if header.version != EVENT_VERSION {
                return Err(RecordError::Version { kind: header.kind, version: header.version });
            }
            let ev: ConnectEvent =
                read_pod(bytes).ok_or(RecordError::BadLen { header: header.len, actual: bytes.len() })?;
            Ok(Event::Connect(connect_observed(&ev, clock, describe)))
        }
        None => Err(RecordError::UnknownKind(header.kind)),
    }
}

fn connect_observed(ev: &ConnectEvent, clock: &Clock, describe: impl Fn(u32, &str) -> Process) -> ConnectObserved {
    let comm = comm_str(&ev.comm);
    ConnectObserved {
        at: clock.wall(ev.header.ts_ns),
        process: describe(ev.header.tgid, &comm),
        tid: ev.header.tid,
        uid: ev.uid,
        gid: ev.gid,
        fd: ev.fd,
        errno: if ev.ret < 0 { Some(-ev.ret) } else { None },
        latency: Duration::from_nanos(ev.latency_ns),
    }
}

/// A task's `comm`: up to the first NUL, lossily decoded.
fn comm_str(comm: &[u8; COMM_LEN]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// Reads a `T` from the start of `bytes` if it is long enough. Only for the
/// `repr(C)` plain-data record types of `tokenwatch_common`.
fn read_pod<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; callers only use integer/array-only repr(C)
    // types, for which every bit pattern is valid; read_unaligned has no
    // alignment requirement.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Sum over CPUs of the kernel's dropped-record counter.
fn kernel_lost(counters: &PerCpuArray<MapData, u64>) -> u64 {
    match counters.get(&counter::LOST, 0) {
        Ok(values) => values.iter().sum(),
        Err(e) => {
            debug!(error = %e, "reading eBPF LOST counter");
            0
        }
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones use
/// memcg, so failing here (EPERM without CAP_SYS_RESOURCE) is usually harmless.
fn raise_memlock_rlimit() {
    let rlim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        debug!(error = %io::Error::last_os_error(), "setrlimit(RLIMIT_MEMLOCK) failed (harmless on kernels >= 5.11)");
    }
}

/// Makes sure tracefs is mounted, mounting it at /sys/kernel/tracing if not
/// (systemd normally does; minimal hosts and containers may not).
fn ensure_tracefs() -> Result<(), EbpfError> {
    let mounted = |p: &str| std::fs::read_dir(p).map(|mut d| d.next().is_some()).unwrap_or(false);
    if TRACEFS.iter().any(|p| mounted(p)) {
        return Ok(());
    }
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (src, target, fstype) = (c("tracefs"), c(TRACEFS[0]), c("tracefs"));
    // SAFETY: valid NUL-terminated strings, no data argument.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(EbpfError::Tracefs(io::Error::last_os_error()));
    }
    info!(path = TRACEFS[0], "mounted tracefs (it was not mounted)");
    Ok(())
}

/// Program load errors carry the verifier log: keep it out of the one-line
/// message (logged at debug), but name the verifier's complaint.
fn program_error(stage: &str, e: ProgramError) -> EbpfError {
    match e {
        ProgramError::LoadError { io_error, verifier_log } if io_error.raw_os_error() != Some(libc::EPERM) => {
            let log = verifier_log.to_string();
            debug!(stage, verifier_log = %log, "eBPF verifier log");
            EbpfError::Verifier { stage: stage.to_string(), reason: verifier_complaint(&log, &io_error) }
        }
        other => kernel_error(stage, &other),
    }
}

/// The verifier's own complaint: the last line that is not a statistic.
fn verifier_complaint(log: &str, io_error: &io::Error) -> String {
    log.lines()
        .map(str::trim)
        .rfind(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
                && !l.starts_with("mark_precise")
        })
        .map(str::to_string)
        .unwrap_or_else(|| io_error.to_string())
}

/// One line for an aya error: the stage, the error chain joined by ": ", and
/// for EPERM which capabilities are missing.
fn kernel_error(stage: &str, e: &(dyn std::error::Error + 'static)) -> EbpfError {
    let mut parts: Vec<String> = Vec::new();
    let mut errno = None;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            errno = errno.or(io.raw_os_error());
        }
        let line = err.to_string();
        let line = line.lines().next().unwrap_or_default().to_string();
        if !parts.iter().any(|p| p.contains(&line)) {
            parts.push(line);
        }
        cur = err.source();
    }
    if errno == Some(libc::EPERM) {
        return EbpfError::PermissionDenied { stage: stage.to_string(), hint: capability_hint(effective_caps()) };
    }
    EbpfError::Kernel { stage: stage.to_string(), reason: parts.join(": ") }
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set from /proc/self/status, if readable.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Which capabilities loading needs and this process lacks.
fn capability_hint(cap_eff: Option<u64>) -> String {
    let Some(caps) = cap_eff else {
        return "needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)".to_string();
    };
    let has = |c: u32| caps & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return "capabilities are present, so the kernel refused by policy (lockdown, a BPF LSM, seccomp?)".to_string();
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(c, _)| !has(c))
        .map(|(_, n)| n)
        .collect();
    format!("missing {} (or CAP_SYS_ADMIN)", missing.join(" and "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOCK: Clock = Clock { realtime_minus_monotonic_ns: 1_700_000_000_000_000_000 };

    fn connect_event(ret: i32) -> ConnectEvent {
        let mut comm = [0u8; COMM_LEN];
        comm[..12].copy_from_slice(b"compute-node");
        ConnectEvent {
            header: EventHeader {
                kind: EventKind::Connect as u16,
                version: EVENT_VERSION,
                len: size_of::<ConnectEvent>() as u32,
                tgid: 4242,
                tid: 4243,
                ts_ns: 5_000_000_123,
            },
            uid: 1000,
            gid: 1001,
            fd: 7,
            ret,
            latency_ns: 1_500,
            comm,
        }
    }

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: test-only view of plain data as bytes.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn fake_describe(pid: u32, comm: &str) -> Process {
        Process { pid, comm: comm.to_string(), exe: Some("/usr/bin/compute-node".into()), unit: None }
    }

    #[test]
    fn decodes_a_connect_record() {
        let ev = decode(&bytes_of(&connect_event(-111)), &CLOCK, fake_describe).unwrap();
        let Event::Connect(c) = ev else { panic!("not a connect: {ev:?}") };
        assert_eq!(
            c,
            ConnectObserved {
                at: UNIX_EPOCH + Duration::from_nanos(1_700_000_005_000_000_123),
                process: fake_describe(4242, "compute-node"),
                tid: 4243,
                uid: 1000,
                gid: 1001,
                fd: 7,
                errno: Some(libc::ECONNREFUSED),
                latency: Duration::from_nanos(1_500),
            }
        );
    }

    #[test]
    fn success_has_no_errno_and_full_comm_is_kept() {
        let mut raw = connect_event(0);
        raw.comm = *b"0123456789abcdef"; // no NUL at all
        let Ok(Event::Connect(c)) = decode(&bytes_of(&raw), &CLOCK, fake_describe) else { panic!("not a connect") };
        assert_eq!(c.errno, None);
        assert_eq!(c.process.comm, "0123456789abcdef");
    }

    #[test]
    fn rejects_bad_records_without_panicking() {
        let good = bytes_of(&connect_event(0));
        assert_eq!(decode(&[], &CLOCK, fake_describe), Err(RecordError::Short(0)));
        assert_eq!(decode(&good[..10], &CLOCK, fake_describe), Err(RecordError::Short(10)));
        // truncated record whose header claims the full length
        assert_eq!(decode(&good[..40], &CLOCK, fake_describe), Err(RecordError::BadLen { header: 64, actual: 40 }));
        // header length too small for a connect record
        let mut raw = connect_event(0);
        raw.header.len = 24;
        assert_eq!(decode(&bytes_of(&raw), &CLOCK, fake_describe), Err(RecordError::BadLen { header: 24, actual: 24 }));
        raw.header.len = 3;
        assert_eq!(decode(&bytes_of(&raw), &CLOCK, fake_describe), Err(RecordError::BadLen { header: 3, actual: 64 }));
        let mut raw = connect_event(0);
        raw.header.kind = 999;
        assert_eq!(decode(&bytes_of(&raw), &CLOCK, fake_describe), Err(RecordError::UnknownKind(999)));
        let mut raw = connect_event(0);
        raw.header.version = EVENT_VERSION + 1;
        assert_eq!(
            decode(&bytes_of(&raw), &CLOCK, fake_describe),
            Err(RecordError::Version { kind: 1, version: EVENT_VERSION + 1 })
        );
        // trailing bytes beyond the header's length are ignored
        let mut long = good.clone();
        long.extend_from_slice(&[0xff; 8]);
        assert!(decode(&long, &CLOCK, fake_describe).is_ok());
    }

    #[test]
    fn probe_config_holds_the_path() {
        let c = probe_config(Path::new("/run/token-agent.sock"), 77).unwrap();
        assert_eq!(c.self_tgid, 77);
        assert_eq!(c.socket_path_len, 21);
        assert_eq!(&c.socket_path[..21], b"/run/token-agent.sock");
        assert!(c.socket_path[21..].iter().all(|&b| b == 0));
        let long = "/".repeat(SUN_PATH_MAX + 1);
        assert!(matches!(probe_config(Path::new(&long), 1), Err(EbpfError::SocketPath { .. })));
        assert!(probe_config(Path::new(&"/".repeat(SUN_PATH_MAX)), 1).is_ok());
        assert!(matches!(probe_config(Path::new(""), 1), Err(EbpfError::SocketPath { .. })));
    }

    #[test]
    fn clock_converts_monotonic_to_wall() {
        let clock = Clock::now();
        let mono = clock_ns(libc::CLOCK_MONOTONIC) as u64;
        let diff = clock.wall(mono).duration_since(SystemTime::now()).unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_secs(1), "{diff:?}");
    }

    #[test]
    fn capability_hints_name_what_is_missing() {
        assert_eq!(capability_hint(Some(0)), "missing CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)");
        assert_eq!(capability_hint(Some(1 << CAP_BPF)), "missing CAP_PERFMON (or CAP_SYS_ADMIN)");
        assert!(capability_hint(Some(1 << CAP_SYS_ADMIN)).contains("policy"));
        assert!(capability_hint(Some((1 << CAP_BPF) | (1 << CAP_PERFMON))).contains("policy"));
        assert!(capability_hint(None).contains("CAP_BPF"));
    }

    #[test]
    fn verifier_complaint_skips_statistics() {
        let log = "0: (b7) r0 = 0\nR1 invalid mem access 'scalar'\nprocessed 12 insns (limit 1000000)\n\n";
        assert_eq!(verifier_complaint(log, &io::Error::from_raw_os_error(13)), "R1 invalid mem access 'scalar'");
        assert!(verifier_complaint("", &io::Error::from_raw_os_error(13)).contains("Permission denied"));
    }

    #[test]
    fn error_messages_are_one_line() {
        let errs = [
            EbpfError::NotBuilt,
            kernel_error("x", &io::Error::from_raw_os_error(libc::EPERM)),
            kernel_error("y", &io::Error::other("a\nb")),
        ];
        for e in errs {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        assert!(EbpfError::NotBuilt.to_string().contains("cargo xtask build"));
        assert!(kernel_error("x", &io::Error::from_raw_os_error(libc::EPERM)).to_string().contains("EPERM"));
    }

    /// `run` is spawned on a multi-threaded runtime.
    #[allow(dead_code)]
    fn assert_send() {
        fn is_send<T: Send>(_: T) {}
        fn check(s: EbpfSource, tx: mpsc::Sender<Event>, h: Health) {
            is_send(s.run(tx.clone(), h.clone()));
            is_send(run_with_retry(PathBuf::new(), tx, h, Duration::ZERO));
        }
        let _ = check;
    }
}
