//! Bookkeeping of tracked connections: `TRACKED` holds each (tgid, fd),
//! `TRACKED_TGIDS` how many a process holds, so that the I/O probes leave
//! after one lookup for every process that holds none.
//!
//! Counts are updated with atomic adds (threads of one process may connect
//! and close concurrently); the check against the per-process limit is not
//! atomic with the add, so a racing process may exceed it by a few.

use aya_ebpf::bindings::BPF_NOEXIST;
use tokenwatch_common::{TrackedConn, TrackedKey, MAX_TRACKED_PER_PROCESS};

use crate::{TRACKED, TRACKED_TGIDS};

const EEXIST: i32 = 17;

/// Why a connection could not be tracked.
pub enum TrackError {
    /// The process holds `MAX_TRACKED_PER_PROCESS` already, or a map is full.
    Full,
}

/// Whether `tgid` holds at least one tracked connection. The only map
/// lookup an I/O probe makes for a process that holds none.
#[inline(always)]
pub fn tgid_is_tracked(tgid: u32) -> bool {
    match TRACKED_TGIDS.get_ptr(&tgid) {
        // SAFETY: a valid map value pointer; racing writers only add/subtract.
        Some(count) => unsafe { core::ptr::read_volatile(count) != 0 },
        None => false,
    }
}

/// Starts tracking (tgid, fd), with fresh stream offsets.
#[inline(always)]
pub fn track(tgid: u32, fd: i32) -> Result<(), TrackError> {
    let mut created = false;
    match TRACKED_TGIDS.get_ptr(&tgid) {
        // SAFETY: a valid map value pointer.
        Some(count) if unsafe { core::ptr::read_volatile(count) >= MAX_TRACKED_PER_PROCESS as u64 } => {
            return Err(TrackError::Full);
        }
        Some(_) => {}
        None => match TRACKED_TGIDS.insert(&tgid, &0u64, BPF_NOEXIST as u64) {
            Ok(()) => created = true,
            Err(e) if e as i32 == -EEXIST => {}
            Err(_) => return Err(TrackError::Full),
        },
    }
    let key = TrackedKey { tgid, fd };
    let fresh = TrackedConn::default();
    match TRACKED.insert(&key, &fresh, BPF_NOEXIST as u64) {
        Ok(()) => add(tgid, 1),
        Err(e) if e as i32 == -EEXIST => {
            // A stale entry: its close was not seen (dup2 onto it, close_range,
            // or a reused pid whose exit userspace has not cleaned yet).
            let _ = TRACKED.insert(&key, &fresh, 0);
            if created {
                add(tgid, 1);
            }
        }
        Err(_) => return Err(TrackError::Full),
    }
    Ok(())
}

/// Stops tracking (tgid, fd); `true` when it was tracked.
#[inline(always)]
pub fn untrack(tgid: u32, fd: i32) -> bool {
    if TRACKED.remove(&TrackedKey { tgid, fd }).is_err() {
        return false;
    }
    if let Some(count) = TRACKED_TGIDS.get_ptr_mut(&tgid) {
        // SAFETY: a valid map value pointer.
        if unsafe { core::ptr::read_volatile(count) > 0 } {
            add(tgid, u64::MAX); // −1, wrapping
        }
    }
    true
}

/// Forgets `tgid` (exit or exec); `true` when it held tracked connections
/// (now or before). Its `TRACKED` entries are left for userspace to remove.
#[inline(always)]
pub fn forget_process(tgid: u32) -> bool {
    TRACKED_TGIDS.remove(&tgid).is_ok()
}

/// Atomically adds `delta` (wrapping) to `tgid`'s count, if it has one.
#[inline(always)]
fn add(tgid: u32, delta: u64) {
    if let Some(count) = TRACKED_TGIDS.get_ptr_mut(&tgid) {
        // SAFETY: a valid, aligned map value pointer for the program's run.
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(count, delta)
        };
    }
}
