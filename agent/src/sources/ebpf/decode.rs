//! Ring-buffer record → typed [`Record`], defensively: length, kind and
//! version are checked; anything else is a [`RecordError`], counted and
//! skipped by [`Skipped`]. Also the kernel-clock conversion.
use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokenwatch_common::{
    CloseEvent, ConnectEvent, DataHeader, EventHeader, EventKind, ProcessEvent, COMM_LEN, DATA_CHUNK, DATA_HEADER_LEN,
    EVENT_VERSION,
};
use tracing::warn;

use crate::events::{ConnectObserved, Process};

/// One record from the kernel. `Data` borrows its payload from the ring;
/// its `Debug` shows the payload's length only (it is what a client and
/// token-agent sent each other: the token too).
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Record<'a> {
    Connect(ConnectEvent),
    Data {
        head: DataHeader,
        payload: &'a [u8],
    },
    Close(CloseEvent),
    /// The process exited (`exec: false`) or exec'd.
    ProcessGone {
        event: ProcessEvent,
        exec: bool,
    },
}

impl std::fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Record::Connect(ev) => f.debug_tuple("Connect").field(ev).finish(),
            Record::Data { head, payload } => {
                f.debug_struct("Data").field("head", head).field("payload_len", &payload.len()).finish()
            }
            Record::Close(ev) => f.debug_tuple("Close").field(ev).finish(),
            Record::ProcessGone { event, exec } => {
                f.debug_struct("ProcessGone").field("event", event).field("exec", exec).finish()
            }
        }
    }
}

/// Why a ring-buffer record was not turned into a [`Record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum RecordError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("header length {header} does not fit the record ({actual} bytes) or its kind")]
    BadLen { header: u32, actual: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    #[error("record kind {kind} has version {version}, expected {EVENT_VERSION}")]
    Version { kind: u16, version: u16 },
}

/// Parses one ring-buffer record. Pure.
pub(super) fn parse(bytes: &[u8]) -> Result<Record<'_>, RecordError> {
    let header: EventHeader = read_pod(bytes).ok_or(RecordError::Short(bytes.len()))?;
    let len = header.len as usize;
    let bad_len = RecordError::BadLen { header: header.len, actual: bytes.len() };
    if len < size_of::<EventHeader>() || len > bytes.len() {
        return Err(bad_len);
    }
    let bytes = &bytes[..len];
    let kind = EventKind::from_u16(header.kind).ok_or(RecordError::UnknownKind(header.kind))?;
    if header.version != EVENT_VERSION {
        return Err(RecordError::Version { kind: header.kind, version: header.version });
    }
    Ok(match kind {
        EventKind::Connect => Record::Connect(read_pod(bytes).ok_or(bad_len)?),
        EventKind::Data => {
            let head: DataHeader = read_pod(bytes).ok_or(bad_len)?;
            let data_len = head.data_len as usize;
            if data_len > DATA_CHUNK || DATA_HEADER_LEN + data_len != len {
                return Err(bad_len);
            }
            Record::Data { head, payload: &bytes[DATA_HEADER_LEN..] }
        }
        EventKind::Close => Record::Close(read_pod(bytes).ok_or(bad_len)?),
        EventKind::ProcessExit | EventKind::Exec => {
            Record::ProcessGone { event: read_pod(bytes).ok_or(bad_len)?, exec: kind == EventKind::Exec }
        }
    })
}

/// A connect record as the event the state wants; `describe` attributes the
/// caller (normally `proc::describe`).
pub(super) fn connect_observed(
    ev: &ConnectEvent,
    clock: &Clock,
    describe: impl Fn(u32, &str) -> Process,
) -> ConnectObserved {
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
pub(super) fn comm_str(comm: &[u8; COMM_LEN]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// Reads a `T` from the start of `bytes` if it is long enough. Only for the
/// `repr(C)` plain-data record types of `tokenwatch_common`.
pub(super) fn read_pod<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; callers only use integer/array-only repr(C)
    // types, for which every bit pattern is valid; read_unaligned has no
    // alignment requirement.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Converts `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) to wall-clock time, with
/// the offset between the two clocks taken now (refreshed by the run loop).
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    /// CLOCK_REALTIME − CLOCK_MONOTONIC, in ns.
    pub(super) realtime_minus_monotonic_ns: i128,
}

impl Clock {
    pub(super) fn now() -> Self {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Self { realtime_minus_monotonic_ns: real - mono }
    }

    pub(super) fn wall(&self, ktime_ns: u64) -> SystemTime {
        let ns = (ktime_ns as i128 + self.realtime_minus_monotonic_ns).clamp(0, u64::MAX as i128);
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    }
}

/// CLOCK_MONOTONIC now, in the kernel's `bpf_ktime_get_ns` terms.
pub(super) fn ktime_now() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

pub(super) fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; these clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// Undecodable records: counted (into `lost`) and logged once per reason.
#[derive(Default)]
pub(super) struct Skipped {
    pub(super) total: u64,
    pub(super) changed: bool,
    seen: BTreeMap<String, u64>,
}

impl Skipped {
    pub(super) fn record(&mut self, e: RecordError) {
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
