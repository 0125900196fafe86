//! The [`Hub`]: every stream of this node by name, the limit on streams, and the entry
//! points the transport uses to publish states and to subscribe. When nodes share a
//! broker, the hub is given the [`Bus`]: it appends what producers send to the
//! stream's log, and its streams follow the logs ([`Hub::follow_logs`]), so the log,
//! not this node, orders every stream.
//!
//! Each stream is a [`Channel`] (`fanout/`): its sequencing, history and broadcast.
//!
//! The hub also keeps what producers send within the memory [`Budget`]. Before a state
//! is taken, its cost (its view and the frames it will need) must fit; when it does
//! not, the hub degrades in this order, and never aborts:
//! 1. **shorter history**: streams give back their oldest states and cached frames,
//!    the stream holding the most first, down to their newest state;
//! 2. **no new streams**: a state that would create a stream is refused (503) once the
//!    budget is past [`NEW_STREAM_CEILING`];
//! 3. **no state that does not fit**: a state for an existing stream is refused (507)
//!    when it does not fit what is left even after (1), and one larger than the whole
//!    budget is refused (413). A stream holding more than an equal share of the budget
//!    is refused past [`SHARED_CEILING`]: the rest is kept for the streams holding
//!    less.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::{
    bus::{Bus, Confirmation, FromLog, LogError, Logged},
    config::StreamConfig,
    fanout::Channel,
    memory::{self, Budget, Fraction},
    metrics::{BusDrop, MemoryAction, Metrics},
    model::State,
    stream,
};

/// New streams are refused once accepting their first state would take the budget past
/// this share: the rest is kept for the streams that exist.
pub const NEW_STREAM_CEILING: Fraction = Fraction(90);

/// A stream holding more than an equal share of the budget (among the streams holding
/// anything) takes no state past this share of it: the rest is kept for the streams
/// holding less, so one stream's subscribers, holding states it cannot shed, never
/// leave another stream's small states without room.
pub const SHARED_CEILING: Fraction = Fraction(90);

/// How long a producer's reply waits, once its state is in the log, for this node to
/// have applied it (so what it reads back here is what it sent). It is durable
/// either way; past this the reply goes without waiting.
const APPLIED_WAIT: Duration = Duration::from_secs(1);

/// The stream the old API (`POST /pcc_state`, `/ws` without `?stream=`) uses.
pub const DEFAULT_STREAM: &str = "default";

/// Why the hub refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// The stream name has characters or a length we do not accept.
    #[error("invalid stream name {0:?}: use 1 to 64 of A-Z a-z 0-9 _ - .")]
    InvalidStreamName(String),
    /// Creating the stream would pass the stream limit.
    #[error("stream limit of {0} reached (PCC_MAX_STREAMS)")]
    TooManyStreams(usize),
    /// No such stream (subscribers do not create streams).
    #[error("unknown stream {0:?}")]
    UnknownStream(String),
    /// A new stream's first state does not fit the memory budget.
    #[error("no memory for a new stream: {used} of the {limit}-byte memory budget in use (PCC_MEMORY_LIMIT); new streams are refused past {ceiling}")]
    NoMemoryForStream {
        /// Bytes in use.
        used: usize,
        /// The budget.
        limit: usize,
        /// The share past which new streams are refused.
        ceiling: Fraction,
    },
    /// The state does not fit what is left of the memory budget.
    #[error("state of about {bytes} bytes does not fit the memory budget: {used} of {limit} bytes in use (PCC_MEMORY_LIMIT)")]
    OverBudget {
        /// What the state would cost.
        bytes: usize,
        /// Bytes in use.
        used: usize,
        /// The budget.
        limit: usize,
    },
    /// The stream holds more than an equal share of the memory budget, which is past
    /// the share where the rest is kept for the other streams.
    #[error("stream holds {held} bytes, more than an equal share of the {limit}-byte memory budget (PCC_MEMORY_LIMIT), and {used} bytes are in use: past {ceiling} the rest is kept for streams holding less; its subscribers give bytes back as they catch up or leave")]
    OverShare {
        /// Bytes the stream holds.
        held: usize,
        /// Bytes in use.
        used: usize,
        /// The budget.
        limit: usize,
        /// The share past which such a stream is refused.
        ceiling: Fraction,
    },
    /// The state would cost more than the whole memory budget.
    #[error("state of about {bytes} bytes is larger than the whole {limit}-byte memory budget (PCC_MEMORY_LIMIT)")]
    LargerThanBudget {
        /// What the state would cost.
        bytes: usize,
        /// The budget.
        limit: usize,
    },
    /// The shared log did not take the state (nodes on a broker).
    #[error(transparent)]
    Log(#[from] LogError),
}

/// What publishing a state did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The seq the state got.
    pub seq: u64,
    /// Subscribers of the stream at that moment.
    pub subscribers: usize,
}

/// What [`Hub::send`] did with a state.
pub enum Sending {
    /// Published (a single node).
    Published(Published),
    /// Sent to the log; its confirmation is awaited with [`Hub::confirmed`].
    Confirming(Confirmation),
}

impl std::fmt::Debug for Sending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sending::Published(p) => f.debug_tuple("Published").field(p).finish(),
            Sending::Confirming(_) => f.write_str("Confirming"),
        }
    }
}

/// All streams of this node.
#[derive(Debug)]
pub struct Hub {
    config: StreamConfig,
    outbox_frames: usize,
    streams: RwLock<HashMap<String, Arc<Channel>>>,
    metrics: Arc<Metrics>,
    /// What every stream's views and frames are charged to.
    budget: Arc<Budget>,
    /// The shared log, when several nodes share a broker.
    bus: Option<Arc<Bus>>,
}

impl Hub {
    /// A hub keeping its streams within `budget`. Without a `bus` the default stream
    /// is created now; with one, streams come from the logs on the broker (the
    /// default stream's log is made at start, `server.rs`).
    pub fn new(
        config: StreamConfig,
        outbox_frames: usize,
        metrics: Arc<Metrics>,
        budget: Arc<Budget>,
        bus: Option<Arc<Bus>>,
    ) -> Hub {
        let hub = Hub {
            config,
            outbox_frames,
            streams: RwLock::new(HashMap::new()),
            metrics,
            budget,
            bus,
        };
        if hub.bus.is_none() {
            hub.stream_or_create(DEFAULT_STREAM)
                .expect("the default stream fits any stream limit >= 1");
        }
        hub
    }

    /// The shared log, if nodes share a broker.
    pub fn bus(&self) -> Option<&Arc<Bus>> {
        self.bus.as_ref()
    }

    /// The metrics every stream and session records to.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The memory budget every stream is charged to.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// The stream called `name`, if it exists.
    pub fn stream(&self, name: &str) -> Option<Arc<Channel>> {
        self.streams
            .read()
            .expect("stream map poisoned")
            .get(name)
            .cloned()
    }

    /// The stream called `name`, created with a new epoch if needed (a single node).
    ///
    /// # Errors
    /// An invalid name, or the stream limit.
    pub fn stream_or_create(&self, name: &str) -> Result<Arc<Channel>, HubError> {
        match self.stream(name) {
            Some(s) => Ok(s),
            None => self.create(name, &stream::new_epoch()),
        }
    }

    /// Creates the stream `name` of `epoch`, replacing (and retiring) one of another
    /// epoch; an existing one of the same epoch is returned.
    fn create(&self, name: &str, epoch: &str) -> Result<Arc<Channel>, HubError> {
        validate_stream_name(name)?;
        let mut streams = self.streams.write().expect("stream map poisoned");
        if let Some(s) = streams.get(name) {
            if s.epoch() == epoch {
                return Ok(s.clone());
            }
        }
        let replaced = streams.remove(name);
        if replaced.is_none() && streams.len() >= self.config.max_streams {
            return Err(HubError::TooManyStreams(self.config.max_streams));
        }
        let stream = Arc::new(Channel::new(
            name.to_owned(),
            epoch,
            &self.config,
            self.outbox_frames,
            &self.budget,
        ));
        streams.insert(name.to_owned(), stream.clone());
        drop(streams);
        match replaced {
            Some(old) => {
                info!(
                    stream = name,
                    old = old.epoch(),
                    new = epoch,
                    "stream's log made anew: its subscribers reconnect"
                );
                old.retire();
            }
            None => self.metrics.stream_created(),
        }
        Ok(stream)
    }

    /// Publishes `state` (already validated) on the stream `name`, if it fits the
    /// memory budget (see the module docs for what happens when it does not). On a
    /// single node the stream sequences it; on a broker it is appended to the
    /// stream's log, and the reply comes once the log has stored it.
    ///
    /// # Errors
    /// An invalid stream name, the stream limit, the memory budget, or (on a
    /// broker) the log not taking it.
    pub async fn publish(&self, name: &str, state: State) -> Result<Published, HubError> {
        let Some(bus) = &self.bus else {
            let stream = self.admit(name, &state)?;
            let seq = stream.publish(state, &self.metrics);
            return Ok(Published {
                seq,
                subscribers: stream.subscribers(),
            });
        };
        self.check_room(name, &state)?;
        let seq = bus.append(name, &state).await.inspect_err(|_| {
            self.metrics.bus_dropped(BusDrop::PublishFailed);
        })?;
        self.metrics.bus_published();
        Ok(Published {
            seq,
            subscribers: self.applied(name, seq).await,
        })
    }

    /// Starts publishing `state` on the stream `name` without waiting for the log
    /// (`/ingest`, whose accepted states get no answer): on a single node it is
    /// published at once ([`Sending::Published`]); on a broker it is sent to the log and
    /// the log's confirmation is to be awaited with [`Hub::confirmed`], so a producer's
    /// states can be in flight together, in order.
    ///
    /// # Errors
    /// As [`Hub::publish`], for what can be known before the log answers.
    pub async fn send(&self, name: &str, state: State) -> Result<Sending, HubError> {
        let Some(bus) = &self.bus else {
            return self.publish(name, state).await.map(Sending::Published);
        };
        self.check_room(name, &state)?;
        match bus.send(name, &state).await {
            Ok(confirmation) => Ok(Sending::Confirming(confirmation)),
            Err(e) => {
                self.metrics.bus_dropped(BusDrop::PublishFailed);
                Err(e.into())
            }
        }
    }

    /// The log's answer to a [`Sending::Confirming`]: the seq, counted.
    ///
    /// # Errors
    /// [`HubError::Log`] when the log did not store it.
    pub async fn confirmed(&self, confirmation: Confirmation) -> Result<u64, HubError> {
        match confirmation.await {
            Ok(seq) => {
                self.metrics.bus_published();
                Ok(seq)
            }
            Err(e) => {
                self.metrics.bus_dropped(BusDrop::PublishFailed);
                Err(e.into())
            }
        }
    }

    /// Waits (at most [`APPLIED_WAIT`]) until this node has applied `seq` of `name`
    /// from the log; returns the stream's subscribers then.
    async fn applied(&self, name: &str, seq: u64) -> usize {
        match tokio::time::timeout(APPLIED_WAIT, self.wait_applied(name, seq)).await {
            Ok(stream) => stream.subscribers(),
            Err(_) => self.stream(name).map_or(0, |s| s.subscribers()),
        }
    }

    /// Waits until this node's stream `name` has applied `seq` from its log, and
    /// returns it: the stream may not exist yet, or be replaced (a log made anew) on
    /// the way. Unbounded: callers bound it.
    pub async fn wait_applied(&self, name: &str, seq: u64) -> Arc<Channel> {
        loop {
            if let Some(stream) = self.stream(name) {
                let mut head = stream.watch_head();
                let reached = head.wait_for(|h| *h >= seq || stream.is_retired()).await;
                if reached.is_ok() && !stream.is_retired() {
                    return stream;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Whether `state` would fit (making room if needed): the stream name, the stream
    /// limit for a new stream, the memory budget. It creates nothing: on a single node
    /// [`Hub::admit`] creates the stream next; on a broker its log does.
    fn check_room(&self, name: &str, state: &State) -> Result<(), HubError> {
        match self.stream(name) {
            Some(stream) => self.make_room(Some(&stream), stream.cost_of(state)),
            None => {
                validate_stream_name(name)?;
                if self.streams.read().expect("stream map poisoned").len()
                    >= self.config.max_streams
                {
                    return Err(HubError::TooManyStreams(self.config.max_streams));
                }
                // A first state's view, the sequencer's copy and room for its frames.
                self.make_room(None, 4 * memory::state_bytes(state))
            }
        }
    }

    /// The stream `name` (created if needed) once `state` fits the memory budget.
    fn admit(&self, name: &str, state: &State) -> Result<Arc<Channel>, HubError> {
        self.check_room(name, state)?;
        self.stream_or_create(name)
    }

    /// Makes room for `cost` more bytes on `stream` (`None`: a stream to be created),
    /// shortening histories if needed.
    fn make_room(&self, stream: Option<&Channel>, cost: usize) -> Result<(), HubError> {
        let limit = self.budget.limit();
        if cost > limit {
            self.metrics.memory_action(MemoryAction::StateRefused);
            return Err(HubError::LargerThanBudget { bytes: cost, limit });
        }
        let ceiling = match stream {
            // Below the shared ceiling there is nothing to weigh.
            Some(stream) if !self.budget.fits(cost, SHARED_CEILING) && self.over_share(stream) => {
                SHARED_CEILING
            }
            Some(_) => Fraction::ALL,
            None => NEW_STREAM_CEILING,
        };
        // What is shed can be taken again before this state is (by other streams'
        // states, and frames encoded since), so histories are shortened until it fits
        // or there is nothing left to shed.
        while !self.budget.fits(cost, ceiling) {
            if !self.shed(self.budget.shortfall(cost, ceiling)) {
                break;
            }
        }
        // A state for an existing stream replaces its newest one, which stays only as
        // long as the next state needs it as a base.
        let replaced = stream.map_or(0, Channel::newest_bytes);
        if self.budget.fits(cost.saturating_sub(replaced), ceiling) {
            return Ok(());
        }
        let used = self.budget.used();
        if let Some(stream) = stream {
            self.metrics.memory_action(MemoryAction::StateRefused);
            Err(if ceiling == SHARED_CEILING {
                HubError::OverShare {
                    held: stream.account().used(),
                    used,
                    limit,
                    ceiling,
                }
            } else {
                HubError::OverBudget {
                    bytes: cost,
                    used,
                    limit,
                }
            })
        } else {
            self.metrics.memory_action(MemoryAction::StreamRefused);
            Err(HubError::NoMemoryForStream {
                used,
                limit,
                ceiling,
            })
        }
    }

    /// Whether `stream` holds more than an equal share of the budget among the streams
    /// holding anything: what its subscribers still hold, it cannot shed, so past
    /// [`SHARED_CEILING`] the rest is kept for the others.
    fn over_share(&self, stream: &Channel) -> bool {
        let holding = (self.streams.read().expect("stream map poisoned").values())
            .filter(|s| s.account().used() > 0)
            .count();
        stream.account().used() > self.budget.limit() / holding.max(1)
    }

    /// Shortens histories until about `bytes` are given back: the stream holding the
    /// most first. Whether anything was: bytes given back or states dropped (those
    /// still held by a subscriber give back their bytes when it lets go).
    fn shed(&self, bytes: usize) -> bool {
        let mut streams = self.streams();
        streams.sort_by_key(|s| std::cmp::Reverse(s.account().used()));
        let (mut freed, mut any) = (0, false);
        for stream in streams {
            if freed >= bytes {
                break;
            }
            let (given, dropped) = stream.shed(bytes - freed);
            freed += given;
            any |= given > 0 || dropped > 0;
            self.metrics.history_shed(dropped);
        }
        self.metrics.memory_action(MemoryAction::HistoryShortened);
        any
    }

    /// Applies what the logs hold, in each log's order, until `shutdown` (the bus the
    /// followers send through lives as long as this hub, so the queue never closes).
    pub async fn follow_logs(
        &self,
        mut logs: mpsc::Receiver<FromLog>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let from_log = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = logs.recv() => match next {
                    Some(f) => f,
                    None => return,
                },
            };
            match from_log {
                FromLog::Opened { stream, epoch } => {
                    if let Err(e) = self.open(&stream, &epoch) {
                        warn!(error = %e, stream = %stream, "a log on the broker this node cannot follow");
                        self.refused_log(&stream, &e);
                    }
                }
                FromLog::Entry(entry) => self.follow(entry),
            }
        }
    }

    /// The stream `name` of `epoch`, for its log: created (or replaced, when the log
    /// was made anew) if the stream limit and the memory budget allow.
    fn open(&self, name: &str, epoch: &str) -> Result<Arc<Channel>, HubError> {
        match self.stream(name) {
            Some(s) if s.epoch() == epoch => Ok(s),
            _ => self.create(name, epoch),
        }
    }

    /// Applies one log entry to its stream. An entry this node cannot hold is
    /// counted and skipped; the stream's next state is then a keyframe here.
    fn follow(&self, entry: Logged) {
        self.metrics.bus_received();
        let Logged {
            stream: name,
            epoch,
            seq,
            state,
        } = entry;
        let taken = self.open(&name, &epoch).and_then(|stream| {
            self.make_room(Some(&stream), stream.cost_of(&state))?;
            Ok(stream.follow(seq, state, &self.metrics))
        });
        match taken {
            Ok(true) => {}
            Ok(false) => self.metrics.bus_dropped(BusDrop::Stale),
            Err(e) => self.refused_log(&name, &e),
        }
    }

    /// Counts a log (or an entry of it) this node cannot hold. A stream past the
    /// stream limit is warned about once, when its log is opened; its entries only
    /// count.
    fn refused_log(&self, name: &str, e: &HubError) {
        match e {
            HubError::TooManyStreams(_) | HubError::InvalidStreamName(_) => {
                debug!(error = %e, stream = %name, "log entry for a stream this node cannot hold");
            }
            _ => warn!(error = %e, stream = %name, "log entry this node cannot hold"),
        }
        self.metrics.bus_dropped(match e {
            HubError::TooManyStreams(_) | HubError::InvalidStreamName(_) => BusDrop::StreamLimit,
            _ => BusDrop::MemoryLimit,
        });
    }

    /// Every stream, sorted by name.
    pub fn streams(&self) -> Vec<Arc<Channel>> {
        let mut all: Vec<_> = self
            .streams
            .read()
            .expect("stream map poisoned")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// The stream a subscriber asked for.
    ///
    /// # Errors
    /// [`HubError::UnknownStream`] when no producer has created it.
    pub fn subscribe_to(&self, name: &str) -> Result<Arc<Channel>, HubError> {
        self.stream(name)
            .ok_or_else(|| HubError::UnknownStream(name.to_owned()))
    }
}

/// 1 to 64 characters of `A-Z a-z 0-9 _ - .`
pub fn validate_stream_name(name: &str) -> Result<(), HubError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(HubError::InvalidStreamName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::Tolerance;

    fn hub(max_streams: usize) -> Hub {
        hub_within(max_streams, 64 << 20, 8)
    }

    fn hub_within(max_streams: usize, budget: usize, history: usize) -> Hub {
        let config = StreamConfig {
            tolerance: Tolerance::LOSSLESS,
            keyframe_interval: 10,
            history,
            max_streams,
            frame_cache_bytes: 1 << 20,
            precision_classes: vec![],
            summary_bins: 16,
        };
        let metrics = Metrics::new(false, tokio_util::task::TaskTracker::new()).unwrap();
        Hub::new(config, 8, Arc::new(metrics), Budget::new(budget), None)
    }

    fn state() -> State {
        sized(1, 1)
    }

    fn sized(step: u64, n: usize) -> State {
        State {
            step,
            phases: vec![0.5 + step as f64 * 1e-3; n],
            spins: vec![],
            energy: 0.0,
            timestamp: None,
        }
    }

    fn history_len(h: &Hub, name: &str) -> usize {
        h.stream(name).unwrap().retained().1
    }

    #[tokio::test]
    async fn near_the_budget_the_hub_degrades_in_order() {
        // 8 KiB views (1,024 phases) under a 1 MiB budget, history up to 1,000 states.
        let h = hub_within(16, 1 << 20, 1000);
        let budget = h.budget().clone();
        // 1. Shorter history: 300 states (2.4 MiB of views) are all accepted.
        for step in 1..=300 {
            h.publish("a", sized(step, 1024)).await.unwrap();
        }
        let kept = history_len(&h, "a");
        assert!(kept < 300 && kept > 50, "{kept} states kept");
        assert!(budget.used() <= budget.limit());
        // A second stream takes its share from the first, the larger one.
        for step in 1..=40 {
            h.publish("b", sized(step, 1024)).await.unwrap();
        }
        assert!(history_len(&h, "a") < kept);
        assert_eq!(history_len(&h, "b"), 40);
        // 2. New streams: each first state of 64 KiB fits while the budget stays under
        // 90%; after that a new stream is refused, though the histories could still
        // shrink no further than one state each.
        let mut created = 0;
        let refused = loop {
            match h.publish(&format!("s{created}"), sized(1, 8192)).await {
                Ok(_) => created += 1,
                Err(e) => break e,
            }
            assert!(created < 16, "never refused");
        };
        assert!(
            matches!(refused, HubError::NoMemoryForStream { .. }),
            "{refused:?}"
        );
        assert!(created >= 3, "{created}");
        assert!(budget.used() <= budget.limit());
        // Existing streams still take states of their size.
        h.publish("a", sized(301, 1024)).await.unwrap();
        h.publish("s0", sized(2, 8192)).await.unwrap();
        // 3. A state that does not fit what is left: 507; past the whole budget: 413.
        // (s0 may by now hold more than an equal share of the budget among the streams
        // holding anything: then it is told that, which is also a 507.)
        let r = h.publish("s0", sized(3, 70_000)).await;
        assert!(
            matches!(
                r,
                Err(HubError::OverBudget { .. } | HubError::OverShare { .. })
            ),
            "{r:?}"
        );
        assert!(matches!(
            h.publish("s0", sized(4, 200_000)).await,
            Err(HubError::LargerThanBudget { .. })
        ));
        // Nothing was lost: the refused states left the streams as they were.
        assert_eq!(h.stream("s0").unwrap().head().step, 2);
        assert!(budget.used() <= budget.limit());
    }

    /// One stream's states held by its subscribers (which it cannot shed) fill the
    /// budget: past 90% it is refused, and another stream's states still fit.
    #[tokio::test]
    async fn a_stream_whose_subscribers_hold_the_budget_leaves_room_for_others() {
        let h = hub_within(16, 1 << 20, 1000);
        let budget = h.budget().clone();
        h.publish("small", sized(1, 16)).await.unwrap();
        // Subscribers of "big" still hold every state it took (8 KiB views).
        let (mut held, mut step) = (Vec::new(), 0);
        let refused = loop {
            step += 1;
            match h.publish("big", sized(step, 1024)).await {
                Ok(_) => held.push(h.stream("big").unwrap().latest().unwrap()),
                Err(e) => break e,
            }
            assert!(step < 200, "never refused");
        };
        assert!(matches!(refused, HubError::OverShare { .. }), "{refused:?}");
        let ceiling = SHARED_CEILING.of(budget.limit());
        assert!(
            budget.used() <= ceiling + 2 * (1024 * 8 + 1024),
            "{} of {ceiling}",
            budget.used()
        );
        // The small stream still takes states, even ones twice the big stream's; the
        // big one none.
        for step in 2..=20 {
            h.publish("small", sized(step, 2048)).await.unwrap();
        }
        assert_eq!(h.stream("small").unwrap().head().step, 20);
        assert!(h.publish("big", sized(step, 1024)).await.is_err());
        // Once its subscribers let go, the big stream takes states again.
        drop(held);
        h.publish("big", sized(step, 1024)).await.unwrap();
        assert!(budget.used() <= budget.limit());
    }

    #[tokio::test]
    async fn streams_are_created_by_publishing_up_to_the_limit() {
        let h = hub(2);
        assert!(h.stream(DEFAULT_STREAM).is_some());
        assert_eq!(h.publish("lab-1", state()).await.unwrap().seq, 1);
        assert_eq!(h.publish("lab-1", state()).await.unwrap().seq, 2);
        assert_eq!(
            h.publish("lab-2", state()).await,
            Err(HubError::TooManyStreams(2))
        );
        assert_eq!(
            h.subscribe_to("nope").unwrap_err(),
            HubError::UnknownStream("nope".into())
        );
        let names: Vec<_> = h.streams().iter().map(|s| s.name().to_owned()).collect();
        assert_eq!(names, vec!["default", "lab-1"]);
    }

    #[test]
    fn stream_names_are_checked() {
        for bad in ["", "a b", "x/y", &"z".repeat(65), "é"] {
            assert!(validate_stream_name(bad).is_err(), "{bad:?}");
        }
        for good in ["default", "lab.1", "A_b-c", &"z".repeat(64)] {
            assert!(validate_stream_name(good).is_ok(), "{good:?}");
        }
    }
}
