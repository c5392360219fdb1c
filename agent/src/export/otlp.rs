//! The OpenTelemetry pipeline: resource, OTLP exporters (gRPC or
//! http/protobuf) and the Prometheus registry behind `/metrics`.
//!
//! The SDK's batch span processor and periodic reader run on their own
//! threads with bounded queues, so a slow or dead backend never blocks the
//! agent. Shut down only from a multi-thread runtime (tonic exporter).
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{metrics::SdkMeterProvider, trace::SdkTracerProvider, Resource};

use crate::config::Config;

/// Where (and whether) OTLP goes, resolved from config and the OTEL_* environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtlpTarget {
    Off(&'static str),
    /// `endpoint` None → the exporter reads `OTEL_EXPORTER_OTLP_*_ENDPOINT` itself.
    On { protocol: Proto, endpoint: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Grpc,
    HttpProtobuf,
}

/// Resolves the OTLP target; `env` is injected so tests need not touch the process environment.
pub fn resolve(cfg: &Config, env: impl Fn(&str) -> Option<String>) -> OtlpTarget {
    let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return OtlpTarget::Off("OTEL_SDK_DISABLED=true");
    }
    let endpoint = Some(cfg.export.otlp_endpoint.clone()).filter(|e| !e.is_empty());
    let from_env = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"]
        .iter()
        .any(|k| var(k).is_some());
    if endpoint.is_none() && !from_env {
        return OtlpTarget::Off("no export.otlp_endpoint and no OTEL_EXPORTER_OTLP_ENDPOINT");
    }
    let proto = Some(cfg.export.otlp_protocol.clone())
        .filter(|p| !p.is_empty())
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
    let protocol = match proto.as_deref().map(str::trim) {
        Some("grpc") => Proto::Grpc,
        _ => Proto::HttpProtobuf,
    };
    OtlpTarget::On { protocol, endpoint }
}

/// `service.name=tokenwatch` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` say otherwise;
/// `host.name`; the rest of `OTEL_RESOURCE_ATTRIBUTES`.
pub fn resource() -> Resource {
    let mut b = Resource::builder();
    let named_by_env = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    if !named_by_env {
        b = b.with_service_name("tokenwatch");
    }
    if let Some(host) = hostname() {
        b = b.with_attribute(KeyValue::new("host.name", host));
    }
    b.with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))).build()
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty())
}

/// The running pipeline.
pub struct Telemetry {
    pub tracer_provider: Option<SdkTracerProvider>,
    pub meter_provider: SdkMeterProvider,
    /// What `/metrics` serves.
    pub registry: prometheus::Registry,
    pub target: OtlpTarget,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("Prometheus exporter: {0}")]
    Prometheus(String),
}

impl Telemetry {
    /// Builds the pipeline. Must run inside a multi-thread tokio runtime.
    pub fn init(cfg: &Config) -> Result<Self, TelemetryError> {
        let target = resolve(cfg, |k| std::env::var(k).ok());
        let resource = resource();
        let registry = prometheus::Registry::new();
        let prom = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .build()
            .map_err(|e| TelemetryError::Prometheus(e.to_string()))?;
        let mut meters = SdkMeterProvider::builder().with_resource(resource.clone()).with_reader(prom);
        let mut tracer_provider = None;
        if let OtlpTarget::On { protocol, endpoint } = &target {
            let (spans, metrics) = exporters(*protocol, endpoint.as_deref())?;
            tracer_provider =
                Some(SdkTracerProvider::builder().with_resource(resource).with_batch_exporter(spans).build());
            let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(metrics)
                .with_interval(cfg.export.interval)
                .build();
            meters = meters.with_reader(reader);
        }
        Ok(Self { tracer_provider, meter_provider: meters.build(), registry, target })
    }

    /// Flushes and stops the exporters, giving up after `timeout`.
    /// Runs on a blocking thread: the SDK's shutdown blocks.
    pub async fn shutdown(self, timeout: Duration) {
        let work = tokio::task::spawn_blocking(move || {
            if let Some(t) = &self.tracer_provider {
                if let Err(e) = t.shutdown() {
                    tracing::warn!("flushing spans at shutdown: {e}");
                }
            }
            if let Err(e) = self.meter_provider.shutdown() {
                tracing::warn!("flushing metrics at shutdown: {e}");
            }
        });
        if tokio::time::timeout(timeout, work).await.is_err() {
            tracing::warn!("telemetry flush did not finish within {timeout:?}; exiting anyway");
        }
    }
}

type Exporters = (opentelemetry_otlp::SpanExporter, opentelemetry_otlp::MetricExporter);

fn exporters(protocol: Proto, endpoint: Option<&str>) -> Result<Exporters, TelemetryError> {
    use opentelemetry_otlp::{MetricExporter, SpanExporter};
    Ok(match protocol {
        Proto::Grpc => {
            let mut s = SpanExporter::builder().with_tonic();
            let mut m = MetricExporter::builder().with_tonic();
            if let Some(e) = endpoint {
                s = s.with_endpoint(e);
                m = m.with_endpoint(e);
            }
            (s.build()?, m.build()?)
        }
        Proto::HttpProtobuf => {
            let mut s = SpanExporter::builder().with_http().with_protocol(Protocol::HttpBinary);
            let mut m = MetricExporter::builder().with_http().with_protocol(Protocol::HttpBinary);
            // A configured endpoint is a base URL, like OTEL_EXPORTER_OTLP_ENDPOINT:
            // the signal paths are appended (the builder would take it as-is).
            if let Some(e) = endpoint {
                let base = e.trim_end_matches('/');
                s = s.with_endpoint(format!("{base}/v1/traces"));
                m = m.with_endpoint(format!("{base}/v1/metrics"));
            }
            (s.build()?, m.build()?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn off_without_any_endpoint() {
        assert!(matches!(resolve(&Config::default(), env(&[])), OtlpTarget::Off(_)));
    }

    #[test]
    fn env_endpoint_defaults_to_http_protobuf() {
        let t = resolve(&Config::default(), env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]));
        assert_eq!(t, OtlpTarget::On { protocol: Proto::HttpProtobuf, endpoint: None });
        let t = resolve(
            &Config::default(),
            env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
        );
        assert_eq!(t, OtlpTarget::On { protocol: Proto::Grpc, endpoint: None });
    }

    #[test]
    fn config_wins_over_env_and_sdk_disabled_wins_over_all() {
        let mut c = Config::default();
        c.export.otlp_endpoint = "http://127.0.0.1:4317".into();
        c.export.otlp_protocol = "grpc".into();
        let t = resolve(&c, env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]));
        assert_eq!(t, OtlpTarget::On { protocol: Proto::Grpc, endpoint: Some("http://127.0.0.1:4317".into()) });
        assert!(matches!(resolve(&c, env(&[("OTEL_SDK_DISABLED", "TRUE")])), OtlpTarget::Off(_)));
    }
}
