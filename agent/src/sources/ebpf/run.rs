//! The source's run loop: drains the ring buffer into events, keeps the
//! capture probes (and in `windows` mode connect/close) attached while the
//! window says so (`attach`), and revalidates tracked connections against
//! /proc.
use std::time::{Duration, SystemTime};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use tokenwatch_common::counter;
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
};
use tracing::{debug, info};

use super::{
    attach::{Attachments, Tables},
    capture::Tracker,
    decode::{self, Clock, Record, Skipped},
    load::Loaded,
    maps::TrackedMaps,
    seed::{discover_at_start, fd_inode},
    CaptureHint, EbpfError, EbpfSource, WindowInputs,
};
use crate::{
    config::CaptureMode,
    events::Event,
    protocol::ConnectionConfig,
    sources::{proc, Health, SourceState},
};

/// How often counters are read, the clock offset refreshed and the capture
/// window evaluated.
const TICK: Duration = Duration::from_secs(1);
/// How often the ring is drained while capturing: data records do not wake
/// userspace until the ring is a quarter full.
const DATA_DRAIN: Duration = Duration::from_millis(50);
/// How often tracked connections are checked against /proc.
const REVALIDATE_EVERY: Duration = Duration::from_secs(10);

/// Reads the ring buffer until `tx` closes: `Ok`; `Err` when the ring
/// buffer cannot be watched.
pub(super) async fn run(
    source: EbpfSource,
    tx: &mpsc::Sender<Event>,
    health: &Health,
    mut hints: watch::Receiver<CaptureHint>,
) -> Result<(), EbpfError> {
    let EbpfSource { loaded, socket, settings } = source;
    let Loaded {
        mut ebpf,
        events,
        counters,
        mut maps,
        attached,
        connections_on_demand,
        capture,
        connections_hooks,
        capture_hooks,
    } = loaded;
    // SAFETY: the RingBuf owns its map fd for as long as it lives, and
    // as_raw_fd always returns that fd.
    let mut ring = unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }
        .map_err(|e| EbpfError::Io(e.into_parts().1))?;
    let mut hooks = vec![connections_hooks.describe("connect/close")];
    if connections_on_demand {
        hooks[0].push_str(", attached only in capture windows");
    }
    if settings.capture != CaptureMode::Off {
        // also when the fallback did not load either: both reasons are wanted
        hooks.push(capture_hooks.describe("capture"));
    }
    let base_detail = format!("attached {} (socket {}); {}", attached.join(", "), socket.display(), hooks.join("; "));
    info!(socket = %socket.display(), probes = %attached.join(", "), hooks = %hooks.join("; "), capture = ?settings.capture, "eBPF source running");

    let started_at = SystemTime::now();
    let mut clock = Clock::now();
    let mut tracker =
        Tracker::new(ConnectionConfig { expires_at_field: settings.expires_at_field, ..Default::default() });
    let mut attachments = Attachments::new(capture, capture_hooks.kind, connections_on_demand, socket.clone());
    discover_at_start(&socket, &mut tracker, &mut maps);
    health.set(SourceState::Running, attachments.detail(&base_detail));

    let mut skipped = Skipped::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drain = tokio::time::interval(DATA_DRAIN);
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_revalidate = SystemTime::now();
    let mut hints_open = true;
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            _ = tx.closed() => break,
            _ = tick.tick() => {
                health.set_lost(kernel_counter(&counters, counter::LOST) + skipped.total);
                clock = Clock::now(); // follow wall-clock steps (NTP, manual)
                let now = SystemTime::now();
                if now.duration_since(last_revalidate).is_ok_and(|d| d >= REVALIDATE_EVERY) {
                    last_revalidate = now;
                    for (tgid, fd) in tracker.revalidate(|(tgid, fd)| fd_inode(tgid, fd), |_| true) {
                        maps.untrack(tgid, fd);
                    }
                }
            }
            changed = hints.changed(), if hints_open => {
                if changed.is_err() {
                    hints_open = false; // the state stopped hinting: windows from connects and start only
                }
            }
            // data records do not wake us (see probes/io.rs): the drain below fetches them
            _ = drain.tick(), if attachments.capturing() => {}
            guard = ring.readable_mut() => {
                let mut guard = guard.map_err(EbpfError::Io)?;
                drain_ring(guard.get_inner_mut(), &clock, &mut tracker, &mut maps, &mut batch, &mut skipped);
                guard.clear_ready();
            }
        }
        if attachments.capturing() {
            // what the probes produced so far goes to the decoders it belongs to,
            // before a detach drops them
            drain_ring(ring.get_mut(), &clock, &mut tracker, &mut maps, &mut batch, &mut skipped);
        }
        let inputs = WindowInputs {
            started_at,
            last_tracked_connect: tracker.last_tracked_connect(),
            unsettled_connections: tracker.unsettled(),
            hint: *hints.borrow(),
        };
        let tables = Tables { ebpf: &mut ebpf, tracker: &mut tracker, maps: &mut maps };
        if attachments.evaluate(tables, &settings, &inputs) {
            health.set(SourceState::Running, attachments.detail(&base_detail));
            debug!(kernel = %kernel_counters(&counters), "eBPF kernel counters");
        }
        if skipped.changed {
            skipped.changed = false;
            health.set_lost(kernel_counter(&counters, counter::LOST) + skipped.total);
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
    debug!(
        stats = ?tracker.stats(),
        kernel = %kernel_counters(&counters),
        connections = tracker.connections(),
        "eBPF source stopping"
    );
    Ok(())
}

/// Handles every record in the ring. Drains fully before anything is
/// awaited: items borrow the ring, and attribution must happen while the
/// caller lives.
fn drain_ring(
    rb: &mut RingBuf<MapData>,
    clock: &Clock,
    tracker: &mut Tracker,
    maps: &mut TrackedMaps,
    out: &mut Vec<Event>,
    skipped: &mut Skipped,
) {
    while let Some(item) = rb.next() {
        match decode::parse(&item) {
            Ok(record) => handle(record, clock, tracker, maps, out),
            Err(e) => skipped.record(e),
        }
    }
}

/// One record: tracker updates, kernel-map cleanup, events into `out`.
fn handle(
    record: Record<'_>,
    clock: &Clock,
    tracker: &mut Tracker,
    maps: &mut TrackedMaps,
    out: &mut Vec<Event>,
) {
    match record {
        Record::Connect(ev) => {
            let connect = decode::connect_observed(&ev, clock, proc::describe);
            // only a successful connect to the socket is tracked (the kernel says so)
            if ev.flags & tokenwatch_common::connect_flags::TRACKED != 0 {
                let inode = fd_inode(ev.header.tgid, ev.fd);
                tracker.on_connect(&ev, connect.at, connect.process.clone(), inode);
            }
            out.push(Event::Connect(connect));
        }
        Record::Data { head, payload } => {
            out.extend(tracker.on_data(&head, payload, clock, |pid| proc::describe(pid, "")));
        }
        Record::Close(ev) => tracker.on_close((ev.header.tgid, ev.fd)),
        Record::ProcessGone { event, .. } => {
            let tgid = event.header.tgid;
            maps.forget(tgid, tracker.on_process_gone(tgid));
            out.push(Event::ProcessExit { pid: tgid, at: clock.wall(event.header.ts_ns) });
        }
    }
}

/// Every kernel counter, for the logs.
fn kernel_counters(counters: &PerCpuArray<MapData, u64>) -> String {
    let names = [
        (counter::SENT, "sent"),
        (counter::LOST, "lost"),
        (counter::TRUNCATED, "truncated"),
        (counter::TRACK_FULL, "track_full"),
        (counter::READ_FAULT, "read_fault"),
    ];
    names.iter().map(|&(i, n)| format!("{n}={}", kernel_counter(counters, i))).collect::<Vec<_>>().join(" ")
}

/// Sum over CPUs of one of the kernel's counters.
fn kernel_counter(counters: &PerCpuArray<MapData, u64>, index: u32) -> u64 {
    match counters.get(&index, 0) {
        Ok(values) => values.iter().sum(),
        Err(e) => {
            debug!(error = %e, index, "reading an eBPF counter");
            0
        }
    }
}
