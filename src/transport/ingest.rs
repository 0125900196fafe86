//! `GET /ingest`: a persistent producer connection. Each message is one state (JSON
//! text or protobuf binary); accepted states get no answer, rejected ones get a JSON
//! text `{"ok":false,"error":…,"field":…,"step":…}` and the connection stays open.

use std::{net::SocketAddr, time::Instant};

use axum::{
    extract::{
        rejection::QueryRejection,
        ws::{Message, WebSocket, WebSocketUpgrade},
        ConnectInfo, Query, State,
    },
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use tokio::{sync::OwnedSemaphorePermit, time::timeout};
use tracing::{debug, info};

use super::{
    http::ingest_state,
    limit::Bucket,
    liveness::{self, Due, Liveness},
    producer_authorized,
    ws::{close, ReadError},
    ApiError, AppState,
};
use crate::{
    codec::{self, Encoding},
    fanout::{validate_stream_name, DEFAULT_STREAM},
    metrics::RejectReason,
};

/// `/ingest` query parameters.
#[derive(Debug, Deserialize)]
pub(super) struct IngestQuery {
    stream: Option<String>,
}

/// `GET /ingest`: checks the key, the stream name and the producer limit, then upgrades.
pub(super) async fn connect(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<IngestQuery>, QueryRejection>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let prepared = (|| {
        if !producer_authorized(&app.config, &headers) {
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
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
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
    peer: SocketAddr,
    stream: String,
    /// A producer slot, released when the connection ends.
    _permit: OwnedSemaphorePermit,
}

impl Producer {
    async fn run(self, mut socket: WebSocket) {
        info!(peer = %self.peer, stream = %self.stream, "producer connected");
        self.app.metrics.producer_connected(true);
        let accepted = self.drive(&mut socket).await;
        self.app.metrics.producer_connected(false);
        info!(peer = %self.peer, stream = %self.stream, accepted, "producer disconnected");
    }

    /// Returns how many states were accepted.
    async fn drive(&self, socket: &mut WebSocket) -> u64 {
        let rate = self.app.config.producer.rate_limit;
        let mut bucket = Bucket::new(rate);
        let mut accepted = 0;
        // Keep-alive: a producer silent (no state, no pong) for two intervals is closed,
        // so a dead peer does not hold a producer slot. States have their own rate
        // limit; pings and pongs count against the client message rate.
        let mut liveness = Liveness::new(&self.app.config.connection);
        let send_timeout = self.app.config.subscriber.send_timeout;
        loop {
            let message = tokio::select! {
                biased;
                _ = self.app.shutdown.cancelled() => {
                    close(socket, 1001, "server shutting down").await;
                    return accepted;
                }
                m = socket.recv() => m,
                due = liveness.due() => {
                    if let Due::Silent = due {
                        debug!(peer = %self.peer, "producer silent for two ping intervals");
                        close(socket, 1008, liveness::SILENT).await;
                        return accepted;
                    }
                    match timeout(send_timeout, socket.send(Message::Ping(Default::default()))).await {
                        Ok(Ok(())) => continue,
                        _ => return accepted,
                    }
                }
            };
            liveness.heard();
            let (encoding, incoming) = match message {
                None | Some(Ok(Message::Close(_))) => return accepted,
                Some(Err(e)) => {
                    let error = ReadError::from(e);
                    debug!(peer = %self.peer, %error, "producer read failed");
                    if let ReadError::TooBig(_) = error {
                        self.app.metrics.input_rejected(RejectReason::TooLarge);
                    }
                    error
                        .close(socket, "message too big: over PCC_MAX_BODY_BYTES")
                        .await;
                    return accepted;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                    if liveness.within_rate() {
                        continue;
                    }
                    debug!(peer = %self.peer, "producer over the control message rate");
                    close(socket, 1008, liveness::FLOODING).await;
                    return accepted;
                }
                Some(Ok(Message::Text(t))) => (Encoding::Json, t.into()),
                Some(Ok(Message::Binary(b))) => (Encoding::Protobuf, b),
            };
            let result = if rate > 0 && bucket.take(rate, Instant::now()).is_err() {
                Err(ApiError::RateLimited {
                    rate,
                    retry_after: Default::default(),
                })
            } else {
                ingest_state(&self.app, &self.stream, encoding, &incoming)
            };
            match result {
                Ok(_) => accepted += 1,
                Err(e) => {
                    if let Some(reason) = e.reject_reason() {
                        self.app.metrics.input_rejected(reason);
                    }
                    let mut reply = e.body();
                    // Name the rejected state's step when it could be read.
                    if let Ok(state) = codec::decode_state(encoding, &incoming) {
                        reply["step"] = state.step.into();
                    }
                    let reply = Message::Text(reply.to_string().into());
                    // A producer that sends bad states and never reads the answers is
                    // closed rather than left holding its slot.
                    if !matches!(timeout(send_timeout, socket.send(reply)).await, Ok(Ok(()))) {
                        return accepted;
                    }
                }
            }
        }
    }
}
