//! One subscriber socket's session: the first frame, then what waits while the
//! stream's dispatch writes each new state (`delivery.rs`): the bytes its socket did
//! not take at once, its `max_hz` slots and probes, its control messages; and the
//! close, with the right code, when it leaves, floods, goes silent, or cannot keep
//! up. Which frames to write is the feed's decision (`fanout/feed.rs`).

use std::{future::poll_fn, sync::Arc, time::Duration};

use tokio::{
    sync::OwnedSemaphorePermit,
    time::{sleep_until, Instant},
};
use tokio_tungstenite::{
    tungstenite::{
        protocol::{Role, WebSocketConfig},
        Message,
    },
    WebSocketStream,
};
use tracing::{debug, warn};

use super::{
    delivery::{Delivery, Stop, Verdict},
    wire::{SessionIo, Wire},
    AppState, Subscription, READ_BUFFER_BYTES, WRITE_BUFFER_BYTES,
};
use crate::{
    codec::{self, ClientMessage, Encoding},
    config::SubscriberConfig,
    fanout::{Channel, Feed, Outlet, Pace},
    metrics::{CloseReason, SlowReason},
    transport::{
        client_addr::ClientAddr,
        peer::{Budget, Ending, Event, Peer},
        upgrade::Connection,
    },
};

/// How long a too-slow subscriber gets to take its close frame: its socket is full,
/// so this is a courtesy that usually fails.
const SLOW_CLOSE_WAIT: Duration = Duration::from_millis(100);

/// One subscriber's connection.
pub(super) struct Session {
    app: AppState,
    /// Who connected (through a trusted proxy: the client it names), for the logs.
    peer: ClientAddr,
    stream: Arc<Channel>,
    subscription: Subscription,
    /// Joined when the handshake was answered: what is published after the client
    /// saw its `101` is the client's, however soon the session starts.
    feed: Option<Feed>,
    /// A subscriber slot, released when the session ends.
    _permit: OwnedSemaphorePermit,
}

impl Session {
    pub(super) fn new(
        app: AppState,
        peer: ClientAddr,
        stream: Arc<Channel>,
        subscription: Subscription,
        permit: OwnedSemaphorePermit,
    ) -> Session {
        let feed = Feed::join(
            stream.clone(),
            subscription.wants,
            subscription.resume.as_ref(),
            app.config.subscriber.outbox_frames,
            app.metrics.clone(),
        );
        Session {
            app,
            peer,
            stream,
            subscription,
            feed: Some(feed),
            _permit: permit,
        }
    }

    pub(super) async fn run(mut self, connection: Connection) {
        let s = &self.subscription;
        let Some(feed) = self.feed.take() else {
            return;
        };
        debug!(peer = %self.peer, stream = self.stream.name(), format = %s.wants.encoding, deltas = s.wants.deltas, resume = ?s.resume, "subscriber connected");
        let config = &self.app.config;
        let (wire, socket) = socket(connection, &config.subscriber).await;
        let mut peer = Peer::new(
            socket,
            &config.connection,
            self.app.shutdown.clone(),
            config.subscriber.send_timeout,
            Budget::AllMessages,
            "message too big: subscribers send only small control messages",
        );
        let delivery = Arc::new(Delivery::new(
            feed,
            Pace::new(config.subscriber.freshness),
            wire,
            peer.probe_slot(),
            self.app.metrics.clone(),
            backlog_cap(&config.subscriber),
            config.subscriber.send_timeout,
        ));
        let reason = self.drive(&mut peer, &delivery).await;
        drop(delivery);
        self.app.metrics.subscriber_closed(reason);
        debug!(peer = %self.peer, reason = reason.as_str(), "subscriber disconnected");
    }

    /// The session's side of the delivery: the first frame, then everything that
    /// waits (reads, timers, the bytes the socket did not take at once) while the
    /// stream's dispatch writes each new state.
    async fn drive(&self, peer: &mut Peer<SessionIo>, delivery: &Arc<Delivery>) -> CloseReason {
        delivery.start();
        let _membership = self.app.dispatch.join(&self.stream, delivery.clone());
        // Whatever was published between the first frame and joining.
        delivery.deliver();
        // One timer for the deadlines: a timer made per wake would cost a timer-wheel
        // entry each time.
        let timer = sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut armed = None;
        loop {
            let plan = match delivery.plan() {
                Verdict::Wait(plan) => plan,
                Verdict::TooSlow => {
                    return self.drop_slow(peer, delivery, SlowReason::Timeout).await
                }
                Verdict::Stopped(Stop::Backlog) => {
                    return self.drop_slow(peer, delivery, SlowReason::Backlog).await
                }
                Verdict::Stopped(Stop::StreamClosed) => {
                    delivery.close();
                    peer.close(1001, "stream closed").await;
                    return CloseReason::Shutdown;
                }
            };
            // Reset only to fire sooner (or once it fired): a timer that fires before
            // what is due costs one more plan, a reset per wake a timer-wheel update.
            if armed.is_none_or(|at| plan.deadline < at) {
                timer.as_mut().reset(plan.deadline);
                armed = Some(plan.deadline);
            }
            let wire = delivery.wire();
            tokio::select! {
                biased;
                seen = peer.poll() => match peer.answer(seen).await {
                    Event::Handled => {}
                    Event::Probed(id) => delivery.on_pong(id),
                    Event::Ended(ending) => return self.ended(peer, delivery, ending).await,
                    Event::Data(message) => match self.control(peer, delivery, &message).await {
                        Ok(Some(ClientMessage::Resync)) => delivery.resync(),
                        Ok(None) => {}
                        Err(reason) => return reason,
                    },
                },
                drained = poll_fn(|cx| wire.poll_drain(cx)), if plan.draining => match drained {
                    Ok(()) => delivery.drained(),
                    // The socket failed: the peer reset or closed it.
                    Err(_) => return CloseReason::Reset,
                },
                () = wire.woken() => {}
                () = &mut timer, if armed.is_some() => armed = None,
            }
            delivery.deliver();
        }
    }

    /// A message from the subscriber: a control message (`Some`), or text that is
    /// not one, which is ignored (`None`) as the old server ignored every text it read
    /// (browser pages send keep-alive strings). Only what claims to be a control
    /// message and is not a known one (a JSON object with an unknown `"op"`, binary
    /// that is not a `ClientMessage`) closes the subscriber, with 1003.
    async fn control(
        &self,
        peer: &mut Peer<SessionIo>,
        delivery: &Delivery,
        message: &Message,
    ) -> Result<Option<ClientMessage>, CloseReason> {
        let decoded = match message {
            Message::Text(t) => {
                let decoded = codec::decode_client_message(Encoding::Json, t.as_bytes());
                if decoded.is_err() && !claims_an_op(t.as_str()) {
                    debug!(peer = %self.peer, bytes = t.len(), "subscriber text ignored");
                    self.app.metrics.client_message_ignored();
                    return Ok(None);
                }
                decoded
            }
            Message::Binary(b) => codec::decode_client_message(Encoding::Protobuf, b),
            _ => unreachable!("the peer hands on only text and binary messages"),
        };
        match decoded {
            Ok(control) => Ok(Some(control)),
            Err(e) => {
                debug!(peer = %self.peer, error = %e, "subscriber sent an unknown control message");
                delivery.close();
                peer.close(
                    1003,
                    "unknown op: the one control message is {\"op\":\"resync\"}",
                )
                .await;
                Err(CloseReason::Policy)
            }
        }
    }

    /// Maps how the peer's side ended to the metric's reason.
    async fn ended(
        &self,
        peer: &mut Peer<SessionIo>,
        delivery: &Delivery,
        ending: Ending,
    ) -> CloseReason {
        delivery.close();
        match ending {
            Ending::Left => CloseReason::Client,
            Ending::Reset => CloseReason::Reset,
            Ending::Shutdown => CloseReason::Shutdown,
            Ending::Silent => CloseReason::PingTimeout,
            Ending::Flooding | Ending::TooBig | Ending::Protocol => CloseReason::Policy,
            Ending::Unwritable => self.drop_slow(peer, delivery, SlowReason::Timeout).await,
        }
    }

    /// Counts and logs a subscriber closed for being too slow, and offers it a close
    /// frame (1008) it will most likely not read.
    async fn drop_slow(
        &self,
        peer: &mut Peer<SessionIo>,
        delivery: &Delivery,
        reason: SlowReason,
    ) -> CloseReason {
        delivery.close();
        let why = match reason {
            SlowReason::Timeout => "too slow: socket unwritable past PCC_SEND_TIMEOUT",
            SlowReason::Backlog => "too slow: backlog over PCC_MAX_BACKLOG_BYTES",
        };
        warn!(peer = %self.peer, "subscriber closed: {why}");
        self.app.metrics.slow_disconnect(reason);
        peer.close_briefly(1008, why, SLOW_CLOSE_WAIT).await;
        CloseReason::Slow
    }
}

/// The bytes a subscriber's writes may leave waiting for its socket.
fn backlog_cap(config: &SubscriberConfig) -> usize {
    config.max_backlog_bytes.max(WRITE_BUFFER_BYTES + 1)
}

/// A subscriber's connection as its wire and its WebSocket.
pub(super) async fn socket(
    connection: Connection,
    config: &SubscriberConfig,
) -> (Arc<Wire>, WebSocketStream<SessionIo>) {
    let (wire, io, early) = Wire::split(connection);
    let websocket = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(config.max_client_message_bytes))
        .max_frame_size(Some(config.max_client_message_bytes));
    let socket =
        WebSocketStream::from_partially_read(io, early, Role::Server, Some(websocket)).await;
    (wire, socket)
}

/// Whether a text a subscriber sent claims to be a control message: a JSON object
/// with an `"op"` member. Anything else (`"ping"`, `{"type":"keepalive"}`, not JSON at
/// all) is not one, and is ignored.
fn claims_an_op(text: &str) -> bool {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
        .is_ok_and(|object| object.contains_key("op"))
}

#[cfg(test)]
mod tests {
    use super::claims_an_op;

    #[test]
    fn only_objects_with_an_op_claim_to_be_control_messages() {
        for text in [r#"{"op":"nope"}"#, r#"{"op":5}"#, r#" {"op":null,"x":1} "#] {
            assert!(claims_an_op(text), "{text}");
        }
        for text in [
            "ping",
            r#""ping""#,
            r#"{"type":"ping"}"#,
            "[1,2]",
            "",
            r#"{"op":"#,
            "42",
        ] {
            assert!(!claims_an_op(text), "{text}");
        }
    }
}
