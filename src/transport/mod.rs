//! HTTP and WebSocket endpoints: the [`router`], the state its handlers share, and
//! the checks every endpoint applies (keys, origins).
//!
//! - `http`: `POST /pcc_state`, `POST /streams/{name}/state`, `GET /health`,
//!   `GET /metrics`, and the dashboard at `GET /`.
//! - `ws`: `GET /ws`, one subscriber session per socket.
//! - `ingest`: `GET /ingest`, one producer session per socket.
//! - `listen`: the accept loop (connection rate, handshake deadline, TLS).

mod http;
mod ingest;
mod limit;
mod listen;
mod liveness;
mod ws;

use std::{sync::Arc, time::Instant};

use axum::{
    extract::DefaultBodyLimit,
    http::{header, HeaderMap},
    routing::{get, post},
    Router,
};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{config::Config, fanout::Hub, metrics::Metrics};

pub use http::ApiError;
pub use limit::RateLimiter;
pub use listen::{tls_acceptor, Listen};
pub use ws::{parse_subscription, Subscription};

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The streams.
    pub hub: Arc<Hub>,
    /// Instruments.
    pub metrics: Arc<Metrics>,
    /// The whole configuration (each handler reads its own part).
    pub config: Arc<Config>,
    /// Cancelled when the server shuts down: every session watches it.
    pub shutdown: CancellationToken,
    /// Every session runs on it, so shutdown can wait for them to close.
    pub tracker: TaskTracker,
    /// Subscriber slots: a session holds a permit for its whole life.
    pub subscriber_slots: Arc<Semaphore>,
    /// Producer WebSocket slots.
    pub producer_slots: Arc<Semaphore>,
    /// Per-client-IP limiter for `POST` states.
    pub http_rate: Arc<RateLimiter>,
    /// When the server started, for `/health`.
    pub started: Instant,
}

impl AppState {
    /// Shared state for a server with `config`.
    pub fn new(
        hub: Arc<Hub>,
        config: Arc<Config>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> AppState {
        AppState {
            metrics: hub.metrics().clone(),
            subscriber_slots: Arc::new(Semaphore::new(config.subscriber.max_subscribers)),
            producer_slots: Arc::new(Semaphore::new(config.producer.max_producers)),
            http_rate: Arc::new(RateLimiter::new(config.producer.rate_limit)),
            hub,
            config,
            shutdown,
            tracker,
            started: Instant::now(),
        }
    }
}

/// Every route.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.producer.max_body_bytes;
    Router::new()
        .route("/", get(http::index))
        .route("/index.html", get(http::index))
        .route("/app.js", get(http::dashboard_js))
        .route("/app.css", get(http::dashboard_css))
        .route("/health", get(http::health))
        .route("/metrics", get(http::metrics))
        .route("/pcc_state", post(http::publish_default))
        .route("/streams/{name}/state", post(http::publish_named))
        .route("/ws", get(ws::subscribe))
        .route("/ingest", get(ingest::connect))
        .fallback(http::not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// The key a request presents: `X-API-Key`, or `Authorization: Bearer`.
fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get("x-api-key") {
        return Some(v.as_bytes());
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
}

/// Compares a presented key with the expected one in constant time (for keys of the
/// same length; the length itself is not secret).
fn key_matches(expected: &str, presented: Option<&[u8]>) -> bool {
    presented.is_some_and(|p| bool::from(expected.as_bytes().ct_eq(p)))
}

/// True when the producer key is not required or the request presents it.
fn producer_authorized(config: &Config, headers: &HeaderMap) -> bool {
    match &config.producer.api_key {
        None => true,
        Some(key) => key_matches(key, presented_key(headers)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_from_either_header_and_compared_exactly() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert_eq!(presented_key(&h), Some(&b"s3cret"[..]));
        h.insert("x-api-key", "other".parse().unwrap());
        assert_eq!(presented_key(&h), Some(&b"other"[..]));
        assert!(key_matches("other", presented_key(&h)));
        assert!(!key_matches("othe", presented_key(&h)));
        assert!(!key_matches("other2", presented_key(&h)));
        assert!(!key_matches("other", None));
    }
}
