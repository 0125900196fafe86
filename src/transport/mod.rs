//! HTTP and WebSocket endpoints, by role: the [`router`] and the state its handlers
//! share.
//!
//! - `producer`: `POST /pcc_state`, `POST /streams/{name}/state` and the producer
//!   WebSocket `GET /ingest`.
//! - `subscriber`: `GET /ws`: negotiation, then one session per socket.
//! - `peer`: what both socket kinds share: keep-alive, the message budget, shutdown,
//!   read errors and the close handshake.
//! - `access`: keys and origins. `error`: [`ApiError`], every route's error answer.
//! - `http`: `GET /health`, `GET /metrics`, `GET /metrics/json`, the dashboard at
//!   `GET /`.
//! - `cors`: the CORS answers every route gets (as the old server's middleware).
//! - `listen`: the accept loop (connection rate, handshake deadline, TLS); `limit`:
//!   token buckets.
//! - `client_addr`: who sent a request ([`ClientAddr`]): the TCP peer, or the client a
//!   trusted proxy names (`PCC_TRUSTED_PROXIES`).

mod access;
mod client_addr;
mod error;
mod http;
mod limit;
mod listen;
mod peer;
mod producer;
mod subscriber;
mod upgrade;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::DefaultBodyLimit,
    http::{header, HeaderValue, Method},
    routing::{get, post},
    Router,
};
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

use crate::{
    config::Config,
    fanout::{Dispatch, FanoutRuntime},
    hub::Hub,
    metrics::Metrics,
};

pub use client_addr::{ClientAddr, TrustedProxies};
pub use error::ApiError;
pub use limit::RateLimiter;
pub use listen::{tls_acceptor, Listen};
pub use subscriber::{parse_subscription, Subscription};

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
    /// Moves each new state to the subscribers of its stream.
    pub dispatch: Arc<Dispatch>,
    /// Where dispatch and subscriber sessions run.
    pub fanout: Arc<FanoutRuntime>,
}

impl AppState {
    /// Shared state for a server with `config`.
    pub fn new(
        hub: Arc<Hub>,
        config: Arc<Config>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        fanout: Arc<FanoutRuntime>,
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
            dispatch: Arc::new(Dispatch::new(fanout.handle().clone())),
            fanout,
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
        .route("/metrics/json", get(http::metrics_json))
        .route("/pcc_state", post(producer::publish_default))
        .route("/streams/{name}/state", post(producer::publish_named))
        .route("/ws", get(subscriber::subscribe))
        .route("/ingest", get(producer::connect))
        .fallback(http::not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(cors(state.config.subscriber.allowed_origins.as_deref()))
        .with_state(state)
}

/// The CORS answers of the old server's middleware (Starlette's `CORSMiddleware` with
/// `allow_origins=ALLOWED_ORIGINS`, `allow_credentials=True`, every method and header),
/// so a page on another origin (a dev server, a dashboard host) may `POST /pcc_state`
/// and read `/health`:
///
/// - `Access-Control-Allow-Origin` is the request's origin when it is allowed: any
///   origin when `ALLOWED_ORIGINS` is unset or `*` (a literal `*` is not allowed with
///   credentials, so the origin is mirrored, as Starlette does), else the listed ones;
///   an origin not allowed gets no CORS header, so the browser keeps the answer from it.
/// - `Access-Control-Allow-Credentials: true`.
/// - A preflight (`OPTIONS`) is answered at once: every method, the headers asked for,
///   cached for 600 s.
/// - `Retry-After` is readable by the page (a 429's hint).
fn cors(allowed_origins: Option<&[String]>) -> CorsLayer {
    let origins = match allowed_origins {
        None => AllowOrigin::mirror_request(),
        Some(list) => AllowOrigin::list(
            list.iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        ),
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_credentials(true)
        // Starlette's list for allow_methods=["*"].
        .allow_methods(AllowMethods::list([
            Method::DELETE,
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PATCH,
            Method::POST,
            Method::PUT,
        ]))
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}
