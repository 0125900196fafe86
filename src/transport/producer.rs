//! The producer path: `POST /pcc_state` (the old API), `POST /streams/{name}/state`
//! and the producer WebSocket `GET /ingest`. Each state is checked (key, rate, size),
//! decoded, validated and published on its stream; the answer never waits on a
//! subscriber. On `/ingest` accepted states get no answer, rejected ones a JSON text
//! `{"ok":false,"error":…,"field":…,"step":…}`, and the connection stays open.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::{
    body::Bytes,
    extract::{
        rejection::{BytesRejection, QueryRejection},
        Path, Query, State,
    },
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Extension, Json,
};
use futures_util::{
    stream::{FuturesOrdered, StreamExt},
    SinkExt,
};
use serde::Deserialize;
use serde_json::json;
use tokio::{sync::OwnedSemaphorePermit, time::timeout};
use tokio_tungstenite::tungstenite::{protocol::WebSocketConfig, Message};
use tracing::info;

use super::{
    access::producer_authorized,
    client_addr::ClientAddr,
    limit::Bucket,
    peer::{Budget, Ending, Event, Peer},
    upgrade::{Io, Socket, Upgrade},
    ApiError, AppState,
};
use crate::{
    bus::LogError,
    codec::{self, Encoding},
    hub::{validate_stream_name, HubError, Published, Sending, DEFAULT_STREAM},
    metrics::RejectReason,
};

/// One accepted state: where it went and how long it took.
struct Accepted {
    published: Published,
    step: u64,
    /// From the request (or ingest message) being taken up to the state handed off to
    /// the fan-out: the reply's `processing_time_ms` and
    /// `mcp_pcc_message_processing_seconds`, as the old server measured them.
    processing: Duration,
}

/// States of one `/ingest` producer sent to the log and not yet confirmed, at most:
/// past it the producer's next message waits (and TCP slows the producer down).
const IN_FLIGHT: usize = 256;

/// Bodies larger than this are decoded and validated on tokio's blocking pool: a
/// 1.4 MB JSON state takes milliseconds of CPU, which must not hold up the runtime
/// worker that small states and subscribers share.
const DECODE_OFF_RUNTIME: usize = 64 << 10;

/// Decodes and validates one producer state; shared by the HTTP routes and the
/// producer WebSocket. A state without a timestamp gets the time it was accepted, as
/// the old server did.
async fn take_state(
    app: &AppState,
    encoding: Encoding,
    body: Bytes,
) -> Result<crate::model::State, ApiError> {
    let size = body.len();
    let limits = app.config.producer.limits;
    let decode = move || -> Result<_, ApiError> {
        let decoding = Instant::now();
        let state = codec::decode_state(encoding, &body)?;
        state.validate(&limits)?;
        Ok((state, decoding.elapsed()))
    };
    let (mut state, took) = if size > DECODE_OFF_RUNTIME {
        tokio::task::spawn_blocking(decode)
            .await
            .map_err(|e| ApiError::Malformed(format!("decoding failed: {e}")))??
    } else {
        decode()?
    };
    app.metrics.state_decoded(took);
    if state.timestamp.is_none() {
        state.timestamp = Some(unix_now());
    }
    Ok(state)
}

/// Decodes, validates and publishes one producer state (HTTP), `started` being when
/// its request was taken up.
async fn ingest_state(
    app: &AppState,
    stream: &str,
    encoding: Encoding,
    body: Bytes,
    started: Instant,
) -> Result<Accepted, ApiError> {
    let size = body.len();
    let state = take_state(app, encoding, body).await?;
    let step = state.step;
    let published = app.hub.publish(stream, state).await?;
    let processing = started.elapsed();
    app.metrics.state_received(processing);
    app.metrics.state_size(size);
    Ok(Accepted {
        published,
        step,
        processing,
    })
}

/// Now, in seconds since the Unix epoch (0 on a clock set before 1970).
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Milliseconds rounded to two decimals, as the old server's `round(ms, 2)`.
fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
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
    peer: ClientAddr,
    stream: &str,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let result = async {
        if !producer_authorized(app.config.producer.api_key.as_deref(), &headers) {
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
        ingest_state(&app, stream, body_encoding(&headers), body, started).await
    }
    .await;
    match result {
        Ok(accepted) => Json(json!({
            "ok": true,
            "seq": accepted.published.seq,
            "step": accepted.step,
            "clients": accepted.published.subscribers,
            "processing_time_ms": round_ms(accepted.processing),
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
    Extension(peer): Extension<ClientAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    publish(app, peer, DEFAULT_STREAM, headers, body).await
}

/// `POST /streams/{name}/state`.
pub(super) async fn publish_named(
    State(app): State<AppState>,
    Extension(peer): Extension<ClientAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    publish(app, peer, &name, headers, body).await
}

/// `/ingest` query parameters.
#[derive(Debug, Deserialize)]
pub(super) struct IngestQuery {
    stream: Option<String>,
}

/// `GET /ingest`: checks the key, the stream name and the producer limit, then upgrades.
pub(super) async fn connect(
    State(app): State<AppState>,
    Extension(peer): Extension<ClientAddr>,
    headers: HeaderMap,
    query: Result<Query<IngestQuery>, QueryRejection>,
    upgrade: Upgrade,
) -> Response {
    let prepared = (|| {
        if !producer_authorized(app.config.producer.api_key.as_deref(), &headers) {
            return Err(ApiError::Unauthorized);
        }
        let Query(query) = query.map_err(|e| ApiError::BadParameter {
            name: "query",
            reason: e.body_text(),
        })?;
        let stream = query.stream.unwrap_or_else(|| DEFAULT_STREAM.to_owned());
        validate_stream_name(&stream)?;
        let permit = app
            .producer_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                ApiError::Unavailable(format!(
                    "producer limit of {} reached (PCC_MAX_PRODUCERS)",
                    app.config.producer.max_producers
                ))
            })?;
        Ok((stream, permit))
    })();
    let (stream, permit) = match prepared {
        Ok(p) => p,
        Err(e) => {
            if let Some(reason) = e.reject_reason() {
                app.metrics.input_rejected(reason);
            }
            return e.into_response();
        }
    };
    let max = app.config.producer.max_body_bytes;
    let tracker = app.tracker.clone();
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    upgrade.on_upgrade(config, move |socket| {
        tracker.track_future(
            Producer {
                app,
                peer,
                stream,
                _permit: permit,
            }
            .run(socket),
        )
    })
}

/// One producer's connection.
struct Producer {
    app: AppState,
    /// Who connected (through a trusted proxy: the client it names), for the logs.
    peer: ClientAddr,
    stream: String,
    /// A producer slot, released when the connection ends.
    _permit: OwnedSemaphorePermit,
}

impl Producer {
    async fn run(self, socket: Socket) {
        info!(peer = %self.peer, stream = %self.stream, "producer connected");
        self.app.metrics.producer_connected(true);
        // Keep-alive: a producer silent (no state, no pong) for two intervals is closed,
        // so a dead peer does not hold a producer slot. States have their own rate
        // limit; pings and pongs count against the client message rate.
        let mut peer = Peer::new(
            socket,
            &self.app.config.connection,
            self.app.shutdown.clone(),
            self.app.config.subscriber.send_timeout,
            Budget::ControlOnly,
            "message too big: over PCC_MAX_BODY_BYTES",
        );
        let accepted = self.drive(&mut peer).await;
        self.app.metrics.producer_connected(false);
        info!(peer = %self.peer, stream = %self.stream, accepted, "producer disconnected");
    }

    /// Returns how many states were accepted. On a broker, a state is sent to the log
    /// as it arrives and its confirmation awaited beside the next ones (at most
    /// [`IN_FLIGHT`] at once), so the producer's rate is not one log round trip a
    /// state; a state the log does not confirm closes the producer with 1013.
    async fn drive(&self, peer: &mut Peer<Io>) -> u64 {
        let rate = self.app.config.producer.rate_limit;
        let mut bucket = Bucket::new(rate);
        let mut accepted = 0;
        let mut in_flight = FuturesOrdered::new();
        loop {
            let event = tokio::select! {
                biased;
                Some(confirmed) = in_flight.next(), if !in_flight.is_empty() => {
                    match confirmed {
                        Ok(_) => {
                            accepted += 1;
                            continue;
                        }
                        Err(e) => {
                            self.log_unavailable(peer, &e).await;
                            return accepted;
                        }
                    }
                }
                seen = peer.poll(), if in_flight.len() < IN_FLIGHT => peer.answer(seen).await,
            };
            let started = Instant::now();
            let (encoding, incoming) = match event {
                Event::Handled | Event::Probed(_) => continue,
                Event::Ended(ending) => {
                    if ending == Ending::TooBig {
                        self.app.metrics.input_rejected(RejectReason::TooLarge);
                    }
                    // What was sent before the end still gets its answer counted.
                    while let Some(confirmed) = in_flight.next().await {
                        accepted += u64::from(confirmed.is_ok());
                    }
                    return accepted;
                }
                Event::Data(Message::Text(t)) => (Encoding::Json, Bytes::from(t)),
                Event::Data(Message::Binary(b)) => (Encoding::Protobuf, b),
                Event::Data(_) => continue,
            };
            let result = if rate > 0 && bucket.take(rate, Instant::now()).is_err() {
                Err(ApiError::RateLimited {
                    rate,
                    retry_after: Default::default(),
                })
            } else {
                self.send(encoding, incoming.clone(), started).await
            };
            match result {
                Ok(Sending::Published(_)) => accepted += 1,
                Ok(Sending::Confirming(confirmation)) => {
                    let hub = self.app.hub.clone();
                    in_flight.push_back(async move { hub.confirmed(confirmation).await });
                }
                Err(ApiError::Hub(e @ HubError::Log(_))) => {
                    self.log_unavailable(peer, &e).await;
                    return accepted;
                }
                Err(e) => {
                    if !self.refuse(peer, e, encoding, &incoming).await {
                        return accepted;
                    }
                }
            }
        }
    }

    /// Decodes, validates and sends one state.
    async fn send(
        &self,
        encoding: Encoding,
        body: Bytes,
        started: Instant,
    ) -> Result<Sending, ApiError> {
        let size = body.len();
        let state = take_state(&self.app, encoding, body).await?;
        let sending = self.app.hub.send(&self.stream, state).await?;
        self.app.metrics.state_received(started.elapsed());
        self.app.metrics.state_size(size);
        Ok(sending)
    }

    /// Nodes on a broker: the log did not take a state. States sent after it would be
    /// refused too; the close tells the producer, which reconnects when it can.
    async fn log_unavailable(&self, peer: &mut Peer<Io>, e: &HubError) {
        self.app
            .metrics
            .input_rejected(RejectReason::LogUnavailable);
        let reason = match e {
            HubError::Log(LogError::Unreachable) => {
                "log unavailable: the NATS broker is unreachable; reconnect and send again"
            }
            _ => "log unavailable: the log did not confirm the state in time; reconnect and send again",
        };
        peer.close(1013, reason).await;
    }

    /// Answers a refused state with its error as JSON text; false when the producer
    /// does not read it (it is then closed rather than left holding its slot).
    async fn refuse(
        &self,
        peer: &mut Peer<Io>,
        e: ApiError,
        encoding: Encoding,
        incoming: &Bytes,
    ) -> bool {
        if let Some(reason) = e.reject_reason() {
            self.app.metrics.input_rejected(reason);
        }
        let mut reply = e.body();
        // Name the rejected state's step whenever it can be read, valid state or not.
        if let Some(step) = codec::peek_step(encoding, incoming) {
            reply["step"] = step.into();
        }
        let reply = Message::Text(reply.to_string().into());
        let send_timeout = self.app.config.subscriber.send_timeout;
        matches!(
            timeout(send_timeout, peer.socket().send(reply)).await,
            Ok(Ok(()))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processing_time_is_rounded_to_two_decimals() {
        assert_eq!(round_ms(Duration::from_nanos(31_587)), 0.03);
        assert_eq!(round_ms(Duration::from_micros(1_236)), 1.24);
        assert_eq!(round_ms(Duration::ZERO), 0.0);
        assert_eq!(
            serde_json::to_string(&round_ms(Duration::from_nanos(31_587))).unwrap(),
            "0.03"
        );
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
