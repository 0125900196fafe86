//! One subscriber socket: writes what its [`Feed`] hands out, in one flush per batch
//! and within the send timeout, answers its control messages, and closes it with the
//! right code when it leaves, floods, goes silent, or cannot keep up. Which frames to
//! write is the feed's decision (`fanout/feed.rs`); this file does socket I/O only.

use std::{sync::Arc, time::Duration};

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use tokio::{
    sync::OwnedSemaphorePermit,
    time::{sleep_until, timeout, Instant},
};
use tracing::{debug, warn};

use super::{AppState, Subscription};
use crate::{
    codec::{self, ClientMessage, Encoding},
    fanout::{Channel, Feed, Outgoing, Pace},
    metrics::{CloseReason, SlowReason},
    transport::{
        client_addr::ClientAddr,
        peer::{Budget, Ending, Event, Peer, WriteError},
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
        Session {
            app,
            peer,
            stream,
            subscription,
            _permit: permit,
        }
    }

    pub(super) async fn run(self, socket: WebSocket) {
        let s = &self.subscription;
        debug!(peer = %self.peer, stream = self.stream.name(), format = %s.wants.encoding, deltas = s.wants.deltas, resume = ?s.resume, "subscriber connected");
        let config = &self.app.config;
        let mut peer = Peer::new(
            socket,
            &config.connection,
            self.app.shutdown.clone(),
            config.subscriber.send_timeout,
            Budget::AllMessages,
            "message too big: subscribers send only small control messages",
        );
        let mut feed = Feed::join(
            self.stream.clone(),
            s.wants,
            s.resume.as_ref(),
            config.subscriber.outbox_frames,
            self.app.metrics.clone(),
        );
        let reason = self.drive(&mut peer, &mut feed).await;
        drop(feed);
        self.app.metrics.subscriber_closed(reason);
        debug!(peer = %self.peer, reason = reason.as_str(), "subscriber disconnected");
    }

    async fn drive(&self, peer: &mut Peer, feed: &mut Feed) -> CloseReason {
        let send_timeout = self.app.config.subscriber.send_timeout;
        let mut pace = Pace::new(self.app.config.subscriber.freshness);
        let first = feed.start(Instant::now());
        if let Err(reason) = self.write(peer, &mut pace, first).await {
            return reason;
        }
        // One timer for the pace's deadlines, reset only when they change: a timer
        // made per wake would cost every subscriber a timer-wheel entry per frame.
        let pace_timer = sleep_until(Instant::now());
        tokio::pin!(pace_timer);
        let mut pace_deadline = None;
        loop {
            let now = Instant::now();
            if let Some(sent) = pace.probe_sent() {
                if now.duration_since(sent) >= send_timeout {
                    // Its reader has not reached a frame written that long ago: as
                    // good as a socket unwritable for the send timeout.
                    return self.drop_slow(peer, SlowReason::Timeout).await;
                }
            }
            if let Some(id) = pace.bare_probe(now) {
                if let Err(reason) = self.write_probe(peer, id).await {
                    return reason;
                }
            }
            let writable = pace.may_write(now);
            // The probe's give-up time and, while frames may go, the moment they must
            // wait for its pong.
            let deadline = pace.probe_sent().map(|sent| {
                let give_up_at = sent + send_timeout;
                match pace.hold_at().filter(|_| writable) {
                    Some(hold_at) => hold_at.min(give_up_at),
                    None => give_up_at,
                }
            });
            if deadline != pace_deadline {
                if let Some(at) = deadline {
                    pace_timer.as_mut().reset(at);
                }
                pace_deadline = deadline;
            }
            let slot = feed.slot();
            let frames = tokio::select! {
                biased;
                seen = peer.poll() => match peer.answer(seen).await {
                    Event::Handled => continue,
                    Event::Probed(id) => {
                        if let Some(reached) = pace.on_pong(id, Instant::now()) {
                            if let Some(age) = reached.state_age {
                                self.app.metrics.state_reached(age);
                            }
                        }
                        continue;
                    }
                    Event::Ended(ending) => return self.ended(peer, ending).await,
                    Event::Data(message) => match self.control(peer, &message).await {
                        Ok(Some(ClientMessage::Resync)) => feed.resync(),
                        Ok(None) => continue,
                        Err(reason) => return reason,
                    },
                },
                batch = feed.recv(), if writable => match batch {
                    Some(batch) => feed.on_batch(batch, Instant::now(), pace.fresh_since()),
                    None => {
                        peer.close(1001, "stream closed").await;
                        return CloseReason::Shutdown;
                    }
                },
                _ = sleep_until(slot.unwrap_or_else(Instant::now)), if writable && slot.is_some() => {
                    feed.on_slot(Instant::now())
                }
                _ = &mut pace_timer, if pace_deadline.is_some() => {
                    pace_deadline = None;
                    continue;
                }
            };
            if let Err(reason) = self.write(peer, &mut pace, frames).await {
                return reason;
            }
        }
    }

    /// A message from the subscriber: a control message (`Some`), or text that is
    /// not one, which is ignored (`None`) as the old server ignored every text it read
    /// (browser pages send keep-alive strings). Only what claims to be a control
    /// message and is not a known one (a JSON object with an unknown `"op"`, binary
    /// that is not a `ClientMessage`) closes the subscriber, with 1003.
    async fn control(
        &self,
        peer: &mut Peer,
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
    async fn ended(&self, peer: &mut Peer, ending: Ending) -> CloseReason {
        match ending {
            Ending::Left => CloseReason::Client,
            Ending::Reset => CloseReason::Reset,
            Ending::Shutdown => CloseReason::Shutdown,
            Ending::Silent => CloseReason::PingTimeout,
            Ending::Flooding | Ending::TooBig | Ending::Protocol => CloseReason::Policy,
            Ending::Unwritable => self.drop_slow(peer, SlowReason::Timeout).await,
        }
    }

    /// Writes `frames` in one flush bounded by the send timeout, followed by a probe
    /// when `pace` has one due.
    async fn write(
        &self,
        peer: &mut Peer,
        pace: &mut Pace,
        frames: Vec<Outgoing>,
    ) -> Result<(), CloseReason> {
        let Some(newest) = frames.last() else {
            return Ok(());
        };
        let probe = pace.on_write(Instant::now(), newest.accepted_at);
        let metrics = &self.app.metrics;
        let written = async {
            let mut accepted = Vec::with_capacity(frames.len());
            for frame in frames {
                accepted.push(frame.accepted_at);
                peer.socket().feed(frame.message).await?;
            }
            if let Some(id) = probe {
                peer.feed_probe(id).await?;
            }
            peer.socket().flush().await.map(|()| accepted)
        };
        match timeout(self.app.config.subscriber.send_timeout, written).await {
            Ok(Ok(accepted)) => {
                for at in accepted {
                    metrics.frames_written(at.elapsed());
                }
                Ok(())
            }
            Ok(Err(e)) => Err(self.write_failed(peer, e).await),
            Err(_) => Err(self.drop_slow(peer, SlowReason::Timeout).await),
        }
    }

    /// Writes a bare probe (a ping with no frame before it), within the send timeout.
    async fn write_probe(&self, peer: &mut Peer, id: u64) -> Result<(), CloseReason> {
        let written = async {
            peer.feed_probe(id).await?;
            peer.socket().flush().await
        };
        match timeout(self.app.config.subscriber.send_timeout, written).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.write_failed(peer, e).await),
            Err(_) => Err(self.drop_slow(peer, SlowReason::Timeout).await),
        }
    }

    /// Maps a failed write to how the session ends.
    async fn write_failed(&self, peer: &mut Peer, error: axum::Error) -> CloseReason {
        match WriteError::from(error) {
            WriteError::Backlog => self.drop_slow(peer, SlowReason::Backlog).await,
            WriteError::Gone(Ending::Reset) => CloseReason::Reset,
            WriteError::Gone(_) => CloseReason::Client,
        }
    }

    /// Counts and logs a subscriber closed for being too slow, and offers it a close
    /// frame (1008) it will most likely not read.
    async fn drop_slow(&self, peer: &mut Peer, reason: SlowReason) -> CloseReason {
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
