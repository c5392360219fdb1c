//! Turns events and snapshots into OTel signals: a span per observed call or
//! connect, counters at event time, gauges read from the latest snapshot.
//! Every metric name lives here, per INTERFACE.md.
use std::sync::{Arc, RwLock};

use opentelemetry::{
    metrics::{Counter, Meter, MeterProvider as _},
    trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _},
    KeyValue,
};
use opentelemetry_sdk::trace::SdkTracer;

use super::otlp::Telemetry;
use crate::{
    events::{errno_name, ConnectObserved, Event},
    state::Snapshot,
};

/// The latest snapshot, written by the state task and read by exporters.
pub type SharedSnapshot = Arc<RwLock<Option<Snapshot>>>;

pub mod names {
    pub const ALERT_LEVEL: &str = "tokenwatch.alert.level";
    pub const CONNECT_ERRORS: &str = "token_agent.connect.errors";
    pub const EBPF_EVENTS_LOST: &str = "tokenwatch.ebpf.events.lost";
    pub const CONNECT_SPAN: &str = "token_agent.connect";
}

pub struct Signals {
    tracer: Option<SdkTracer>,
    connect_errors: Counter<u64>,
    socket: String,
}

impl Signals {
    pub fn new(t: &Telemetry, socket: &str, latest: SharedSnapshot) -> Self {
        let meter = t.meter_provider.meter("tokenwatch");
        register_gauges(&meter, latest);
        Self {
            tracer: t.tracer_provider.as_ref().map(|p| p.tracer("tokenwatch")),
            connect_errors: meter
                .u64_counter(names::CONNECT_ERRORS)
                .with_description("Failed connect() calls to token-agent's socket, by errno")
                .build(),
            socket: socket.to_string(),
        }
    }

    /// Records what one event says. Called by the state task after `apply`.
    pub fn record(&self, event: &Event) {
        match event {
            Event::Connect(c) => self.record_connect(c),
        }
    }

    fn record_connect(&self, c: &ConnectObserved) {
        if let Some(errno) = c.errno {
            let labels = [
                KeyValue::new("errno", errno_name(errno)),
                KeyValue::new("client", c.process.client().to_string()),
                KeyValue::new("process", c.process.name().to_string()),
            ];
            self.connect_errors.add(1, &labels);
        }
        let Some(tracer) = &self.tracer else { return };
        let start = c.at.checked_sub(c.latency).unwrap_or(c.at);
        let mut attrs = vec![
            KeyValue::new("network.transport", "unix"),
            KeyValue::new("server.address", self.socket.clone()),
            KeyValue::new("process.pid", i64::from(c.process.pid)),
            KeyValue::new("thread.id", i64::from(c.tid)),
            KeyValue::new("process.executable.name", c.process.name().to_string()),
            KeyValue::new("process.command", c.process.comm.clone()),
            KeyValue::new("tokenwatch.client", c.process.client().to_string()),
            KeyValue::new("tokenwatch.source", "ebpf"),
        ];
        if let Some(unit) = &c.process.unit {
            attrs.push(KeyValue::new("tokenwatch.unit", unit.clone()));
        }
        if let Some(errno) = c.errno {
            attrs.push(KeyValue::new("error.type", errno_name(errno)));
        }
        let mut span = tracer
            .span_builder(names::CONNECT_SPAN)
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes(attrs)
            .start(tracer);
        if let Some(errno) = c.errno {
            span.set_status(Status::error(format!("connect: {}", errno_name(errno))));
        }
        span.end_with_timestamp(c.at);
    }
}

fn register_gauges(meter: &Meter, latest: SharedSnapshot) {
    let snap = latest.clone();
    meter
        .i64_observable_gauge(names::ALERT_LEVEL)
        .with_description("Alert level: 0 OK, 1 WARN, 2 CRIT; without `client` for the host")
        .with_callback(move |o| {
            let guard = snap.read().unwrap_or_else(|p| p.into_inner());
            let Some(s) = guard.as_ref() else { return };
            o.observe(s.level.as_gauge(), &[]);
            for c in &s.clients {
                o.observe(
                    c.level.as_gauge(),
                    &[KeyValue::new("client", c.client.clone()), KeyValue::new("process", c.process.clone())],
                );
            }
        })
        .build();
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
