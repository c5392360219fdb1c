//! tokenwatch's eBPF programs. Built only for `bpfel-unknown-none` by
//! `cargo xtask build`; the agent embeds the object and loads it with aya.
//!
//! One module per hook family; shared maps and the load-time config live here.
#![no_std]
#![no_main]

mod probes;

use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use tokenwatch_common::{counter, ProbeConfig};

/// Load-time configuration, written by the agent with
/// `EbpfLoader::override_global` (formerly `set_global`) before load. It lives
/// in `.rodata`, which aya freezes, so the verifier treats its fields as
/// constants. Always read it through the `config_*` functions below.
#[no_mangle]
static CONFIG: ProbeConfig = ProbeConfig::empty();

/// Every record for userspace; each starts with an `EventHeader`.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

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
