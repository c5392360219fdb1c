//! Discovered connections into the userspace and kernel tables: once at
//! start (connections opened before the probes), and in `windows` mode at
//! each window's open (connections opened, and closes missed, while
//! connect/close were detached).
use std::{collections::HashSet, path::Path};

use tracing::{info, warn};

use super::{capture::Tracker, discover, maps::TrackedMaps};
use crate::sources::proc;

/// What [`rediscover`] did, for the log and the tests' eyes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Resynced {
    /// Tracked entries dropped: their fd no longer holds the socket tracked.
    pub dropped: usize,
    /// Connections sock_diag + /proc found, and those newly tracked.
    pub found: usize,
    pub seeded: usize,
}

/// Finds the connections open before start and tracks them (late join).
pub(super) fn discover_at_start(socket: &Path, tracker: &mut Tracker, maps: &mut TrackedMaps) {
    if let Some((found, seeded)) = discover_and_seed(socket, tracker, maps) {
        info!(found, tracked = seeded, "open connections to token-agent at start");
    }
}

/// With connect/close just attached again: drops the tracked entries whose
/// fd /proc no longer shows as the same socket (closed, or closed and
/// reused, while no close probe watched: the capture probes must not read
/// that fd as token-agent's), then tracks what discovery finds — connections
/// opened meanwhile. In that order, so that a connection reopened on the
/// same fd number replaces the stale entry instead of being refused as
/// already tracked. A connect racing this is seen by the probe or found by
/// discovery, or both (tracking it twice is refused by the kernel map).
///
/// A tracked connection whose socket was never identified (its connect was
/// handled after the fd had gone) stays only if discovery finds the socket
/// now at its fd among token-agent's clients: nothing watched that fd
/// between windows.
pub(super) fn rediscover(socket: &Path, tracker: &mut Tracker, maps: &mut TrackedMaps) -> Resynced {
    let found = discover_logged(socket);
    let clients: HashSet<u64> = found.iter().flatten().map(|f| f.inode).collect();
    let stale = tracker.revalidate(|(tgid, fd)| fd_inode(tgid, fd), |inode| clients.contains(&inode));
    for &(tgid, fd) in &stale {
        maps.untrack(tgid, fd);
    }
    let (found, seeded) = found.map(|f| seed(&f, tracker, maps)).unwrap_or_default();
    Resynced { dropped: stale.len(), found, seeded }
}

/// Discovery, `None` when it failed (logged).
fn discover_logged(socket: &Path) -> Option<Vec<discover::Found>> {
    match discover::discover(socket, std::process::id()) {
        Ok(f) => Some(f),
        Err(e) => {
            warn!(error = %e, "discovering open connections to token-agent (sock_diag) failed");
            None
        }
    }
}

/// Discovery, then each connection found into both tables; (found, newly
/// tracked), `None` when discovery failed (logged).
fn discover_and_seed(socket: &Path, tracker: &mut Tracker, maps: &mut TrackedMaps) -> Option<(usize, usize)> {
    discover_logged(socket).map(|found| seed(&found, tracker, maps))
}

/// Each connection `found` into both tables; (found, newly tracked).
fn seed(found: &[discover::Found], tracker: &mut Tracker, maps: &mut TrackedMaps) -> (usize, usize) {
    let mut seeded = 0;
    for f in found {
        match maps.seed(f.pid, f.fd) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                warn!(error = %e, "tracking an open connection failed");
                continue;
            }
        }
        if tracker.on_discovered((f.pid, f.fd), f.inode, || proc::describe(f.pid, "")) {
            seeded += 1;
        }
    }
    (found.len(), seeded)
}

/// The inode of the socket `tgid` holds as `fd`, if any.
pub(super) fn fd_inode(tgid: u32, fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{tgid}/fd/{fd}")).ok()?;
    discover::socket_inode(std::os::unix::ffi::OsStrExt::as_bytes(link.as_os_str()))
}
