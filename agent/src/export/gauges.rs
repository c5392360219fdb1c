//! Gauges read from the latest snapshot at each collection: the alert
//! level (host and per client), refresh overdue and expiry remaining.
//!
//! One series per `client` + `process` label set, the worst of the clients
//! that share it: two live workers of one executable in one unit have the
//! same labels, and a last-value gauge would show only one of them — an
//! overdue one hidden behind a fresh one would never page.
use std::collections::BTreeMap;

use opentelemetry::{metrics::Meter, KeyValue};

use super::signals::{names, SharedSnapshot};
use crate::state::ClientSnapshot;

pub(super) fn register(meter: &Meter, latest: SharedSnapshot) {
    let snap = latest.clone();
    meter
        .i64_observable_gauge(names::ALERT_LEVEL)
        .with_description("Alert level: 0 OK, 1 WARN, 2 CRIT; without `client` for the host")
        .with_callback(move |o| {
            let guard = snap.read().unwrap_or_else(|p| p.into_inner());
            let Some(s) = guard.as_ref() else { return };
            o.observe(s.level.as_gauge(), &[]);
            for (labels, level) in worst(&s.clients, |c| Some(c.level.as_gauge()), i64::max) {
                o.observe(level, &labels);
            }
        })
        .build();
    let overdue = |c: &ClientSnapshot| c.last_success.map(|_| c.overdue_seconds);
    let description = "How long past refresh_at a client's token has not been refreshed";
    client_seconds(meter, names::REFRESH_OVERDUE, description, &latest, overdue, f64::max);
    let remaining = |c: &ClientSnapshot| c.last_success.and(c.expiry_remaining_seconds);
    let description = "Time until a client's token expires (negative once expired)";
    client_seconds(meter, names::EXPIRY_REMAINING, description, &latest, remaining, f64::min);
    meter
        .u64_observable_counter(names::EBPF_EVENTS_LOST)
        .with_description("eBPF records dropped because the ring buffer was full")
        .with_callback(move |o| {
            let guard = latest.read().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = guard.as_ref() {
                o.observe(s.sources.ebpf.lost, &[]);
            }
        })
        .build();
}

/// A per-client gauge in seconds: `value` of the clients that have one, the
/// worst (by `worse`) per label set.
fn client_seconds(
    meter: &Meter,
    name: &'static str,
    description: &'static str,
    latest: &SharedSnapshot,
    value: fn(&ClientSnapshot) -> Option<f64>,
    worse: fn(f64, f64) -> f64,
) {
    let snap = latest.clone();
    meter
        .f64_observable_gauge(name)
        .with_unit("s")
        .with_description(description)
        .with_callback(move |o| {
            let guard = snap.read().unwrap_or_else(|p| p.into_inner());
            let clients = guard.as_ref().map_or(&[][..], |s| &s.clients[..]);
            for (labels, v) in worst(clients, value, worse) {
                o.observe(v, &labels);
            }
        })
        .build();
}

/// Per `client` + `process` label set, the worst `value` (by `worse`) of
/// the clients that have one.
fn worst<T: Copy>(
    clients: &[ClientSnapshot],
    value: impl Fn(&ClientSnapshot) -> Option<T>,
    worse: impl Fn(T, T) -> T,
) -> Vec<([KeyValue; 2], T)> {
    let mut by: BTreeMap<(&str, &str), T> = BTreeMap::new();
    for c in clients {
        let Some(v) = value(c) else { continue };
        by.entry((&c.client, &c.process)).and_modify(|w| *w = worse(*w, v)).or_insert(v);
    }
    by.into_iter()
        .map(|((client, process), v)| ([KeyValue::new("client", client.to_owned()), KeyValue::new("process", process.to_owned())], v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(pid: u32, process: &str, overdue: f64) -> ClientSnapshot {
        ClientSnapshot {
            pid,
            process: process.into(),
            client: "yc-compute-node.service".into(),
            overdue_seconds: overdue,
            ..ClientSnapshot::default()
        }
    }

    #[test]
    fn clients_sharing_labels_show_the_worst_of_them() {
        // two workers of one executable in one unit, and the Python process beside them
        let clients = [client(20, "compute-node", 0.0), client(10, "compute-node", 300.0), client(30, "python3", 5.0)];
        let got: Vec<(String, f64)> = worst(&clients, |c| Some(c.overdue_seconds), f64::max)
            .into_iter()
            .map(|(labels, v)| (labels[1].value.to_string(), v))
            .collect();
        assert_eq!(got, [("compute-node".to_string(), 300.0), ("python3".to_string(), 5.0)]);
        let fresher = worst(&clients, |c| Some(-c.overdue_seconds), f64::min);
        assert_eq!(fresher[0].1, -300.0, "min for remaining time");
        assert!(worst(&clients, |_| None::<f64>, f64::max).is_empty());
    }
}
