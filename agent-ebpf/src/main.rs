//! tokenwatch's eBPF programs. Built only for `bpfel-unknown-none` by
//! `cargo xtask build`; the agent embeds the object and loads it with aya.
//!
//! One module per hook family (`probes/`); the tracked-connection maps and
//! their bookkeeping in `tracked`; shared maps and the load-time config here.
#![no_std]
#![no_main]
// atomic_xadd: the bpf target has 64-bit atomics but no CAS, so core's
// `AtomicU64::fetch_add` is missing; the intrinsic lowers to BPF_XADD.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod probes;
mod tracked;

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
};
use tokenwatch_common::{
    config_flags, counter, EventHeader, EventKind, ProbeConfig, TrackedConn, TrackedKey, EVENT_VERSION, MAX_TRACKED,
    MAX_TRACKED_PROCESSES,
};

/// Load-time configuration, written by the agent with
/// `EbpfLoader::override_global` (formerly `set_global`) before load. It lives
/// in `.rodata`, which aya freezes, so the verifier treats its fields as
/// constants. Always read it through the `config_*` functions below.
#[no_mangle]
static CONFIG: ProbeConfig = ProbeConfig::empty();

/// Every record for userspace; each starts with an `EventHeader`.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(512 * 1024, 0);

/// Processes holding tracked connections → how many. The first (and for
/// every other process the only) lookup of each I/O probe. An entry stays
/// (possibly at 0) until the process exits or execs.
#[map]
static TRACKED_TGIDS: HashMap<u32, u64> = HashMap::with_max_entries(MAX_TRACKED_PROCESSES, 0);

/// Tracked client connections to the watched socket: added by the connect
/// probe and by userspace discovery, removed by the close probe (and by
/// userspace after a process exit or a failed revalidation).
#[map]
static TRACKED: HashMap<TrackedKey, TrackedConn> = HashMap::with_max_entries(MAX_TRACKED, 0);

/// Self-metrics, indexed by `tokenwatch_common::counter::*`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// The agent's own tgid (never traced). Volatile reads keep the compiler from
/// folding `CONFIG`'s all-zero initial value into the code.
#[inline(always)]
fn config_self_tgid() -> u32 {
    // SAFETY: reading a field of a valid static.
    unsafe { core::ptr::read_volatile(&CONFIG.self_tgid) }
}

/// Length of the watched socket path; 0 disables matching.
#[inline(always)]
fn config_path_len() -> usize {
    // SAFETY: reading a field of a valid static.
    unsafe { core::ptr::read_volatile(&CONFIG.socket_path_len) as usize }
}

/// Byte `i` of the watched socket path (`i < SUN_PATH_MAX`, else 0).
#[inline(always)]
fn config_path_byte(i: usize) -> u8 {
    match CONFIG.socket_path.get(i) {
        // SAFETY: in-bounds element of a valid static.
        Some(b) => unsafe { core::ptr::read_volatile(b) },
        None => 0,
    }
}

/// Offset in `struct pt_regs` of syscall argument `n` (0..4; else 0).
#[inline(always)]
fn config_syscall_arg_offset(n: usize) -> usize {
    match CONFIG.syscall_arg_offsets.get(n) {
        // SAFETY: in-bounds element of a valid static.
        Some(o) => unsafe { core::ptr::read_volatile(o) as usize },
        None => 0,
    }
}

/// Optional kernel features userspace found (`config_flags`).
#[inline(always)]
fn config_flag_bits() -> u32 {
    // SAFETY: reading a field of a valid static.
    unsafe { core::ptr::read_volatile(&CONFIG.flags) }
}

/// Whether `sched_process_exit` carries `group_dead`.
#[inline(always)]
fn exit_has_group_dead() -> bool {
    config_flag_bits() & config_flags::EXIT_HAS_GROUP_DEAD != 0
}

/// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, what userspace converts to wall time.
#[inline(always)]
fn ktime_ns() -> u64 {
    // SAFETY: helper without arguments or memory access.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}

/// The common header of a record of `kind` and `len` bytes, by the current task.
#[inline(always)]
fn header(kind: EventKind, len: usize, pid_tgid: u64, ts_ns: u64) -> EventHeader {
    EventHeader {
        kind: kind as u16,
        version: EVENT_VERSION,
        len: len as u32,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        ts_ns,
    }
}

/// Adds one to a per-CPU counter (no atomics needed: the slot is this CPU's).
#[inline(always)]
fn bump(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, programs are not preempted while running.
        unsafe { *slot += 1 };
    }
}

// The kernel refuses GPL-only helpers (bpf_probe_read_user) to programs
// without a GPL-compatible license string.
#[no_mangle]
#[link_section = "license"]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
