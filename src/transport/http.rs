//! Plain HTTP routes that are neither producer nor subscriber: `GET /health`,
//! `GET /metrics`, `GET /metrics/json` (the old server's debugging view), the
//! dashboard at `GET /`, and the answer for any other path.

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use super::{ApiError, AppState};
use crate::{config::LogStorage, hub::DEFAULT_STREAM, stream::Classes};

/// Subscribers connected now (sessions holding a slot).
fn subscribers(app: &AppState) -> usize {
    app.config.subscriber.max_subscribers - app.subscriber_slots.available_permits()
}

/// `GET /health`: status (`"healthy"`, the old server's word), counts, the default
/// stream's head, every stream, and the memory budget.
pub(super) async fn health(State(app): State<AppState>) -> Json<serde_json::Value> {
    let streams: Vec<_> = app
        .hub
        .streams()
        .iter()
        .map(|s| {
            let head = s.head();
            json!({
                "name": s.name(),
                "epoch": s.epoch(),
                "seq": head.seq,
                "step": head.step,
                "oscillators": head.oscillators,
                "subscribers": s.subscribers(),
                "retained": s.retained().1,
                "precision_classes_active": s.active_classes(),
                "memory_bytes": s.account().used(),
            })
        })
        .collect();
    let default = app
        .hub
        .stream(DEFAULT_STREAM)
        .map(|s| s.head())
        .unwrap_or_default();
    let subscribers = subscribers(&app);
    Json(json!({
        "status": "healthy",
        "version": env!("CARGO_PKG_VERSION"),
        "wire_format": app.config.wire_format.as_str(),
        "precision_classes": Classes::of(&app.config.stream).epsilons().collect::<Vec<_>>(),
        "default_epsilon": app.config.stream.tolerance.epsilon(),
        "summary_bins": app.config.stream.summary_bins,
        "websocket_clients": subscribers,
        "subscribers": subscribers,
        "producers": app.config.producer.max_producers - app.producer_slots.available_permits(),
        "last_seq": default.seq,
        "last_step": default.step,
        "uptime_seconds": app.started.elapsed().as_secs_f64(),
        "streams": streams,
        "memory": {
            "limit_bytes": app.hub.budget().limit(),
            "accounted_bytes": app.hub.budget().used(),
        },
        "bus": match &app.config.bus {
            None => json!({"kind": "none"}),
            Some(b) => json!({
                "kind": "nats",
                "log": "jetstream",
                "node": b.node_id,
                "connected": app.metrics.is_bus_connected(),
                "storage": match b.storage {
                    LogStorage::File => "file",
                    LogStorage::Memory => "memory",
                },
            }),
        },
    }))
}

/// `GET /metrics/json`: the old server's debugging view, with its three fields
/// (`ws_clients_current`, `wire_format`, `uptime_seconds`) and a few more. Served
/// whether or not metrics are collected: it reads the server's state, not the
/// instruments.
pub(super) async fn metrics_json(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "ws_clients_current": subscribers(&app),
        "wire_format": app.config.wire_format.as_str(),
        "uptime_seconds": app.started.elapsed().as_secs_f64(),
        "version": env!("CARGO_PKG_VERSION"),
        "producers": app.config.producer.max_producers - app.producer_slots.available_permits(),
        "streams": app.hub.streams().len(),
    }))
}

/// `GET /metrics`: Prometheus text format.
pub(super) async fn metrics(State(app): State<AppState>) -> Response {
    if !app.config.metrics {
        return ApiError::Unavailable("metrics are disabled (PCC_METRICS=false)".into())
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, app.metrics.content_type())],
        app.metrics.render(),
    )
        .into_response()
}

/// The dashboard page (`web/`, built into `web/dist` and committed), embedded in the
/// binary so the server needs nothing beside it.
const DASHBOARD_HTML: &str = include_str!("../../web/dist/index.html");
const DASHBOARD_JS: &str = include_str!("../../web/dist/app.js");
const DASHBOARD_CSS: &str = include_str!("../../web/dist/app.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Names are not hashed: revalidate on every load.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the live dashboard.
pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", DASHBOARD_HTML)
}

/// `GET /app.js`.
pub(super) async fn dashboard_js() -> Response {
    asset("text/javascript; charset=utf-8", DASHBOARD_JS)
}

/// `GET /app.css`.
pub(super) async fn dashboard_css() -> Response {
    asset("text/css; charset=utf-8", DASHBOARD_CSS)
}

/// Any other path.
pub(super) async fn not_found() -> ApiError {
    ApiError::NotFound
}
