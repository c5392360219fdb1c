//! Tracked connections in userspace: one [`Connection`] decoder per
//! (tgid, fd), fed the kernel's chunks in order; completed calls become
//! [`Event::Call`]s.
//!
//! A decoder starts *from the start* only for a connection whose connect the
//! probe saw while the capture probes were already attached; otherwise
//! (discovered at start, connected while capture was detached, or any
//! connection when a capture window opens) it *late-joins*: the HPACK
//! dynamic table of the bytes before is unknown. Decoders are dropped when
//! capture is detached. Gaps (ring buffer full, per-syscall cap, faults)
//! show up as jumps of the kernel's per-direction stream offsets.
use std::{collections::HashMap, time::SystemTime};

use tokenwatch_common::{connect_flags, direction, ConnectEvent, DataHeader, MAX_TRACKED};

use super::decode::Clock;
use crate::{
    events::{CallObserved, CallSource, Event, GrpcStatus, Process},
    protocol::{Connection, ConnectionConfig, DecodedCall, Direction},
};

/// (tgid, fd).
pub(super) type Key = (u32, i32);

/// Counters of the capture, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Calls sent as events.
    pub calls: u64,
    /// Calls dropped because nothing about them was known (response lost).
    pub calls_unknown: u64,
    /// Decoders started from the first byte / late-joined.
    pub from_start: u64,
    pub late_joins: u64,
    /// Chunks that followed lost bytes.
    pub gaps: u64,
    /// Chunks of a connection userspace did not know (its connect record lost).
    pub orphan_chunks: u64,
    /// Connections dropped because /proc no longer showed them.
    pub revalidated_out: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The probe saw the connect, at this kernel time.
    Connected { ktime: u64 },
    /// Found open at start (or known only from its data).
    Discovered,
}

struct Conn {
    origin: Origin,
    inode: Option<u64>,
    decoder: Option<Connection>,
    /// Next expected stream offset per direction ([TX, RX]); `None`: any.
    next_off: [Option<u64>; 2],
    calls: u64,
}

pub(super) struct Tracker {
    conns: HashMap<Key, Conn>,
    processes: HashMap<u32, Process>,
    config: ConnectionConfig,
    /// Kernel time the capture probes were attached; `None` while detached.
    capture_since: Option<u64>,
    last_tracked_connect: Option<SystemTime>,
    stats: CaptureStats,
}

impl Tracker {
    pub(super) fn new(config: ConnectionConfig) -> Self {
        Self {
            conns: HashMap::new(),
            processes: HashMap::new(),
            config,
            capture_since: None,
            last_tracked_connect: None,
            stats: CaptureStats::default(),
        }
    }

    pub(super) fn stats(&self) -> CaptureStats {
        self.stats
    }

    pub(super) fn connections(&self) -> usize {
        self.conns.len()
    }

    pub(super) fn last_tracked_connect(&self) -> Option<SystemTime> {
        self.last_tracked_connect
    }

    /// Discovered connections that have not shown a complete call yet.
    pub(super) fn unsettled(&self) -> usize {
        self.conns.values().filter(|c| c.origin == Origin::Discovered && c.calls == 0).count()
    }

    /// A connect record; `inode` is the socket's, when /proc still shows it.
    pub(super) fn on_connect(&mut self, ev: &ConnectEvent, at: SystemTime, process: Process, inode: Option<u64>) {
        if ev.flags & connect_flags::TRACKED == 0 {
            return;
        }
        self.last_tracked_connect = Some(at);
        self.processes.insert(ev.header.tgid, process);
        let origin = Origin::Connected { ktime: ev.header.ts_ns };
        // Replaces a connection whose close was not seen.
        self.conns.insert((ev.header.tgid, ev.fd), Conn::new(origin, inode));
    }

    /// A connection found open by discovery (unless already known).
    pub(super) fn on_discovered(&mut self, key: Key, inode: u64, process: impl FnOnce() -> Process) -> bool {
        if self.conns.contains_key(&key) || self.conns.len() >= MAX_TRACKED as usize {
            return false;
        }
        self.processes.entry(key.0).or_insert_with(process);
        self.conns.insert(key, Conn::new(Origin::Discovered, Some(inode)));
        true
    }

    /// A chunk of captured bytes; returns the calls it completed as events.
    pub(super) fn on_data(
        &mut self,
        head: &DataHeader,
        payload: &[u8],
        clock: &Clock,
        describe: impl FnOnce(u32) -> Process,
    ) -> Vec<Event> {
        let key = (head.header.tgid, head.fd);
        if !self.conns.contains_key(&key) {
            if self.conns.len() >= MAX_TRACKED as usize {
                return Vec::new();
            }
            self.stats.orphan_chunks += 1;
            self.conns.insert(key, Conn::new(Origin::Discovered, None));
        }
        let process = self.processes.entry(key.0).or_insert_with(|| describe(key.0)).clone();
        let conn = self.conns.get_mut(&key).expect("inserted above");
        let (capture_since, config, stats) = (self.capture_since, self.config, &mut self.stats);
        let decoder = conn.decoder.get_or_insert_with(|| {
            let fresh = matches!(conn.origin, Origin::Connected { ktime } if capture_since.is_some_and(|s| s <= ktime));
            conn.next_off = if fresh { [Some(0); 2] } else { [None; 2] };
            if fresh {
                stats.from_start += 1;
            } else {
                stats.late_joins += 1;
            }
            Connection::with_config(config, !fresh)
        });
        let (dir, side) = if head.direction == direction::TX {
            (Direction::ClientToServer, 0)
        } else {
            (Direction::ServerToClient, 1)
        };
        let pos = head.stream_off.wrapping_add(u64::from(head.chunk_off));
        let gap = conn.next_off[side].is_some_and(|n| n != pos);
        conn.next_off[side] = Some(pos.wrapping_add(u64::from(head.data_len)));
        if gap {
            stats.gaps += 1;
        }
        if payload.is_empty() {
            return Vec::new();
        }
        let decoded = decoder.feed(dir, clock.wall(head.header.ts_ns), payload, gap);
        conn.calls += decoded.len() as u64;
        let mut events = Vec::with_capacity(decoded.len());
        for call in decoded {
            match call_event(call, &process, head.uid) {
                Some(ev) => {
                    stats.calls += 1;
                    events.push(ev);
                }
                None => stats.calls_unknown += 1,
            }
        }
        events
    }

    pub(super) fn on_close(&mut self, key: Key) {
        self.conns.remove(&key);
    }

    /// The process exited or exec'd: forgets it; returns its fds.
    pub(super) fn on_process_gone(&mut self, tgid: u32) -> Vec<i32> {
        self.processes.remove(&tgid);
        let fds: Vec<i32> = self.conns.keys().filter(|k| k.0 == tgid).map(|k| k.1).collect();
        for fd in &fds {
            self.conns.remove(&(tgid, *fd));
        }
        fds
    }

    /// The capture probes were attached at kernel time `ktime`: every
    /// existing connection late-joins from here.
    pub(super) fn capture_attached(&mut self, ktime: u64) {
        self.capture_since = Some(ktime);
        self.drop_decoders();
    }

    pub(super) fn capture_detached(&mut self) {
        self.capture_since = None;
        self.drop_decoders();
    }

    fn drop_decoders(&mut self) {
        for c in self.conns.values_mut() {
            c.decoder = None;
        }
    }

    /// Drops the connections /proc no longer shows as the same socket
    /// (`inode_of(tgid, fd)`; a close or exit the probes did not report, or
    /// a dup2 over the fd), and those whose socket was never identified
    /// unless `vouched` says the socket now at the fd is a client of
    /// token-agent's. Returns them, for the kernel's map.
    pub(super) fn revalidate(&mut self, inode_of: impl Fn(Key) -> Option<u64>, vouched: impl Fn(u64) -> bool) -> Vec<Key> {
        let mut stale = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            match (inode_of(*key), conn.inode) {
                (None, _) => stale.push(*key),
                (Some(now), Some(was)) if now != was => stale.push(*key),
                (Some(now), None) if !vouched(now) => stale.push(*key),
                (Some(now), _) => conn.inode = Some(now),
            }
        }
        for key in &stale {
            self.conns.remove(key);
        }
        self.stats.revalidated_out += stale.len() as u64;
        self.processes.retain(|tgid, _| self.conns.keys().any(|k| k.0 == *tgid));
        stale
    }
}

impl Conn {
    fn new(origin: Origin, inode: Option<u64>) -> Self {
        Self { origin, inode, decoder: None, next_off: [None; 2], calls: 0 }
    }
}

/// A decoded call as the state's event; `None` when nothing is known of it
/// (no status, not even an inferred one: its response bytes were lost).
pub(super) fn call_event(call: DecodedCall, process: &Process, uid: u32) -> Option<Event> {
    if call.status.is_none() && !call.status_inferred {
        return None;
    }
    Some(Event::Call(CallObserved {
        source: CallSource::Ebpf,
        at: call.end,
        duration: call.end.duration_since(call.start).ok(),
        process: process.clone(),
        uid: Some(uid),
        method: call.method,
        status: call.status.map(GrpcStatus),
        expires_at: call.expires_at,
        request_id: None,
        error: None,
    }))
}
