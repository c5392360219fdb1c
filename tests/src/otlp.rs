//! A real OTLP receiver for tests: gRPC (tonic, on opentelemetry-proto's
//! generated server) and http/protobuf (axum + prost), on loopback. It keeps
//! every span and metric data point it receives, plus the raw request bytes
//! (so a test can prove a secret never left the agent).
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{bail, Result};
use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{
            metrics_service_server::{MetricsService, MetricsServiceServer},
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        },
        trace::v1::{
            trace_service_server::{TraceService, TraceServiceServer},
            ExportTraceServiceRequest, ExportTraceServiceResponse,
        },
    },
    common::v1::{any_value::Value as AnyValue, KeyValue},
    metrics::v1::{metric::Data, number_data_point::Value as NumValue},
};
use prost::Message;
use tokio::sync::Notify;
use tonic::codec::CompressionEncoding;

/// One received span, flattened for assertions.
#[derive(Debug, Clone)]
pub struct Span {
    pub name: String,
    /// OTLP SpanKind number (3 = CLIENT, 2 = SERVER).
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
    pub resource: BTreeMap<String, String>,
    /// OTLP status code (0 unset, 1 ok, 2 error) and message.
    pub status: (i32, String),
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

/// One received metric data point (sums and gauges as f64; histograms as their count).
#[derive(Debug, Clone)]
pub struct Point {
    pub metric: String,
    pub attributes: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Default)]
struct Store {
    spans: Mutex<Vec<Span>>,
    points: Mutex<Vec<Point>>,
    raw: Mutex<Vec<u8>>,
    changed: Notify,
}

pub struct Receiver {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    store: Arc<Store>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect()
}

impl Store {
    fn add_traces(&self, req: ExportTraceServiceRequest) {
        self.raw.lock().unwrap().extend(req.encode_to_vec());
        let mut spans = self.spans.lock().unwrap();
        for rs in req.resource_spans {
            let resource = attrs(&rs.resource.map(|r| r.attributes).unwrap_or_default());
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let status = s.status.map(|st| (st.code, st.message)).unwrap_or_default();
                    spans.push(Span {
                        name: s.name,
                        kind: s.kind,
                        attributes: attrs(&s.attributes),
                        resource: resource.clone(),
                        status,
                        start_unix_nano: s.start_time_unix_nano,
                        end_unix_nano: s.end_time_unix_nano,
                    });
                }
            }
        }
        drop(spans);
        self.changed.notify_waiters();
    }

    fn add_metrics(&self, req: ExportMetricsServiceRequest) {
        self.raw.lock().unwrap().extend(req.encode_to_vec());
        let mut points = self.points.lock().unwrap();
        for rm in req.resource_metrics {
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    let mut push = |a: &[KeyValue], value: f64| {
                        points.push(Point { metric: m.name.clone(), attributes: attrs(a), value })
                    };
                    let num = |v: &Option<NumValue>| match v {
                        Some(NumValue::AsDouble(d)) => *d,
                        Some(NumValue::AsInt(i)) => *i as f64,
                        None => f64::NAN,
                    };
                    match &m.data {
                        Some(Data::Sum(s)) => s.data_points.iter().for_each(|p| push(&p.attributes, num(&p.value))),
                        Some(Data::Gauge(g)) => g.data_points.iter().for_each(|p| push(&p.attributes, num(&p.value))),
                        Some(Data::Histogram(h)) => h.data_points.iter().for_each(|p| push(&p.attributes, p.count as f64)),
                        _ => {}
                    }
                }
            }
        }
        drop(points);
        self.changed.notify_waiters();
    }
}

struct Grpc(Arc<Store>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add_traces(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.add_metrics(req.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

async fn http_traces(
    axum::extract::State(store): axum::extract::State<Arc<Store>>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    match ExportTraceServiceRequest::decode(body) {
        Ok(req) => {
            store.add_traces(req);
            axum::http::StatusCode::OK
        }
        Err(_) => axum::http::StatusCode::BAD_REQUEST,
    }
}

async fn http_metrics(
    axum::extract::State(store): axum::extract::State<Arc<Store>>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    match ExportMetricsServiceRequest::decode(body) {
        Ok(req) => {
            store.add_metrics(req);
            axum::http::StatusCode::OK
        }
        Err(_) => axum::http::StatusCode::BAD_REQUEST,
    }
}

impl Receiver {
    /// Starts both listeners on ephemeral loopback ports.
    pub async fn start() -> Result<Self> {
        let store = Arc::new(Store::default());
        let grpc_l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let http_l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let (grpc, http) = (grpc_l.local_addr()?, http_l.local_addr()?);
        let svc = Arc::new(Grpc(store.clone()));
        let grpc_task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                // collectors (rotel) send gzip by default
                .add_service(TraceServiceServer::from_arc(svc.clone()).accept_compressed(CompressionEncoding::Gzip))
                .add_service(MetricsServiceServer::from_arc(svc).accept_compressed(CompressionEncoding::Gzip))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(grpc_l))
                .await;
        });
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(http_traces))
            .route("/v1/metrics", axum::routing::post(http_metrics))
            .with_state(store.clone());
        let http_task = tokio::spawn(async move {
            let _ = axum::serve(http_l, app).await;
        });
        Ok(Self { grpc, http, store, tasks: vec![grpc_task, http_task] })
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn spans(&self) -> Vec<Span> {
        self.store.spans.lock().unwrap().clone()
    }

    pub fn points(&self) -> Vec<Point> {
        self.store.points.lock().unwrap().clone()
    }

    /// Every byte of every request received so far (re-encoded protobuf).
    pub fn raw(&self) -> Vec<u8> {
        self.store.raw.lock().unwrap().clone()
    }

    /// Waits until a received span satisfies `pred`.
    pub async fn wait_span(&self, what: &str, timeout: Duration, pred: impl Fn(&Span) -> bool) -> Result<Span> {
        self.wait(what, timeout, || self.spans().into_iter().find(|s| pred(s))).await
    }

    /// Waits until a received data point satisfies `pred`.
    pub async fn wait_point(&self, what: &str, timeout: Duration, pred: impl Fn(&Point) -> bool) -> Result<Point> {
        self.wait(what, timeout, || self.points().into_iter().rev().find(|p| pred(p))).await
    }

    /// Waits until more than `seen` data points have arrived in all.
    pub async fn wait_more_points(&self, what: &str, timeout: Duration, seen: usize) -> Result<usize> {
        self.wait(what, timeout, || Some(self.points().len()).filter(|n| *n > seen)).await
    }

    async fn wait<T>(&self, what: &str, timeout: Duration, find: impl Fn() -> Option<T>) -> Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.store.changed.notified();
            if let Some(t) = find() {
                return Ok(t);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                bail!("no {what} received within {timeout:?}");
            }
        }
    }
}
