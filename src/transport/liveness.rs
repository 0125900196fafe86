//! What every WebSocket peer, subscriber or producer, owes the server: to stay heard
//! (a ping every `PCC_PING_INTERVAL`; a peer silent for two intervals is closed) and not
//! to flood (the messages it sends are counted against `PCC_CLIENT_MESSAGE_RATE`).

use std::time::{Duration, Instant};

use super::limit::Bucket;
use crate::config::ConnectionConfig;

/// Close reason (with 1008) for a peer silent for two ping intervals.
pub(super) const SILENT: &str = "no pong within two ping intervals";

/// Close reason (with 1008) for a peer that sends more messages a second than allowed.
pub(super) const FLOODING: &str = "more messages a second than PCC_CLIENT_MESSAGE_RATE allows";

/// What a ping slot calls for.
pub(super) enum Due {
    /// Send a ping.
    Ping,
    /// Nothing came for two intervals: close the peer.
    Silent,
}

/// One peer's keep-alive clock and message budget.
pub(super) struct Liveness {
    interval: Duration,
    ping: tokio::time::Interval,
    last_heard: Instant,
    rate: u32,
    budget: Bucket,
}

impl Liveness {
    /// A peer just connected: heard now, first ping one interval from now.
    pub(super) fn new(config: &ConnectionConfig) -> Liveness {
        let interval = config.ping_interval;
        Liveness {
            interval,
            ping: tokio::time::interval_at(tokio::time::Instant::now() + interval, interval),
            last_heard: Instant::now(),
            rate: config.client_message_rate,
            budget: Bucket::new(config.client_message_rate),
        }
    }

    /// Waits for the next ping slot (cancel-safe, for `select!`).
    pub(super) async fn due(&mut self) -> Due {
        self.ping.tick().await;
        if self.last_heard.elapsed() > self.interval * 2 {
            Due::Silent
        } else {
            Due::Ping
        }
    }

    /// Something came from the peer.
    pub(super) fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    /// Counts one message against the rate; false when the peer is over it.
    pub(super) fn within_rate(&mut self) -> bool {
        self.rate == 0 || self.budget.take(self.rate, Instant::now()).is_ok()
    }
}
