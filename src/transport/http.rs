//! Plain HTTP routes: publishing a state, health, metrics, the index page; and
//! [`ApiError`], the one error type every route answers with.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, ConnectInfo, Path, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use super::{producer_authorized, AppState};
use crate::{
    codec::{self, DecodeError, Encoding},
    fanout::{HubError, Published, DEFAULT_STREAM},
    metrics::RejectReason,
    model::InvalidState,
};

/// Every error a route can answer with: a precise status and a JSON body
/// `{"ok":false,"error":"…","field":"…"}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No key or a wrong key.
    #[error("missing or invalid API key (send it as X-API-Key)")]
    Unauthorized,
    /// The browser origin is not in `ALLOWED_ORIGINS`.
    #[error("origin {0:?} is not allowed (ALLOWED_ORIGINS)")]
    Forbidden(String),
    /// The body is over the size limit.
    #[error("body is larger than the limit of {0} bytes (PCC_MAX_BODY_BYTES)")]
    PayloadTooLarge(usize),
    /// Over the producer rate limit.
    #[error("rate limited: more than {rate} states per second from this producer (PCC_PRODUCER_RATE_LIMIT)")]
    RateLimited {
        /// The limit.
        rate: u32,
        /// When to try again.
        retry_after: Duration,
    },
    /// Not JSON / protobuf at all, or a body that could not be read.
    #[error("{0}")]
    Malformed(String),
    /// A field is missing, of the wrong type or invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidState),
    /// A query parameter is invalid.
    #[error("{name}: {reason}")]
    BadParameter {
        /// The parameter.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A stream problem.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// A limit on connections is reached.
    #[error("{0}")]
    Unavailable(String),
    /// No such route.
    #[error("no such endpoint; see GET / for the list")]
    NotFound,
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Invalid(i) => ApiError::Invalid(i),
            m @ DecodeError::Malformed { .. } => ApiError::Malformed(m.to_string()),
        }
    }
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Malformed(_) | ApiError::BadParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Hub(HubError::InvalidStreamName(_)) => StatusCode::BAD_REQUEST,
            ApiError::Hub(HubError::TooManyStreams(_)) | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Hub(HubError::UnknownStream(_)) | ApiError::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// The field or parameter at fault, if one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::Invalid(i) => Some(&i.field),
            ApiError::BadParameter { name, .. } => Some(name),
            ApiError::Hub(HubError::InvalidStreamName(_) | HubError::UnknownStream(_)) => {
                Some("stream")
            }
            _ => None,
        }
    }

    /// How this error counts among rejected producer inputs.
    pub fn reject_reason(&self) -> Option<RejectReason> {
        Some(match self {
            ApiError::Unauthorized => RejectReason::Unauthorized,
            ApiError::PayloadTooLarge(_) => RejectReason::TooLarge,
            ApiError::RateLimited { .. } => RejectReason::RateLimited,
            ApiError::Malformed(_) => RejectReason::Malformed,
            ApiError::Invalid(_) | ApiError::Hub(HubError::InvalidStreamName(_)) => {
                RejectReason::Invalid
            }
            ApiError::Hub(HubError::TooManyStreams(_)) => RejectReason::StreamLimit,
            _ => return None,
        })
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({"ok": false, "error": self.to_string()});
        if let Some(f) = self.field() {
            body["field"] = f.into();
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        if let ApiError::RateLimited { retry_after, .. } = &self {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Decodes, validates and publishes one producer state; shared by the HTTP routes
/// and the producer WebSocket.
pub(super) fn ingest_state(
    app: &AppState,
    stream: &str,
    encoding: Encoding,
    body: &[u8],
) -> Result<(Published, u64), ApiError> {
    let started = Instant::now();
    let state = codec::decode_state(encoding, body)?;
    state.validate(&app.config.producer.limits)?;
    let step = state.step;
    let published = app.hub.publish(stream, state)?;
    app.metrics.state_received(started.elapsed());
    Ok((published, step))
}

/// The encoding of a request body, from its content type (JSON unless it says protobuf).
fn body_encoding(headers: &HeaderMap) -> Encoding {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ct = ct.split(';').next().unwrap_or("").trim();
    if ct.eq_ignore_ascii_case("application/x-protobuf")
        || ct.eq_ignore_ascii_case("application/protobuf")
        || ct.eq_ignore_ascii_case("application/vnd.google.protobuf")
    {
        Encoding::Protobuf
    } else {
        Encoding::Json
    }
}

async fn publish(
    app: AppState,
    peer: SocketAddr,
    stream: &str,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let result = (|| {
        if !producer_authorized(&app.config, &headers) {
            return Err(ApiError::Unauthorized);
        }
        app.http_rate
            .check(peer.ip())
            .map_err(|retry_after| ApiError::RateLimited {
                rate: app.http_rate.rate(),
                retry_after,
            })?;
        let body = body.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(app.config.producer.max_body_bytes)
            } else {
                ApiError::Malformed(format!("could not read the body: {r}"))
            }
        })?;
        ingest_state(&app, stream, body_encoding(&headers), &body)
    })();
    match result {
        Ok((published, step)) => Json(json!({
            "ok": true,
            "seq": published.seq,
            "step": step,
            "clients": published.subscribers,
            "processing_time_ms": started.elapsed().as_secs_f64() * 1000.0,
        }))
        .into_response(),
        Err(e) => {
            if let Some(reason) = e.reject_reason() {
                app.metrics.input_rejected(reason);
            }
            e.into_response()
        }
    }
}

/// `POST /pcc_state`: the old API, onto the default stream.
pub(super) async fn publish_default(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    publish(app, peer, DEFAULT_STREAM, headers, body).await
}

/// `POST /streams/{name}/state`.
pub(super) async fn publish_named(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    publish(app, peer, &name, headers, body).await
}

/// `GET /health`: status, counts, the default stream's head, and every stream.
pub(super) async fn health(State(app): State<AppState>) -> Json<serde_json::Value> {
    let streams: Vec<_> = app
        .hub
        .streams()
        .iter()
        .map(|s| {
            let head = s.head();
            json!({
                "name": s.name(),
                "seq": head.seq,
                "step": head.step,
                "oscillators": head.oscillators,
                "subscribers": s.subscribers(),
            })
        })
        .collect();
    let default = app
        .hub
        .stream(DEFAULT_STREAM)
        .map(|s| s.head())
        .unwrap_or(crate::stream::Head {
            seq: 0,
            step: 0,
            oscillators: 0,
        });
    let subscribers =
        app.config.subscriber.max_subscribers - app.subscriber_slots.available_permits();
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "wire_format": app.config.wire_format.as_str(),
        "websocket_clients": subscribers,
        "subscribers": subscribers,
        "producers": app.config.producer.max_producers - app.producer_slots.available_permits(),
        "last_seq": default.seq,
        "last_step": default.step,
        "uptime_seconds": app.started.elapsed().as_secs_f64(),
        "streams": streams,
        "bus": match &app.config.bus {
            None => json!({"kind": "none"}),
            Some(b) => json!({"kind": "nats", "node": b.node_id, "connected": app.metrics.is_bus_connected()}),
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_fields() {
        let e = ApiError::from(DecodeError::Invalid(InvalidState::new("phases[2]", "bad")));
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.body()["field"], "phases[2]");
        assert_eq!(e.body()["ok"], false);
        assert_eq!(ApiError::Unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            ApiError::Hub(HubError::TooManyStreams(3)).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let limited = ApiError::RateLimited {
            rate: 5,
            retry_after: Duration::from_millis(200),
        }
        .into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn content_type_picks_the_body_encoding() {
        let mut h = HeaderMap::new();
        assert_eq!(body_encoding(&h), Encoding::Json);
        h.insert(
            header::CONTENT_TYPE,
            "application/x-protobuf".parse().unwrap(),
        );
        assert_eq!(body_encoding(&h), Encoding::Protobuf);
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(body_encoding(&h), Encoding::Json);
    }
}
