//! `GET /ws`: one [`Session`] per subscriber socket.
//!
//! A session sends the newest state at once, then every update of its stream in
//! order. Updates it has not yet written wait in the stream's broadcast ring (the
//! outbox); when several are waiting they go out in one write. A subscriber that falls
//! more than the outbox behind skips to the newest state with a delta from what it
//! holds (latest wins, counted as conflated drops); one whose socket stays unwritable
//! past the send timeout, or whose unsent bytes pass the backlog limit, is closed.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    extract::{
        rejection::QueryRejection,
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
        ConnectInfo, Query, State,
    },
    http::{header, HeaderMap},
    response::{IntoResponse, Response},
};
use futures_util::SinkExt;
use serde::Deserialize;
use tokio::{
    sync::{broadcast::error::TryRecvError, OwnedSemaphorePermit},
    time::{sleep_until, timeout},
};
use tracing::{debug, warn};

use super::{
    key_matches,
    liveness::{self, Due, Liveness},
    presented_key, ApiError, AppState,
};
use crate::{
    codec::{self, ClientMessage, Encoding},
    fanout::DEFAULT_STREAM,
    metrics::{CloseReason, DropReason, FrameKind, SlowReason},
    stream::{Stream, Update},
};

/// Read buffer per subscriber: they send only tiny control messages, and
/// tungstenite's 128 KiB default would be held (and zeroed) for every socket.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Frames are gathered up to this many bytes before a write.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// `/ws` query parameters, all optional and checked by hand so that an error names
/// the parameter.
#[derive(Debug, Default, Deserialize)]
pub(super) struct SubscribeQuery {
    format: Option<String>,
    delta: Option<String>,
    max_hz: Option<String>,
    resume: Option<String>,
    stream: Option<String>,
    key: Option<String>,
}

/// What a subscriber asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// Frame encoding.
    pub encoding: Encoding,
    /// Deltas (`false`: full frames only).
    pub deltas: bool,
    /// Least time between frames (`max_hz`).
    pub min_interval: Option<Duration>,
    /// Seq the subscriber holds.
    pub resume: Option<u64>,
    /// Stream name.
    pub stream: String,
}

/// Parses a `/ws` query string (and the requested subprotocols) as the server does.
///
/// # Errors
/// [`ApiError::BadParameter`] naming the parameter at fault.
pub fn parse_subscription(
    query: &str,
    default: Encoding,
    requested_protocols: &[String],
) -> Result<Subscription, ApiError> {
    let query: SubscribeQuery =
        serde_urlencoded::from_str(query).map_err(|e| bad("query", e.to_string()))?;
    query.into_subscription(default, requested_protocols)
}

fn bad(name: &'static str, reason: impl Into<String>) -> ApiError {
    ApiError::BadParameter {
        name,
        reason: reason.into(),
    }
}

impl SubscribeQuery {
    fn into_subscription(
        self,
        default: Encoding,
        requested_protocols: &[String],
    ) -> Result<Subscription, ApiError> {
        let encoding = match &self.format {
            Some(f) => f.parse().map_err(|e| bad("format", format!("{e}")))?,
            None => requested_protocols
                .iter()
                .find_map(|p| Encoding::from_subprotocol(p))
                .unwrap_or(default),
        };
        let deltas = match self.delta.as_deref() {
            None | Some("true" | "1" | "yes") => true,
            Some("false" | "0" | "no") => false,
            Some(other) => return Err(bad("delta", format!("{other:?} is not true or false"))),
        };
        let min_interval = match &self.max_hz {
            None => None,
            Some(text) => match text.parse::<f64>() {
                Ok(hz) if hz.is_finite() && hz >= MIN_MAX_HZ => {
                    Some(Duration::from_secs_f64(1.0 / hz))
                }
                _ => {
                    return Err(bad(
                        "max_hz",
                        format!("{text:?} is not a rate of at least {MIN_MAX_HZ} frames a second"),
                    ))
                }
            },
        };
        let resume = match &self.resume {
            None => None,
            Some(text) => Some(
                text.parse::<u64>()
                    .map_err(|_| bad("resume", format!("{text:?} is not a seq")))?,
            ),
        };
        Ok(Subscription {
            encoding,
            deltas,
            min_interval,
            resume,
            stream: self.stream.unwrap_or_else(|| DEFAULT_STREAM.to_owned()),
        })
    }
}

/// Whether a browser origin may subscribe: any when `ALLOWED_ORIGINS` is unset; else
/// the listed ones and the server's own (the dashboard page it serves).
fn origin_allowed(allowed: Option<&[String]>, headers: &HeaderMap) -> Result<(), ApiError> {
    let (Some(allowed), Some(origin)) = (allowed, headers.get(header::ORIGIN)) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let same_origin = host.is_some_and(|h| {
        origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(h))
    });
    if same_origin || allowed.iter().any(|a| a == origin) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(origin.to_owned()))
    }
}

/// `GET /ws`: checks origin, key and parameters, then upgrades.
pub(super) async fn subscribe(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<SubscribeQuery>, QueryRejection>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let prepared = (|| {
        origin_allowed(app.config.subscriber.allowed_origins.as_deref(), &headers)?;
        let Query(query) = query.map_err(|e| bad("query", e.body_text()))?;
        if let Some(key) = &app.config.subscriber.subscribe_key {
            let presented = presented_key(&headers).or(query.key.as_deref().map(str::as_bytes));
            if !key_matches(key, presented) {
                return Err(ApiError::Unauthorized);
            }
        }
        let requested: Vec<String> = upgrade
            .requested_protocols()
            .filter_map(|p| p.to_str().ok())
            .flat_map(|p| p.split(',').map(|s| s.trim().to_owned()))
            .collect();
        let subscription = query.into_subscription(app.config.wire_format, &requested)?;
        let stream = app.hub.subscribe_to(&subscription.stream)?;
        Ok((subscription, stream))
    })();
    let (subscription, stream) = match prepared {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let config = &app.config.subscriber;
    let upgrade = upgrade
        .protocols([subscription.encoding.subprotocol()])
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(config.max_backlog_bytes.max(WRITE_BUFFER_BYTES + 1))
        .max_message_size(config.max_client_message_bytes)
        .max_frame_size(config.max_client_message_bytes);
    let permit = app.subscriber_slots.clone().try_acquire_owned().ok();
    let tracker = app.tracker.clone();
    upgrade.on_upgrade(move |mut socket| {
        tracker.track_future(async move {
            let Some(permit) = permit else {
                warn!(%peer, "subscriber refused: subscriber limit reached");
                close(
                    &mut socket,
                    1013,
                    "subscriber limit reached (PCC_MAX_SUBSCRIBERS)",
                )
                .await;
                return;
            };
            Session {
                app,
                peer,
                stream,
                subscription,
                _permit: permit,
            }
            .run(socket)
            .await;
        })
    })
}

/// Sends a close frame, waiting at most a second.
pub(super) async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    close_within(socket, code, reason, Duration::from_secs(1)).await;
}

/// Sends a close frame, then reads what the peer still sends until its own close, a
/// pause, or a bounded number of messages, waiting at most `wait` in all. Dropping a
/// socket with unread bytes in it resets the connection, and a peer that had just sent
/// a few more messages would never read the close frame and its reason. A quiet peer
/// costs at most the pause; a flood is read only so far, then reset.
async fn close_within(socket: &mut WebSocket, code: u16, reason: &'static str, wait: Duration) {
    const PAUSE: Duration = Duration::from_millis(100);
    const MAX_DRAINED: usize = 256;
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = timeout(wait, async {
        if socket.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        for _ in 0..MAX_DRAINED {
            match timeout(PAUSE, socket.recv()).await {
                Ok(Some(Ok(Message::Close(_)))) | Ok(None | Some(Err(_))) | Err(_) => return,
                Ok(Some(Ok(_))) => {}
            }
        }
    })
    .await;
}

/// The lowest `max_hz`: one frame every 100 s. (Far lower rates made an interval too
/// long for a `Duration`, a panic the fuzzer found with `max_hz=5e-55`.)
const MIN_MAX_HZ: f64 = 0.01;

/// How long a too-slow subscriber gets to take its close frame: its socket is full,
/// so this is a courtesy that usually fails.
const SLOW_CLOSE_WAIT: Duration = Duration::from_millis(100);

/// A failed read from a WebSocket, sorted by what the peer is told.
#[derive(Debug)]
pub(super) enum ReadError {
    /// A message over the size limit: close 1009.
    TooBig(String),
    /// A WebSocket protocol violation: close 1002.
    Protocol(String),
    /// The peer went away or the socket failed: nobody to tell.
    Gone(String),
}

impl From<axum::Error> for ReadError {
    fn from(error: axum::Error) -> ReadError {
        match error.into_inner().downcast::<tungstenite::Error>() {
            Ok(e) => match *e {
                tungstenite::Error::Capacity(e) => ReadError::TooBig(e.to_string()),
                tungstenite::Error::Protocol(e) => ReadError::Protocol(e.to_string()),
                other => ReadError::Gone(other.to_string()),
            },
            Err(other) => ReadError::Gone(other.to_string()),
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooBig(e) => write!(f, "message too big: {e}"),
            ReadError::Protocol(e) => write!(f, "protocol error: {e}"),
            ReadError::Gone(e) => write!(f, "{e}"),
        }
    }
}

impl ReadError {
    /// Sends the close frame this error calls for (`too_big` is the reason given for an
    /// oversized message); false when there is nobody to tell.
    pub(super) async fn close(&self, socket: &mut WebSocket, too_big: &'static str) -> bool {
        match self {
            ReadError::TooBig(_) => close(socket, 1009, too_big).await,
            ReadError::Protocol(_) => close(socket, 1002, "protocol error").await,
            ReadError::Gone(_) => return false,
        }
        true
    }
}

/// One subscriber's connection.
struct Session {
    app: AppState,
    peer: SocketAddr,
    stream: Arc<Stream>,
    subscription: Subscription,
    /// A subscriber slot, released when the session ends.
    _permit: OwnedSemaphorePermit,
}

impl Session {
    async fn run(self, mut socket: WebSocket) {
        let s = &self.subscription;
        debug!(peer = %self.peer, stream = self.stream.name(), format = %s.encoding, deltas = s.deltas, resume = ?s.resume, "subscriber connected");
        let reason = self.drive(&mut socket).await;
        self.stream.leave();
        self.app.metrics.subscriber_closed(reason);
        debug!(peer = %self.peer, reason = reason.as_str(), "subscriber disconnected");
    }

    async fn drive(&self, socket: &mut WebSocket) -> CloseReason {
        let metrics = &self.app.metrics;
        let config = &self.app.config.subscriber;
        let joined = self.stream.join(self.subscription.resume);
        metrics.subscriber_opened(
            self.subscription
                .resume
                .map(|_| joined.resume_from.is_some()),
        );
        let mut updates = joined.updates;
        let mut held = joined.resume_from;
        // The newest update seen but not yet sent (only with max_hz).
        let mut pending: Option<Arc<Update>> = None;
        let mut newest = joined.latest.clone();
        let mut next_slot = tokio::time::Instant::now();
        // Every message a subscriber sends (pings included) is counted: a flood is closed.
        let mut liveness = Liveness::new(&self.app.config.connection);
        // One write carries at most the outbox's worth of waiting updates.
        let outbox = config.outbox_frames.max(1);

        if let Some(latest) = joined.latest {
            if let Err(reason) = self.send(socket, &mut held, &[latest]).await {
                return reason;
            }
            next_slot = self.after_send();
        }
        loop {
            tokio::select! {
                biased;
                _ = self.app.shutdown.cancelled() => {
                    close(socket, 1001, "server shutting down").await;
                    return CloseReason::Shutdown;
                }
                incoming = socket.recv() => {
                    liveness.heard();
                    let message = match incoming {
                        None => return CloseReason::Client,
                        Some(Err(e)) => return self.refuse(socket, e).await,
                        Some(Ok(m)) => m,
                    };
                    if let Message::Close(_) = message {
                        let _ = timeout(Duration::from_secs(1), socket.flush()).await;
                        return CloseReason::Client;
                    }
                    if !liveness.within_rate() {
                        debug!(peer = %self.peer, "subscriber over the client message rate");
                        close(socket, 1008, liveness::FLOODING).await;
                        return CloseReason::Policy;
                    }
                    let control = match &message {
                        Message::Close(_) | Message::Ping(_) | Message::Pong(_) => continue,
                        Message::Text(t) => codec::decode_client_message(Encoding::Json, t.as_bytes()),
                        Message::Binary(b) => codec::decode_client_message(Encoding::Protobuf, b),
                    };
                    match control {
                        Ok(ClientMessage::Resync) => {
                            held = None;
                            if let Some(latest) = pending.take().or_else(|| newest.clone()) {
                                if let Err(reason) = self.send(socket, &mut held, &[latest]).await {
                                    return reason;
                                }
                            }
                        }
                        Err(e) => {
                            debug!(peer = %self.peer, error = %e, "subscriber sent an unknown message");
                            close(socket, 1003, "unsupported message: send {\"op\":\"resync\"} or nothing").await;
                            return CloseReason::Policy;
                        }
                    }
                }
                received = updates.recv() => {
                    let mut batch = Vec::new();
                    let mut skipped = 0u64;
                    match received {
                        Ok(u) => batch.push(u),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => skipped += n,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            close(socket, 1001, "stream closed").await;
                            return CloseReason::Shutdown;
                        }
                    }
                    while batch.len() < outbox {
                        match updates.try_recv() {
                            Ok(u) => batch.push(u),
                            Err(TryRecvError::Lagged(n)) => skipped += n,
                            Err(_) => break,
                        }
                    }
                    if skipped > 0 {
                        // Behind by more than the outbox: skip to the newest (latest wins).
                        skipped += batch.len().saturating_sub(1) as u64;
                        metrics.dropped(DropReason::Conflated, skipped);
                        batch.drain(..batch.len().saturating_sub(1));
                    }
                    let Some(last) = batch.last() else { continue };
                    newest = Some(last.clone());
                    if self.subscription.min_interval.is_some() {
                        // At the subscriber's own pace: only the newest state matters.
                        pending = batch.pop();
                        if tokio::time::Instant::now() < next_slot {
                            continue;
                        }
                        batch.extend(pending.take());
                    }
                    if let Err(reason) = self.send(socket, &mut held, &batch).await {
                        return reason;
                    }
                    next_slot = self.after_send();
                }
                _ = sleep_until(next_slot), if pending.is_some() => {
                    let due: Vec<_> = pending.take().into_iter().collect();
                    if let Err(reason) = self.send(socket, &mut held, &due).await {
                        return reason;
                    }
                    next_slot = self.after_send();
                }
                due = liveness.due() => {
                    if let Due::Silent = due {
                        close(socket, 1008, liveness::SILENT).await;
                        return CloseReason::PingTimeout;
                    }
                    match timeout(config.send_timeout, socket.send(Message::Ping(Default::default()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return CloseReason::Client,
                        Err(_) => return self.drop_slow(socket, SlowReason::Timeout).await,
                    }
                }
            }
        }
    }

    /// When the next frame may go, for subscribers with `max_hz`.
    fn after_send(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.subscription.min_interval.unwrap_or_default()
    }

    /// Writes the frames that bring the subscriber from `held` through `updates`, in
    /// one flush bounded by the send timeout.
    /// Ends the session after a read error: a message over the size limit gets 1009,
    /// a protocol violation 1002; a peer that went away is just gone.
    async fn refuse(&self, socket: &mut WebSocket, error: axum::Error) -> CloseReason {
        let error = ReadError::from(error);
        debug!(peer = %self.peer, %error, "subscriber read failed");
        let told = error
            .close(
                socket,
                "message too big: subscribers send only small control messages",
            )
            .await;
        if told {
            CloseReason::Policy
        } else {
            CloseReason::Client
        }
    }

    /// Counts and logs a subscriber closed for being too slow, and offers it a close
    /// frame (1008) it will most likely not read.
    async fn drop_slow(&self, socket: &mut WebSocket, reason: SlowReason) -> CloseReason {
        let why = match reason {
            SlowReason::Timeout => "too slow: socket unwritable past PCC_SEND_TIMEOUT",
            SlowReason::Backlog => "too slow: backlog over PCC_MAX_BACKLOG_BYTES",
        };
        warn!(peer = %self.peer, "subscriber closed: {why}");
        self.app.metrics.slow_disconnect(reason);
        close_within(socket, 1008, why, SLOW_CLOSE_WAIT).await;
        CloseReason::Slow
    }

    async fn send(
        &self,
        socket: &mut WebSocket,
        held: &mut Option<Arc<Update>>,
        updates: &[Arc<Update>],
    ) -> Result<(), CloseReason> {
        let metrics = &self.app.metrics;
        let encoding = self.subscription.encoding;
        let mut written = Vec::with_capacity(updates.len());
        let write = async {
            for update in updates {
                if held.as_ref().is_some_and(|h| h.seq >= update.seq) {
                    continue;
                }
                let frame = if self.subscription.deltas {
                    update.frame_for(encoding, held.as_deref(), metrics)
                } else {
                    update.full(encoding, metrics)
                };
                let full_len = self.stream.full_len(
                    encoding,
                    (frame.kind == FrameKind::Full).then_some(frame.len),
                );
                metrics.frame_sent(encoding, frame.kind, frame.len, full_len);
                socket.feed(frame.message).await?;
                written.push(update.accepted_at);
                *held = Some(update.clone());
            }
            socket.flush().await
        };
        match timeout(self.app.config.subscriber.send_timeout, write).await {
            Ok(Ok(())) => {
                for accepted_at in written {
                    metrics.frames_written(accepted_at.elapsed());
                }
                Ok(())
            }
            Ok(Err(e)) => {
                let backlog = e
                    .into_inner()
                    .downcast::<tungstenite::Error>()
                    .is_ok_and(|e| matches!(*e, tungstenite::Error::WriteBufferFull(_)));
                if backlog {
                    Err(self.drop_slow(socket, SlowReason::Backlog).await)
                } else {
                    Err(CloseReason::Client)
                }
            }
            Err(_) => Err(self.drop_slow(socket, SlowReason::Timeout).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> SubscribeQuery {
        let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        serde_urlencoded::from_str(&text.join("&")).unwrap()
    }

    #[test]
    fn parameters_are_parsed_and_errors_name_them() {
        let s = query(&[
            ("format", "proto"),
            ("delta", "false"),
            ("max_hz", "30"),
            ("resume", "9"),
            ("stream", "lab"),
        ])
        .into_subscription(Encoding::Json, &[])
        .unwrap();
        assert_eq!(s.encoding, Encoding::Protobuf);
        assert!(!s.deltas);
        assert_eq!(s.resume, Some(9));
        assert_eq!(s.stream, "lab");
        assert!((s.min_interval.unwrap().as_secs_f64() - 1.0 / 30.0).abs() < 1e-9);

        let d = query(&[])
            .into_subscription(Encoding::Protobuf, &[])
            .unwrap();
        assert_eq!(
            (d.encoding, d.deltas, d.stream.as_str()),
            (Encoding::Protobuf, true, "default")
        );

        let via_protocol = query(&[])
            .into_subscription(Encoding::Json, &["pcc.v1.protobuf".to_owned()])
            .unwrap();
        assert_eq!(via_protocol.encoding, Encoding::Protobuf);

        for (name, value) in [
            ("format", "xml"),
            ("delta", "maybe"),
            ("max_hz", "0"),
            ("max_hz", "fast"),
            // Found by the fuzzer: the interval overflowed a Duration and panicked.
            ("max_hz", "5e-55"),
            ("max_hz", "0.009"),
            ("resume", "-1"),
        ] {
            let err = query(&[(name, value)])
                .into_subscription(Encoding::Json, &[])
                .unwrap_err();
            assert_eq!(err.field(), Some(name), "{name}={value}");
        }
    }

    #[test]
    fn origins() {
        let allowed = vec!["https://ok.example".to_owned()];
        let mut h = HeaderMap::new();
        assert!(
            origin_allowed(Some(&allowed), &h).is_ok(),
            "no Origin: not a browser"
        );
        h.insert(header::ORIGIN, "https://ok.example".parse().unwrap());
        assert!(origin_allowed(Some(&allowed), &h).is_ok());
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(origin_allowed(Some(&allowed), &h).is_err());
        assert!(origin_allowed(None, &h).is_ok());
        // The server's own page is always allowed.
        h.insert(header::HOST, "phasecast.example:8787".parse().unwrap());
        h.insert(
            header::ORIGIN,
            "http://phasecast.example:8787".parse().unwrap(),
        );
        assert!(origin_allowed(Some(&allowed), &h).is_ok());
    }
}
