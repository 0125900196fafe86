//! [`Subscription`]: a subscriber that survives disconnections. It connects (a bounded
//! number of tries the first time), reconnects with jittered back-off and resumes from
//! the seq it holds, raises permanent errors at once, and reports every state change as
//! an [`Event`] and in its [`Stats`].

use futures_util::Stream;
use phasecast_wire::{
    codec::FrameKind,
    model::State,
    summary::{Envelope, Summary},
};

use crate::{ClientError, SubscribeOptions, Subscriber};

/// Where a subscription's connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Opening the first connection.
    Connecting,
    /// Open, receiving frames.
    Connected,
    /// Lost; trying again.
    Reconnecting,
    /// Given up (a permanent error, the first-connect tries spent) or closed.
    Closed,
}

/// A change of connection state, with its reason.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Trying `url` (try `attempt`, from 1).
    Connecting {
        /// The node tried.
        url: String,
        /// Which try.
        attempt: u32,
    },
    /// Connected to `url`.
    Connected {
        /// The node.
        url: String,
    },
    /// The connection failed or was lost; the next try is in `delay`.
    Reconnecting {
        /// What went wrong.
        error: String,
        /// The wait before the next try.
        delay: std::time::Duration,
    },
    /// Given up: the reason.
    Closed {
        /// What ended it.
        error: String,
    },
}

/// What a subscription has received so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames applied.
    pub frames: u64,
    /// Their bytes on the wire.
    pub bytes: u64,
    /// Full frames among them.
    pub full: u64,
    /// Delta frames among them.
    pub delta: u64,
    /// Full frames asked for after a delta did not fit.
    pub resyncs: u64,
    /// Connections re-established after the first.
    pub reconnects: u64,
}

/// One verified state, as a subscription yields it.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// Its seq.
    pub seq: u64,
    /// Whether it came from a full or a delta frame.
    pub kind: FrameKind,
    /// The state (exact, or within the subscription's ε for deltas); only the parts
    /// asked for with `fields`.
    pub state: State,
    /// The state's summary, computed by the server (with `fields` taking `summary`).
    pub summary: Option<Summary>,
    /// The range of each summary quantity over the states since the previous update
    /// (with `max_hz` and `summary`).
    pub envelope: Option<Envelope>,
}

/// A subscription that survives disconnections.
#[derive(Debug)]
pub struct Subscription {
    options: SubscribeOptions,
    current: Option<Subscriber>,
    /// The state held while no connection holds it (between connections).
    state: Option<State>,
    seq: Option<u64>,
    epoch: Option<String>,
    status: ConnectionState,
    stats: Stats,
    /// Tries since the last connection that delivered a frame.
    failures: u32,
    ever_connected: bool,
    /// Index into `url` + `fallback_urls` of the node to try next.
    node: usize,
}

impl Subscription {
    /// A subscription; it connects on the first call to [`Subscription::next`].
    pub fn new(options: SubscribeOptions) -> Subscription {
        Subscription {
            // It holds no state yet, so it has nothing to resume from: `resume` in the
            // options is for a Subscriber given a state (`connect_holding`).
            seq: None,
            epoch: None,
            options,
            current: None,
            state: None,
            status: ConnectionState::Connecting,
            stats: Stats::default(),
            failures: 0,
            ever_connected: false,
            node: 0,
        }
    }

    /// The state held and its seq.
    pub fn state(&self) -> Option<(u64, &State)> {
        let state = match &self.current {
            Some(s) => s.state.as_ref(),
            None => self.state.as_ref(),
        };
        Some((self.seq?, state?))
    }

    /// The stream's epoch the state held belongs to (`None` before the first full
    /// frame, or from a server that sends none).
    pub fn epoch(&self) -> Option<&str> {
        match &self.current {
            Some(s) => s.epoch(),
            None => self.epoch.as_deref(),
        }
    }

    /// Where the connection is.
    pub fn status(&self) -> ConnectionState {
        self.status
    }

    /// Counts so far.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats;
        stats.resyncs += self.current.as_ref().map_or(0, Subscriber::resyncs);
        stats
    }

    fn node_url(&self) -> String {
        let nodes = 1 + self.options.fallback_urls.len();
        match self.node % nodes {
            0 => self.options.url.clone(),
            i => self.options.fallback_urls[i - 1].clone(),
        }
    }

    fn set(&mut self, status: ConnectionState, event: Event) {
        self.status = status;
        match &event {
            Event::Reconnecting { error, delay } => {
                tracing::warn!(%error, ?delay, "phasecast subscription: retrying")
            }
            Event::Closed { error } => tracing::warn!(%error, "phasecast subscription closed"),
            Event::Connected { url } => tracing::info!(%url, "phasecast subscription connected"),
            Event::Connecting { url, attempt } => {
                tracing::debug!(%url, attempt, "phasecast subscription connecting")
            }
        }
        self.options.emit(&event);
    }

    /// Gives up with `error`.
    fn fail(&mut self, error: ClientError) -> Option<Result<Update, ClientError>> {
        if let Some(s) = self.current.take() {
            self.state = s.state;
        }
        self.set(
            ConnectionState::Closed,
            Event::Closed {
                error: error.to_string(),
            },
        );
        Some(Err(error))
    }

    /// The next verified state, connecting, reconnecting and resuming as needed.
    /// `Some(Err(_))` for a permanent error or when the first connection could not be
    /// made in `first_connect_tries`; after that, `None`.
    pub async fn next(&mut self) -> Option<Result<Update, ClientError>> {
        loop {
            if self.status == ConnectionState::Closed {
                return None;
            }
            if self.current.is_none() {
                let url = self.node_url();
                self.options.emit(&Event::Connecting {
                    url: url.clone(),
                    attempt: self.failures + 1,
                });
                let mut options = self.options.clone();
                options.resume = self.seq;
                options.resume_epoch = self.epoch.clone();
                match Subscriber::connect_to(&options, &url).await {
                    Ok(mut s) => {
                        // Carry the state over: a resumed connection starts with a delta.
                        s.state = self.state.take();
                        s.seq = self.seq;
                        s.epoch = self.epoch.take();
                        if self.ever_connected {
                            self.stats.reconnects += 1;
                        }
                        self.ever_connected = true;
                        self.current = Some(s);
                        self.set(ConnectionState::Connected, Event::Connected { url });
                    }
                    Err(e) if e.is_permanent() => return self.fail(e),
                    Err(e) => {
                        self.failures += 1;
                        if !self.ever_connected && self.failures >= self.options.first_connect_tries
                        {
                            return self.fail(e);
                        }
                        // The next node; the back-off grows once every node was tried.
                        self.node += 1;
                        let nodes = 1 + self.options.fallback_urls.len() as u32;
                        let delay = self
                            .options
                            .backoff
                            .delay((self.failures - 1) / nodes)
                            .max(e.retry_after().unwrap_or_default());
                        let status = if self.ever_connected {
                            ConnectionState::Reconnecting
                        } else {
                            ConnectionState::Connecting
                        };
                        self.set(
                            status,
                            Event::Reconnecting {
                                error: e.to_string(),
                                delay,
                            },
                        );
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                }
            }
            let sub = self.current.as_mut().expect("connected above");
            match sub.next_frame().await {
                Ok(Some(r)) => {
                    self.failures = 0;
                    self.seq = Some(r.seq);
                    self.stats.frames += 1;
                    self.stats.bytes += r.bytes as u64;
                    match r.kind {
                        FrameKind::Full => self.stats.full += 1,
                        FrameKind::Delta => self.stats.delta += 1,
                    }
                    // The one copy per state: the connection keeps its own to apply
                    // the next delta to.
                    let state = sub.state.clone().expect("a frame was applied");
                    let extras = sub.extras.clone();
                    return Some(Ok(Update {
                        seq: r.seq,
                        kind: r.kind,
                        state,
                        summary: extras.summary,
                        envelope: extras.envelope,
                    }));
                }
                Ok(None) => self.lost("the server closed the connection".into()),
                Err(e) if e.is_permanent() => return self.fail(e),
                Err(e) => self.lost(e.to_string()),
            }
        }
    }

    /// The connection dropped: keep the state, try again (at once the first time).
    fn lost(&mut self, error: String) {
        if let Some(s) = self.current.take() {
            self.stats.resyncs += s.resyncs();
            // What the next connection resumes from.
            self.state = s.state;
            self.seq = s.seq;
            self.epoch = s.epoch;
        }
        self.set(
            ConnectionState::Reconnecting,
            Event::Reconnecting {
                error,
                delay: std::time::Duration::ZERO,
            },
        );
    }

    /// The next state and its seq (see [`Subscription::next`]).
    ///
    /// # Errors
    /// A permanent error, the first connection failing, or a closed subscription.
    pub async fn next_state(&mut self) -> Result<(u64, State), ClientError> {
        match self.next().await {
            Some(Ok(u)) => Ok((u.seq, u.state)),
            Some(Err(e)) => Err(e),
            None => Err(ClientError::Closed {
                code: 1000,
                reason: "subscription closed".into(),
            }),
        }
    }

    /// Closes the subscription; [`Subscription::next`] returns `None` from now on.
    pub async fn close(&mut self) {
        if let Some(s) = self.current.take() {
            let _ = s.close().await;
        }
        self.status = ConnectionState::Closed;
        self.options.emit(&Event::Closed {
            error: "closed by the user".into(),
        });
    }

    /// The states as a [`Stream`] of verified updates; it ends after an error.
    pub fn into_stream(self) -> impl Stream<Item = Result<Update, ClientError>> {
        futures_util::stream::unfold(self, |mut s| async move {
            let next = s.next().await?;
            Some((next, s))
        })
    }
}
