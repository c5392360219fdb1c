//! Turns events and snapshots into OTel signals: a span per observed call or
//! connect, counters at event time, gauges read from the latest snapshot.
//! Every metric name lives here, per INTERFACE.md.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, SystemTime},
};

use opentelemetry::{
    metrics::{Counter, Histogram, MeterProvider as _},
    trace::{Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _},
    Context, KeyValue,
};
use opentelemetry_sdk::trace::SdkTracer;

use super::otlp::Telemetry;
use crate::{
    events::{errno_name, CallObserved, CallSource, ConnectObserved, Event},
    state::Snapshot,
};

/// The latest snapshot, written by the state task and read by exporters.
pub type SharedSnapshot = Arc<RwLock<Option<Snapshot>>>;

pub mod names {
    pub const ALERT_LEVEL: &str = "tokenwatch.alert.level";
    pub const REFRESH_OVERDUE: &str = "iam_token.refresh.overdue";
    pub const EXPIRY_REMAINING: &str = "iam_token.expiry.remaining";
    pub const CALL_DURATION: &str = "rpc.client.call.duration";
    pub const CALLS: &str = "token_agent.calls";
    pub const LOG_LINES: &str = "tokenwatch.log.lines";
    pub const CONNECT_ERRORS: &str = "token_agent.connect.errors";
    pub const EBPF_EVENTS_LOST: &str = "tokenwatch.ebpf.events.lost";
    pub const CONNECT_SPAN: &str = "token_agent.connect";
}

pub struct Signals {
    tracer: Option<SdkTracer>,
    log_lines: Counter<u64>,
    connect_errors: Counter<u64>,
    calls: Counter<u64>,
    duration: Histogram<f64>,
    socket: String,
    /// The latest client-side call span per pid, to parent the access log's server span.
    client_spans: Mutex<HashMap<u32, (SystemTime, SpanContext)>>,
    /// `rpc.method` metric values: any local client can send any path, and
    /// each new one would be a new series on every backend.
    methods: BoundedLabels,
}

/// A label's values, the first `MAX` distinct ones as they are, any later
/// one as `other`.
#[derive(Default)]
struct BoundedLabels(Mutex<std::collections::HashSet<String>>);

impl BoundedLabels {
    const MAX: usize = 32;

    fn label(&self, value: &str) -> String {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(value) || seen.len() < Self::MAX {
            seen.insert(value.to_owned());
            return value.to_owned();
        }
        "other".to_owned()
    }
}

impl Signals {
    pub fn new(t: &Telemetry, socket: &str, latest: SharedSnapshot) -> Self {
        let meter = t.meter_provider.meter("tokenwatch");
        super::gauges::register(&meter, latest);
        Self {
            tracer: t.tracer_provider.as_ref().map(|p| p.tracer("tokenwatch")),
            connect_errors: meter
                .u64_counter(names::CONNECT_ERRORS)
                .with_description("Failed connect() calls to token-agent's socket, by errno")
                .build(),
            log_lines: meter
                .u64_counter(names::LOG_LINES)
                .with_description("Lines read from token-agent's logs, by file and parse result")
                .build(),
            calls: meter
                .u64_counter(names::CALLS)
                .with_description("Calls to token-agent, by gRPC status and by the source that saw them")
                .build(),
            duration: meter
                .f64_histogram(names::CALL_DURATION)
                .with_unit("s")
                .with_description("Duration of calls to token-agent")
                .with_boundaries(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
                .build(),
            socket: socket.to_string(),
            client_spans: Mutex::new(HashMap::new()),
            methods: BoundedLabels::default(),
        }
    }

    /// The `tokenwatch.log.lines` counter, for the log sources.
    pub fn log_lines(&self) -> Counter<u64> {
        self.log_lines.clone()
    }

    /// Records what one event says. Called by the state task after `apply`.
    pub fn record(&self, event: &Event) {
        match event {
            Event::Connect(c) => self.record_connect(c),
            Event::Call(c) => self.record_call(c),
            Event::AgentError(_) | Event::ProcessExit { .. } | Event::LogPosition(_) => {}
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

impl Signals {
    fn record_call(&self, c: &CallObserved) {
        // not "UNKNOWN": that is gRPC code 2, a real answer
        let status = crate::state::status_label(c.status);
        // a code outside gRPC's 0..=16 is any number a peer sent: one label for all
        let status_metric =
            if c.status.is_some_and(|s| !s.is_standard()) { "CODE_OTHER".to_string() } else { status.clone() };
        let client = KeyValue::new("client", c.process.client().to_string());
        let process = KeyValue::new("process", c.process.name().to_string());
        self.calls.add(
            1,
            &[KeyValue::new("status", status_metric.clone()), KeyValue::new("source", c.source.as_str()), client.clone(), process.clone()],
        );
        let method = c.method.clone().unwrap_or_else(|| "unknown".into());
        if let (Some(d), CallSource::Ebpf) = (c.duration, c.source) {
            self.duration.record(
                d.as_secs_f64(),
                &[
                    KeyValue::new("rpc.method", self.methods.label(method.trim_start_matches('/'))),
                    KeyValue::new("rpc.response.status_code", status_metric),
                    client,
                    process,
                ],
            );
        }
        let Some(tracer) = &self.tracer else { return };
        let name = method.trim_start_matches('/').to_string();
        let start = c.at.checked_sub(c.duration.unwrap_or_default()).unwrap_or(c.at);
        let mut attrs = vec![
            KeyValue::new("rpc.system.name", "grpc"),
            KeyValue::new("rpc.method", name.clone()),
            KeyValue::new("rpc.response.status_code", status.clone()),
            KeyValue::new("network.transport", "unix"),
            KeyValue::new("server.address", self.socket.clone()),
            KeyValue::new("tokenwatch.client", c.process.client().to_string()),
            KeyValue::new("tokenwatch.source", c.source.as_str()),
        ];
        if c.process.pid != 0 {
            attrs.push(KeyValue::new("process.pid", i64::from(c.process.pid)));
            attrs.push(KeyValue::new("process.executable.name", c.process.name().to_string()));
        }
        if let Some(e) = c.expires_at {
            attrs.push(KeyValue::new("iam_token.expires_at", crate::state::format_rfc3339(e)));
        }
        if let Some(id) = &c.request_id {
            attrs.push(KeyValue::new("rpc.request.id", id.clone()));
        }
        let failed = !c.status.is_some_and(|s| s.is_ok());
        if failed {
            attrs.push(KeyValue::new("error.type", status.clone()));
        }
        let (kind, parent) = match c.source {
            CallSource::Ebpf => (SpanKind::Client, None),
            CallSource::AccessLog => (SpanKind::Server, self.parent_for(c.process.pid, c.at)),
        };
        let builder = tracer.span_builder(name).with_kind(kind).with_start_time(start).with_attributes(attrs);
        let mut span = match parent {
            Some(p) => builder.start_with_context(tracer, &Context::new().with_remote_span_context(p)),
            None => builder.start(tracer),
        };
        if failed {
            let why = c.error.clone().unwrap_or_else(|| status.clone());
            span.set_status(Status::error(why));
        }
        if c.source == CallSource::Ebpf && c.process.pid != 0 {
            let mut spans = self.client_spans.lock().unwrap_or_else(|p| p.into_inner());
            if spans.len() > 4096 {
                spans.clear();
            }
            spans.insert(c.process.pid, (c.at, span.span_context().clone()));
        }
        span.end_with_timestamp(c.at);
    }

    /// The client span of the same pid that ended within a second of `at`.
    fn parent_for(&self, pid: u32, at: SystemTime) -> Option<SpanContext> {
        let spans = self.client_spans.lock().unwrap_or_else(|p| p.into_inner());
        let (t, ctx) = spans.get(&pid)?;
        let d = if *t > at { t.duration_since(at) } else { at.duration_since(*t) }.ok()?;
        (d <= Duration::from_secs(1)).then(|| ctx.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_bounded() {
        let l = BoundedLabels::default();
        for i in 0..BoundedLabels::MAX {
            assert_eq!(l.label(&format!("m{i}")), format!("m{i}"));
        }
        assert_eq!(l.label("one/too/many"), "other");
        assert_eq!(l.label("m0"), "m0", "a value seen before keeps its label");
    }
}
