//! Exports: OTLP spans and metrics, and the HTTP endpoints (`/metrics`, `/status`, `/healthz`).
pub mod http;
pub mod otlp;
pub mod signals;
