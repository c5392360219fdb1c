//! The maps userspace writes besides reading the ring: the tracked
//! connections (seeded by discovery, cleaned after exits and failed
//! revalidations) and the per-thread "in flight" maps cleared after a detach.
use std::io;

use aya::{
    maps::{HashMap, MapData, MapError},
    Ebpf,
};
use tokenwatch_common::{IoPending, TrackedConn, TrackedKey, MAX_TRACKED_PER_PROCESS};
use tracing::debug;

/// connect()s in flight, by thread (agent-ebpf/src/probes/connect.rs).
const MAP_CONNECT_PENDING: &str = "CONNECT_PENDING";

/// Forgets the connect()s in flight; call once connect/close are detached.
/// A connect blocked across the detach left its entry, and its thread's
/// next connect exit, seen before the enter is attached again, would
/// otherwise report (and track) the old fd.
pub(super) fn clear_connect_pending(ebpf: &mut Ebpf) {
    let Some(map) = ebpf.map_mut(MAP_CONNECT_PENDING) else {
        return debug!("no {MAP_CONNECT_PENDING} map to clear");
    };
    // the value (start time, fd) is never read here: only its size matters
    let mut pending: HashMap<&mut MapData, u64, [u8; 16]> = match HashMap::try_from(map) {
        Ok(m) => m,
        Err(e) => return debug!(error = %e, "{MAP_CONNECT_PENDING}"),
    };
    let keys: Vec<u64> = pending.keys().filter_map(Result::ok).collect();
    for k in keys {
        let _ = pending.remove(&k);
    }
}

/// The kernel's tracked-connection maps, for discovery and cleanup.
pub(super) struct TrackedMaps {
    pub(super) tracked: HashMap<MapData, TrackedKey, TrackedConn>,
    pub(super) tgids: HashMap<MapData, u32, u64>,
    pub(super) pending: HashMap<MapData, u64, IoPending>,
}

const BPF_NOEXIST: u64 = 1;

impl TrackedMaps {
    /// Tracks a connection found by discovery. `Ok(false)`: already tracked
    /// (the connect probe was faster) or the process is at its limit.
    pub(super) fn seed(&mut self, tgid: u32, fd: i32) -> Result<bool, MapError> {
        let count = self.tgids.get(&tgid, 0).unwrap_or(0);
        if count >= u64::from(MAX_TRACKED_PER_PROCESS) {
            return Ok(false);
        }
        match self.tracked.insert(TrackedKey { tgid, fd }, TrackedConn::default(), BPF_NOEXIST) {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::EEXIST) => return Ok(false),
            Err(e) => return Err(e),
        }
        // Not atomic with the probes' updates of the same process; a connect
        // racing this seeding may leave the count one off until exit.
        let count = self.tgids.get(&tgid, 0).unwrap_or(0);
        self.tgids.insert(tgid, count + 1, 0)?;
        Ok(true)
    }

    /// Stops tracking a connection the kernel did not see close (revalidation).
    pub(super) fn untrack(&mut self, tgid: u32, fd: i32) {
        if self.tracked.remove(&TrackedKey { tgid, fd }).is_ok() {
            if let Ok(count) = self.tgids.get(&tgid, 0) {
                let _ = self.tgids.insert(tgid, count.saturating_sub(1), 0);
            }
        }
    }

    /// Forgets the syscalls in flight; call once the capture probes are
    /// detached (a syscall blocked across the detach left its entry).
    pub(super) fn clear_pending(&mut self) {
        let keys: Vec<u64> = self.pending.keys().filter_map(Result::ok).collect();
        for k in keys {
            let _ = self.pending.remove(&k);
        }
    }

    /// Removes the entries of a process that exited or exec'd (the probe
    /// already dropped its count).
    pub(super) fn forget(&mut self, tgid: u32, fds: impl IntoIterator<Item = i32>) {
        for fd in fds {
            let _ = self.tracked.remove(&TrackedKey { tgid, fd });
        }
    }
}

fn errno(e: &MapError) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return io.raw_os_error();
        }
        cur = err.source();
    }
    None
}

