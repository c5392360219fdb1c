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
pub const EVENT_VERSION: u16 = 2;

/// Payload bytes in one [`DataHeader`] record at most.
pub const DATA_CHUNK: usize = 4096;
/// Bytes copied per syscall at most (in up to `MAX_CAPTURE / DATA_CHUNK`
/// records); the rest is counted as truncated and userspace sees a gap.
pub const MAX_CAPTURE: usize = 16 * 1024;
/// iovecs walked per `writev`/`readv`/`sendmsg`/`recvmsg` at most (grpcio
/// sends a first request in about 27).
pub const MAX_IOV: usize = 32;
/// Tracked connections per process at most; more are not captured (counted).
pub const MAX_TRACKED_PER_PROCESS: u32 = 64;
/// Tracked connections in all (size of the `TRACKED` map).
pub const MAX_TRACKED: u32 = 4096;
/// Processes holding tracked connections (size of the `TRACKED_TGIDS` map).
pub const MAX_TRACKED_PROCESSES: u32 = 1024;

/// Kinds of ring-buffer records. Ids are stable and never reused.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A `connect()` to the watched socket path returned (ok or error): [`ConnectEvent`].
    Connect = 1,
    /// Bytes a tracked connection carried: [`DataHeader`] + payload.
    Data = 2,
    /// A tracked fd was closed: [`CloseEvent`].
    Close = 3,
    /// A process holding tracked connections exited: [`ProcessEvent`].
    ProcessExit = 4,
    /// A process holding tracked connections called `exec`: [`ProcessEvent`].
    Exec = 5,
}

impl EventKind {
    pub fn from_u16(v: u16) -> Option<Self> {
        match v {
            1 => Some(Self::Connect),
            2 => Some(Self::Data),
            3 => Some(Self::Close),
            4 => Some(Self::ProcessExit),
            5 => Some(Self::Exec),
            _ => None,
        }
    }
}

/// Common header of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// [`connect_flags`].
    pub flags: u32,
    pub _pad: u32,
}

/// Bits of [`ConnectEvent::flags`].
pub mod connect_flags {
    /// The connection was added to `TRACKED`: its I/O is captured.
    pub const TRACKED: u32 = 1;
    /// Succeeded but not tracked: the per-process or total limit was reached.
    pub const TRACK_FULL: u32 = 2;
}

/// Which way bytes flowed on a tracked (client) connection.
pub mod direction {
    /// The client wrote (request side).
    pub const TX: u8 = 0;
    /// The client read (response side).
    pub const RX: u8 = 1;
}

/// The syscall that moved the bytes (diagnostics only).
pub mod op {
    pub const WRITE: u8 = 1;
    pub const WRITEV: u8 = 2;
    pub const SENDTO: u8 = 3;
    pub const SENDMSG: u8 = 4;
    pub const READ: u8 = 5;
    pub const READV: u8 = 6;
    pub const RECVFROM: u8 = 7;
    pub const RECVMSG: u8 = 8;
}

/// Bits of [`DataHeader::flags`].
pub mod data_flags {
    /// The last record of this syscall.
    pub const LAST: u8 = 1;
    /// Bytes of this syscall after this record were not captured (cap,
    /// iovec limit or a fault): the next bytes userspace sees follow a gap.
    pub const TRUNCATED: u8 = 2;
}

/// Bytes moved by one syscall on a tracked connection: this header, then
/// `data_len` bytes of payload (the record is `DATA_HEADER_LEN + data_len`
/// long). One syscall yields up to `MAX_CAPTURE / DATA_CHUNK` records.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataHeader {
    pub header: EventHeader,
    /// Offset of the syscall's first byte in this direction's stream, counted
    /// by the kernel over the bytes it saw (while the data probes were
    /// attached). Consecutive syscalls continue each other; a jump is a gap.
    pub stream_off: u64,
    pub fd: i32,
    pub uid: u32,
    /// Bytes the syscall moved (its return value).
    pub syscall_len: u32,
    /// Offset of this record's payload within the syscall's bytes.
    pub chunk_off: u32,
    pub data_len: u32,
    /// [`direction`].
    pub direction: u8,
    /// [`op`].
    pub op: u8,
    /// [`data_flags`].
    pub flags: u8,
    pub _pad: u8,
}

/// Size of [`DataHeader`]: the payload starts here.
pub const DATA_HEADER_LEN: usize = core::mem::size_of::<DataHeader>();

/// A tracked fd was closed (`close()` entered; the fd is gone either way).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseEvent {
    pub header: EventHeader,
    pub fd: i32,
    pub _pad: u32,
}

/// A process with tracked connections exited or exec'd: every tracked fd of
/// `header.tgid` is gone from the kernel's maps except in `TRACKED`, which
/// userspace cleans.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessEvent {
    pub header: EventHeader,
    pub comm: [u8; COMM_LEN],
}

/// Key of the `TRACKED` map: one connection of one process.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrackedKey {
    pub tgid: u32,
    pub fd: i32,
}

/// Value of the `TRACKED` map: per-direction stream offsets (see
/// [`DataHeader::stream_off`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackedConn {
    pub tx_off: u64,
    pub rx_off: u64,
}

/// Value of the `IO_PENDING` map (key: `pid_tgid`): a syscall on a tracked
/// fd between its enter and exit probes. Userspace clears the map after the
/// capture probes are detached, so an exit seen without its enter (a probe
/// attached in between) never meets a stale entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoPending {
    /// The buffer, or the iovec array.
    pub buf: u64,
    /// Its length, or the number of iovecs.
    pub count: u64,
    pub fd: i32,
    /// The syscall number, checked at exit.
    pub nr: i32,
    /// [`shape`].
    pub shape: u8,
    /// [`direction`].
    pub direction: u8,
    /// [`op`].
    pub op: u8,
    pub _pad: [u8; 5],
}

/// How a syscall's bytes are described ([`IoPending::shape`]).
pub mod shape {
    /// One buffer: `buf`, `count` bytes.
    pub const BUF: u8 = 0;
    /// An iovec array: `buf` points to `count` iovecs.
    pub const IOV: u8 = 1;
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
    /// [`config_flags`].
    pub flags: u32,
    /// Byte offsets in `struct pt_regs` of syscall arguments 0..4, read from
    /// the running kernel's BTF by userspace; used by the fentry/fexit
    /// programs on the syscall wrappers (`__x64_sys_*(const struct pt_regs *)`).
    pub syscall_arg_offsets: [u16; 4],
}

/// Bits of [`ProbeConfig::flags`].
pub mod config_flags {
    /// `sched/sched_process_exit` has the `group_dead` field (at
    /// [`super::EXIT_GROUP_DEAD_OFFSET`]); else the leader's exit counts.
    pub const EXIT_HAS_GROUP_DEAD: u32 = 1;
}

/// Offset of `group_dead` in `sched/sched_process_exit` (kernels that have it).
pub const EXIT_GROUP_DEAD_OFFSET: usize = 32;

impl ProbeConfig {
    pub const fn empty() -> Self {
        Self { self_tgid: 0, socket_path_len: 0, socket_path: [0; SUN_PATH_MAX], flags: 0, syscall_arg_offsets: [0; 4] }
    }
}

/// Indices into the `COUNTERS` per-CPU array.
pub mod counter {
    /// Records dropped because the ring buffer was full.
    pub const LOST: u32 = 0;
    /// Records successfully submitted.
    pub const SENT: u32 = 1;
    /// Syscalls on tracked connections whose bytes were not all captured.
    pub const TRUNCATED: u32 = 2;
    /// Successful connects to the socket that could not be tracked (limits).
    pub const TRACK_FULL: u32 = 3;
    /// `bpf_probe_read_user` failures while copying captured bytes.
    pub const READ_FAULT: u32 = 4;
    pub const COUNT: u32 = 5;
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 24);
const _: () = assert!(core::mem::size_of::<ConnectEvent>() == 72);
const _: () = assert!(core::mem::size_of::<DataHeader>() == 56);
const _: () = assert!(DATA_HEADER_LEN.is_multiple_of(8));
const _: () = assert!(core::mem::size_of::<CloseEvent>() == 32);
const _: () = assert!(core::mem::size_of::<ProcessEvent>() == 40);
const _: () = assert!(core::mem::size_of::<TrackedKey>() == 8);
const _: () = assert!(core::mem::size_of::<TrackedConn>() == 16);
const _: () = assert!(core::mem::size_of::<IoPending>() == 32);
const _: () = assert!(core::mem::size_of::<ProbeConfig>() == 128);
const _: () = assert!(DATA_CHUNK.is_power_of_two() && MAX_CAPTURE.is_multiple_of(DATA_CHUNK));

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, `repr(C)`, no padding-dependent invariants.
    unsafe impl aya::Pod for super::ConnectEvent {}
    unsafe impl aya::Pod for super::ProbeConfig {}
    unsafe impl aya::Pod for super::TrackedKey {}
    unsafe impl aya::Pod for super::TrackedConn {}
    unsafe impl aya::Pod for super::IoPending {}
}
