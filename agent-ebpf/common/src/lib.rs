//! Types shared by the eBPF programs (`tokenwatch-ebpf`) and the agent.
//!
//! Every record sent through the ring buffer starts with [`EventHeader`].
//! Kinds have fixed numeric ids that are never reused; each struct's size is
//! asserted at compile time so the kernel and userspace sides cannot drift.
#![no_std]

/// Longest `sun_path` of an AF_UNIX socket address (Linux `sockaddr_un`).
pub const SUN_PATH_MAX: usize = 108;
/// Length of a task's `comm`.
pub const COMM_LEN: usize = 16;
/// Version of the event layout; bumped on any change of a struct below.
pub const EVENT_VERSION: u16 = 1;

/// Kinds of ring-buffer records. Ids are stable and never reused.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A `connect()` to the watched socket path returned (ok or error).
    Connect = 1,
}

impl EventKind {
    pub fn from_u16(v: u16) -> Option<Self> {
        match v {
            1 => Some(Self::Connect),
            _ => None,
        }
    }
}

/// Common header of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    pub kind: u16,
    pub version: u16,
    /// Size of the whole record, header included.
    pub len: u32,
    /// Process id (thread-group id) of the caller.
    pub tgid: u32,
    /// Thread id of the caller.
    pub tid: u32,
    /// `bpf_ktime_get_ns()` at the end of the observed operation (CLOCK_MONOTONIC).
    pub ts_ns: u64,
}

/// A `connect()` on an AF_UNIX socket whose path is the watched socket.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnectEvent {
    pub header: EventHeader,
    pub uid: u32,
    pub gid: u32,
    /// The socket's file descriptor in the caller.
    pub fd: i32,
    /// The syscall's return value: 0, or `-errno` (e.g. -2 ENOENT, -111 ECONNREFUSED).
    pub ret: i32,
    /// Time from `sys_enter_connect` to `sys_exit_connect`.
    pub latency_ns: u64,
    pub comm: [u8; COMM_LEN],
}

/// Load-time configuration of the probes, written into the object's
/// read-only data before load, so the verifier sees constants.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProbeConfig {
    /// The agent's own tgid: never traced.
    pub self_tgid: u32,
    /// Length of `socket_path` in bytes (no trailing NUL); 0 disables matching.
    pub socket_path_len: u32,
    pub socket_path: [u8; SUN_PATH_MAX],
}

impl ProbeConfig {
    pub const fn empty() -> Self {
        Self { self_tgid: 0, socket_path_len: 0, socket_path: [0; SUN_PATH_MAX] }
    }
}

/// Indices into the `COUNTERS` per-CPU array.
pub mod counter {
    /// Records dropped because the ring buffer was full.
    pub const LOST: u32 = 0;
    /// Records successfully submitted.
    pub const SENT: u32 = 1;
    pub const COUNT: u32 = 2;
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 24);
const _: () = assert!(core::mem::size_of::<ConnectEvent>() == 64);
const _: () = assert!(core::mem::size_of::<ProbeConfig>() == 116);

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, `repr(C)`, no padding-dependent invariants.
    unsafe impl aya::Pod for super::ConnectEvent {}
    unsafe impl aya::Pod for super::ProbeConfig {}
}
