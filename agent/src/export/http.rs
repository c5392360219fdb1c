//! `/metrics` (Prometheus text), `/status` (JSON per INTERFACE.md), `/healthz`.
use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    routing::get,
    Router,
};
use prometheus::{Encoder, TextEncoder};

use super::signals::SharedSnapshot;

#[derive(Clone)]
struct Ctx {
    registry: prometheus::Registry,
    latest: SharedSnapshot,
}

pub fn router(registry: prometheus::Registry, latest: SharedSnapshot) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(Ctx { registry, latest })
}

/// Binds `listen` (so a bad address or a port in use is reported before the agent starts).
pub async fn bind(listen: &str) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await
}

pub async fn serve(listener: tokio::net::TcpListener, router: Router) {
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!("HTTP endpoints stopped: {e}");
    }
}

async fn metrics(State(ctx): State<Ctx>) -> impl IntoResponse {
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&ctx.registry.gather(), &mut buf) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}\n")).into_response(),
    }
}

async fn status(State(ctx): State<Ctx>) -> impl IntoResponse {
    let guard = ctx.latest.read().unwrap_or_else(|p| p.into_inner());
    match guard.as_ref() {
        Some(s) => axum::Json(s.clone()).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no evaluation yet\n").into_response(),
    }
}
