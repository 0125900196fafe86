//! What every WebSocket peer, subscriber or producer, shares: a [`Peer`] wraps the
//! socket with its keep-alive clock (a ping every `PCC_PING_INTERVAL`; a peer silent
//! for two intervals is closed), its message budget (`PCC_CLIENT_MESSAGE_RATE`), the
//! shutdown token, read errors sorted by what the peer is told, and the close
//! handshake. The subscriber and producer sessions only see the data messages.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::timeout,
};
use tokio_tungstenite::{
    tungstenite::{self, protocol::CloseFrame, Message},
    WebSocketStream,
};
use tokio_util::sync::CancellationToken;

use super::limit::Bucket;
use crate::config::ConnectionConfig;

/// Close reason (with 1008) for a peer silent for two ping intervals.
const SILENT: &str = "no pong within two ping intervals";

/// Close reason (with 1008) for a peer that sends more messages a second than allowed.
const FLOODING: &str = "more messages a second than PCC_CLIENT_MESSAGE_RATE allows";

/// Which of a peer's messages count against the client message rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Budget {
    /// Every message (subscribers: they send only control messages).
    AllMessages,
    /// Pings and pongs only (producers: their states have a rate limit of their own).
    ControlOnly,
}

/// How a peer's connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// The peer closed the connection with a close frame.
    Left,
    /// The peer went away without a close frame: a TCP FIN or reset. (A browser tab
    /// closed or a process killed leaves this way: a departure, not a violation.)
    Reset,
    /// The server is shutting down (the peer was sent 1001).
    Shutdown,
    /// Silent for two ping intervals (sent 1008).
    Silent,
    /// Over the message rate (sent 1008).
    Flooding,
    /// A message over the size limit (sent 1009).
    TooBig,
    /// A protocol violation (sent 1002).
    Protocol,
    /// A ping could not be written within the send timeout.
    Unwritable,
}

/// What happened on a peer's side, from [`Peer::answer`].
#[derive(Debug)]
pub(super) enum Event {
    /// A data message (text or binary) within the budget.
    Data(Message),
    /// Keep-alive and control traffic was handled; nothing for the session.
    Handled,
    /// The pong of the probe with this id (see [`Peer::probe_slot`]).
    Probed(u64),
    /// The connection is over (its close frame, if any, was sent).
    Ended(Ending),
}

/// Something [`Peer::poll`] saw, before any I/O in answer to it.
pub(super) enum Seen {
    Shutdown,
    Incoming(Option<Result<Message, tungstenite::Error>>),
    PingDue,
}

/// One WebSocket peer (over `S`) and what it owes the server.
pub(super) struct Peer<S> {
    socket: WebSocketStream<S>,
    shutdown: CancellationToken,
    send_timeout: Duration,
    budget: Budget,
    /// The reason given with 1009 when the peer sends a message over the size limit.
    too_big: &'static str,
    interval: Duration,
    ping: tokio::time::Interval,
    last_heard: Instant,
    rate: u32,
    bucket: Bucket,
    /// The id of the probe written last and not yet answered (its ping's payload), 0
    /// for none. Shared: the fan-out writes probes too.
    probe: Arc<AtomicU64>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Peer<S> {
    /// A peer that just connected: heard now, first ping one interval from now.
    pub(super) fn new(
        socket: WebSocketStream<S>,
        config: &ConnectionConfig,
        shutdown: CancellationToken,
        send_timeout: Duration,
        budget: Budget,
        too_big: &'static str,
    ) -> Peer<S> {
        let interval = config.ping_interval;
        Peer {
            socket,
            shutdown,
            send_timeout,
            budget,
            too_big,
            interval,
            ping: tokio::time::interval_at(tokio::time::Instant::now() + interval, interval),
            last_heard: Instant::now(),
            rate: config.client_message_rate,
            bucket: Bucket::new(config.client_message_rate),
            probe: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Where the id of a probe written is kept, so that its pong is known (ids are
    /// never 0).
    pub(super) fn probe_slot(&self) -> Arc<AtomicU64> {
        self.probe.clone()
    }

    /// The socket, for writing frames.
    pub(super) fn socket(&mut self) -> &mut WebSocketStream<S> {
        &mut self.socket
    }

    /// Waits for the shutdown, a message, or the ping slot. Cancel-safe: nothing is
    /// written, and nothing seen is lost to a cancellation.
    pub(super) async fn poll(&mut self) -> Seen {
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => Seen::Shutdown,
            m = self.socket.next() => Seen::Incoming(m),
            _ = self.ping.tick() => Seen::PingDue,
        }
    }

    /// Answers what [`Peer::poll`] saw: closes, pings, or hands on a data message.
    pub(super) async fn answer(&mut self, seen: Seen) -> Event {
        let message = match seen {
            Seen::Shutdown => {
                self.close(1001, "server shutting down").await;
                return Event::Ended(Ending::Shutdown);
            }
            Seen::PingDue => return self.keep_alive().await,
            // The stream ends once the close handshake is over (the peer's close frame
            // was handled below).
            Seen::Incoming(None) => return Event::Ended(Ending::Left),
            Seen::Incoming(Some(Err(e))) => return self.refuse(ReadError::from(e)).await,
            Seen::Incoming(Some(Ok(m))) => m,
        };
        self.last_heard = Instant::now();
        if let Message::Close(_) = message {
            let _ = timeout(Duration::from_secs(1), self.socket.flush()).await;
            return Event::Ended(Ending::Left);
        }
        if let Message::Pong(payload) = &message {
            // The answer to the server's own probe: not the peer's traffic, so not
            // counted against its message rate.
            let id = self.probe.load(Relaxed);
            if id != 0 && payload.as_ref() == id.to_be_bytes() {
                self.probe.store(0, Relaxed);
                return Event::Probed(id);
            }
        }
        let control = matches!(message, Message::Ping(_) | Message::Pong(_));
        let counted = control || self.budget == Budget::AllMessages;
        if counted && !self.within_rate() {
            tracing::debug!("peer over the client message rate");
            self.close(1008, FLOODING).await;
            return Event::Ended(Ending::Flooding);
        }
        if control {
            Event::Handled
        } else {
            Event::Data(message)
        }
    }

    /// The ping slot came: ping, or close a peer that has been silent for two.
    async fn keep_alive(&mut self) -> Event {
        if self.last_heard.elapsed() > self.interval * 2 {
            tracing::debug!("peer silent for two ping intervals");
            self.close(1008, SILENT).await;
            return Event::Ended(Ending::Silent);
        }
        if self.probe.load(Relaxed) != 0 {
            // A probe is out, and it is a ping too. A second ping could be all the
            // peer answers (RFC 6455 lets it answer only the newest), leaving the
            // probe unanswered.
            return Event::Handled;
        }
        match timeout(
            self.send_timeout,
            self.socket.send(Message::Ping(Default::default())),
        )
        .await
        {
            Ok(Ok(())) => Event::Handled,
            Ok(Err(e)) => Event::Ended(match WriteError::from(e) {
                // Not even a ping fits: as good as unwritable.
                WriteError::Backlog => Ending::Unwritable,
                WriteError::Gone(ending) => ending,
            }),
            Err(_) => Event::Ended(Ending::Unwritable),
        }
    }

    /// Counts one message against the rate; false when the peer is over it.
    fn within_rate(&mut self) -> bool {
        self.rate == 0 || self.bucket.take(self.rate, Instant::now()).is_ok()
    }

    /// Ends the connection after a read error: a message over the size limit gets
    /// 1009, a protocol violation 1002; a peer that went away (FIN or reset without a
    /// close frame) or whose socket failed is just gone.
    async fn refuse(&mut self, error: ReadError) -> Event {
        tracing::debug!(%error, "peer read failed");
        match error {
            ReadError::TooBig(_) => {
                self.close(1009, self.too_big).await;
                Event::Ended(Ending::TooBig)
            }
            ReadError::Protocol(_) => {
                self.close(1002, "protocol error").await;
                Event::Ended(Ending::Protocol)
            }
            ReadError::Reset(_) => Event::Ended(Ending::Reset),
            ReadError::Gone(_) => Event::Ended(Ending::Left),
        }
    }

    /// Sends a close frame, waiting at most a second in all.
    pub(super) async fn close(&mut self, code: u16, reason: &'static str) {
        close_within(&mut self.socket, code, reason, Duration::from_secs(1)).await;
    }

    /// Sends a close frame to a peer whose socket is probably full, waiting `wait`.
    pub(super) async fn close_briefly(&mut self, code: u16, reason: &'static str, wait: Duration) {
        close_within(&mut self.socket, code, reason, wait).await;
    }
}

/// Sends a close frame, then reads what the peer still sends until its own close, a
/// pause, or a bounded number of messages, waiting at most `wait` in all. Dropping a
/// socket with unread bytes in it resets the connection, and a peer that had just sent
/// a few more messages would never read the close frame and its reason. A quiet peer
/// costs at most the pause; a flood is read only so far, then reset.
pub(super) async fn close_within<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut WebSocketStream<S>,
    code: u16,
    reason: &'static str,
    wait: Duration,
) {
    const PAUSE: Duration = Duration::from_millis(100);
    const MAX_DRAINED: usize = 256;
    let frame = CloseFrame {
        code: code.into(),
        reason: reason.into(),
    };
    let _ = timeout(wait, async {
        if socket.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        for _ in 0..MAX_DRAINED {
            match timeout(PAUSE, socket.next()).await {
                Ok(Some(Ok(Message::Close(_)))) | Ok(None | Some(Err(_))) | Err(_) => return,
                Ok(Some(Ok(_))) => {}
            }
        }
    })
    .await;
}

/// Why a write to a WebSocket failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteError {
    /// The unsent backlog passed its cap (`PCC_MAX_BACKLOG_BYTES`): the peer is too slow.
    Backlog,
    /// The connection is over: [`Ending::Reset`] when the socket failed (the peer
    /// reset or closed it without a close frame), [`Ending::Left`] when the WebSocket
    /// was already closed.
    Gone(Ending),
}

impl From<tungstenite::Error> for WriteError {
    fn from(error: tungstenite::Error) -> WriteError {
        match error {
            tungstenite::Error::WriteBufferFull(_) => WriteError::Backlog,
            tungstenite::Error::Io(_) => WriteError::Gone(Ending::Reset),
            _ => WriteError::Gone(Ending::Left),
        }
    }
}

/// A failed read from a WebSocket, sorted by what the peer is told.
#[derive(Debug)]
enum ReadError {
    /// A message over the size limit: close 1009.
    TooBig(String),
    /// A WebSocket protocol violation: close 1002.
    Protocol(String),
    /// The connection ended without a close frame (the peer's FIN, or a reset): the
    /// peer left; nobody to tell.
    Reset(String),
    /// The WebSocket was already closed: nobody to tell.
    Gone(String),
}

impl From<tungstenite::Error> for ReadError {
    fn from(error: tungstenite::Error) -> ReadError {
        match error {
            tungstenite::Error::Capacity(e) => ReadError::TooBig(e.to_string()),
            tungstenite::Error::Protocol(
                e @ tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            ) => ReadError::Reset(e.to_string()),
            tungstenite::Error::Protocol(e) => ReadError::Protocol(e.to_string()),
            tungstenite::Error::Io(e) => ReadError::Reset(e.to_string()),
            other => ReadError::Gone(other.to_string()),
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooBig(e) => write!(f, "message too big: {e}"),
            ReadError::Protocol(e) => write!(f, "protocol error: {e}"),
            ReadError::Reset(e) => write!(f, "left without a close frame: {e}"),
            ReadError::Gone(e) => write!(f, "{e}"),
        }
    }
}
