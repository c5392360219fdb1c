//! Exports: OTLP spans and metrics, and the HTTP endpoints (`/metrics`, `/status`, `/healthz`).
mod gauges;
pub mod http;
pub mod otlp;
pub mod signals;
