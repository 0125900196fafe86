//! The JetStream side of the bus: [`Bus::append`] adds a producer's state to its
//! stream's log and returns once the log has stored it; one follower per log reads it
//! in order and hands every entry on as [`FromLog`]; discovery finds logs other nodes
//! made. It knows nothing of views, subscribers or the hub.

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::Duration,
};

use async_nats::{
    connection::State as Connection,
    jetstream::{
        self,
        consumer::{push, DeliverPolicy},
        context::PublishAckFuture,
        stream::{self, DiscardPolicy, StorageType},
    },
    HeaderMap,
};
use futures_util::StreamExt;
use tokio::{sync::mpsc, time::Instant};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};

use super::{
    decode_entry, encode_entry, epoch_of, log_name, log_subject, replay_from, stream_of_log,
    LogError, Logged, LOG_NAME_PREFIX,
};
use crate::{
    config::{BusConfig, LogStorage, StreamConfig},
    metrics::{BusDrop, Metrics},
    model::State,
};

/// How often the logs on the broker are listed (advisories announce new ones sooner).
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(2);

/// Pause between attempts to append or to read a log after an error.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How long a log's reader waits for its next entry before it asks the log how far
/// it reaches: a consumer that stopped delivering while the log has more is made
/// again (see [`Bus::read_log`]).
const STALL_CHECK: Duration = Duration::from_secs(3);

/// Where JetStream announces a stream it created; the stream's name is the last token.
const CREATED_ADVISORIES: &str = "$JS.EVENT.ADVISORY.STREAM.CREATED.*";

/// An append sent to the log, waiting for the log's confirmation: the seq, or why
/// the state was not stored. Confirmations of one node's appends come in the order
/// they were sent.
pub type Confirmation = Pin<Box<dyn Future<Output = Result<u64, LogError>> + Send>>;

/// What a follower reports, in log order.
#[derive(Debug, Clone, PartialEq)]
pub enum FromLog {
    /// The log of a stream exists, with this epoch (it may have no entry yet).
    Opened {
        /// The phasecast stream.
        stream: String,
        /// The log's epoch.
        epoch: String,
    },
    /// The next entry of a log.
    Entry(Logged),
}

/// What [`spawn`] returns: the handle the hub appends with, and what the followers read.
#[derive(Debug)]
pub struct Spawned {
    /// Appends states and starts followers.
    pub bus: Arc<Bus>,
    /// Every log's entries, in each log's order.
    pub logs: mpsc::Receiver<FromLog>,
}

/// The broker client, the logs this node appends to, and their followers.
#[derive(Debug)]
pub struct Bus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    config: BusConfig,
    /// States a node keeps for resume, and how often a keyframe comes: a log keeps
    /// both, so a replay from its keyframe covers the whole history.
    history: u64,
    keyframe_interval: u64,
    /// Logs known to exist (made or found by this node's appends and listings), by
    /// stream name: an append to one of them skips the round trip that makes it.
    known: Mutex<HashSet<String>>,
    /// Streams with a follower.
    following: Mutex<HashSet<String>>,
    deliver: mpsc::Sender<FromLog>,
    /// Makes every append's `Nats-Msg-Id` unique, so a retried append is stored once.
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// Connects to NATS (retrying in the background until the broker answers) and starts
/// discovering logs. The followers' entries come out of [`Spawned::logs`].
///
/// # Errors
/// An invalid URL.
pub async fn spawn(
    config: BusConfig,
    stream: &StreamConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<Spawned, async_nats::ConnectError> {
    let events = metrics.clone();
    let client = async_nats::ConnectOptions::new()
        .name(format!("phasecast {}", config.node_id))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .event_callback(move |event| {
            let metrics = events.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        info!("bus connected");
                        metrics.bus_connected(true);
                    }
                    async_nats::Event::Disconnected => {
                        warn!("bus disconnected; reconnecting");
                        metrics.bus_connected(false);
                    }
                    other => debug!(event = %other, "bus event"),
                }
            }
        })
        .connect(
            config
                .url
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .collect::<Vec<_>>(),
        )
        .await?;
    let jetstream = jetstream::ContextBuilder::new()
        .timeout(config.append_timeout)
        .build(client.clone());
    let (deliver, logs) = mpsc::channel(1024);
    info!(url = %config.url, node = %config.node_id, "bus: NATS JetStream");
    let bus = Arc::new(Bus {
        client,
        jetstream,
        history: stream.history.max(1) as u64,
        keyframe_interval: stream.keyframe_interval.max(1),
        config,
        known: Mutex::default(),
        following: Mutex::default(),
        deliver,
        next_id: AtomicU64::new(0),
        metrics,
        shutdown,
        tracker: tracker.clone(),
    });
    tracker.spawn(bus.clone().discover());
    Ok(Spawned { bus, logs })
}

impl Bus {
    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// Whether the broker is connected now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == Connection::Connected
    }

    /// Appends `state` to the log of `stream` (made if needed) and returns its seq,
    /// once the log has stored it. Retries within the append timeout; a retry is
    /// stored once (JetStream's duplicate detection).
    ///
    /// # Errors
    /// [`LogError::Unreachable`] when the broker is not connected;
    /// [`LogError::NotStored`] when the log did not confirm in time.
    pub async fn append(self: &Arc<Self>, stream: &str, state: &State) -> Result<u64, LogError> {
        if !self.is_connected() {
            return Err(LogError::Unreachable);
        }
        let deadline = Instant::now() + self.config.append_timeout;
        let id = self.next_msg_id();
        let payload = encode_entry(state);
        loop {
            let attempt = async {
                let ack = self
                    .publish(stream, &id, payload.clone())
                    .await?
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<u64, String>(ack.sequence)
            };
            let error = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(seq)) => return Ok(seq),
                Ok(Err(e)) => e,
                Err(_) => "no confirmation in time".to_owned(),
            };
            if !self.is_connected() {
                return Err(LogError::Unreachable);
            }
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(LogError::NotStored(format!(
                    "{error} (PCC_NATS_APPEND_TIMEOUT {:?})",
                    self.config.append_timeout
                )));
            }
            debug!(%error, stream, "append failed; retrying");
            // A log deleted behind our back is made again on the next attempt.
            self.known.lock().expect("bus lock").remove(stream);
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Sends `state` to the log of `stream` (made if needed) without waiting for the
    /// log's confirmation, so a producer's states can be in flight together (on
    /// `/ingest`), in order; the [`Confirmation`] tells the seq, within the append
    /// timeout. Not retried: a state not confirmed is reported, and the producer told.
    ///
    /// # Errors
    /// [`LogError::Unreachable`] when the broker is not connected;
    /// [`LogError::NotStored`] when the log cannot be made or the state not sent.
    pub async fn send(
        self: &Arc<Self>,
        stream: &str,
        state: &State,
    ) -> Result<Confirmation, LogError> {
        if !self.is_connected() {
            return Err(LogError::Unreachable);
        }
        let wait = self.config.append_timeout;
        let deadline = Instant::now() + wait;
        let id = self.next_msg_id();
        let sent = self.publish(stream, &id, encode_entry(state));
        let ack = match tokio::time::timeout_at(deadline, sent).await {
            Ok(Ok(ack)) => ack,
            Ok(Err(e)) => return Err(LogError::NotStored(e)),
            Err(_) => return Err(LogError::NotStored("not sent in time".to_owned())),
        };
        Ok(Box::pin(async move {
            match tokio::time::timeout_at(deadline, ack).await {
                Ok(Ok(ack)) => Ok(ack.sequence),
                Ok(Err(e)) => Err(LogError::NotStored(e.to_string())),
                Err(_) => Err(LogError::NotStored(format!(
                    "no confirmation within {wait:?} (PCC_NATS_APPEND_TIMEOUT)"
                ))),
            }
        }))
    }

    /// A new `Nats-Msg-Id`: unique per append of this node, the same for its retries.
    fn next_msg_id(&self) -> String {
        format!(
            "{}-{}",
            self.config.node_id,
            self.next_id.fetch_add(1, Relaxed)
        )
    }

    /// Sends one entry to the log of `stream` (made if needed) under the message id
    /// `id`; the returned future is the log's confirmation.
    async fn publish(
        self: &Arc<Self>,
        stream: &str,
        id: &str,
        payload: bytes::Bytes,
    ) -> Result<PublishAckFuture, String> {
        self.ensure_log(stream).await?;
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        self.jetstream
            .publish_with_headers(log_subject(stream), headers, payload)
            .await
            .map_err(|e| e.to_string())
    }

    /// Makes the log of `stream` if it does not exist, and follows it.
    ///
    /// # Errors
    /// The broker's answer when it cannot.
    pub async fn ensure_log(self: &Arc<Self>, stream: &str) -> Result<(), String> {
        if self.known.lock().expect("bus lock").contains(stream) {
            return Ok(());
        }
        self.jetstream
            .get_or_create_stream(self.log_config(stream))
            .await
            .map_err(|e| e.to_string())?;
        self.known
            .lock()
            .expect("bus lock")
            .insert(stream.to_owned());
        self.follow(stream);
        Ok(())
    }

    /// The settings a new log is made with: it keeps `history + keyframe interval`
    /// entries (and, if set, none older than the maximum age), dropping the oldest.
    fn log_config(&self, stream: &str) -> stream::Config {
        let replicas = self.config.replicas.unwrap_or_else(|| {
            // A clustered broker can keep three copies; a single server one.
            if self.client.server_info().cluster.is_some() {
                3
            } else {
                1
            }
        });
        let max_age = self.config.max_age.unwrap_or_default();
        // Retried appends are recognised for two minutes (JetStream's default), or
        // for the log's age if that is shorter.
        let duplicate_window = match self.config.max_age {
            Some(age) => age.min(Duration::from_secs(120)),
            None => Duration::from_secs(120),
        };
        stream::Config {
            name: log_name(stream),
            description: Some(format!("phasecast stream {stream:?}")),
            subjects: vec![log_subject(stream)],
            max_messages: i64::try_from(self.history + self.keyframe_interval).unwrap_or(i64::MAX),
            max_age,
            duplicate_window,
            storage: match self.config.storage {
                LogStorage::File => StorageType::File,
                LogStorage::Memory => StorageType::Memory,
            },
            num_replicas: replicas,
            discard: DiscardPolicy::Old,
            ..Default::default()
        }
    }

    /// Starts following the log of `stream`, unless it is followed already.
    pub fn follow(self: &Arc<Self>, stream: &str) {
        if !self
            .following
            .lock()
            .expect("bus lock")
            .insert(stream.to_owned())
        {
            return;
        }
        self.tracker
            .spawn(self.clone().follow_log(stream.to_owned()));
    }

    /// Lists the logs on the broker, follows each, and returns each stream with the
    /// seq of its newest entry now: what a starting node replays before it serves.
    ///
    /// # Errors
    /// The broker's answer when it cannot list them.
    pub async fn follow_existing(self: &Arc<Self>) -> Result<Vec<(String, u64)>, String> {
        let mut names = self.jetstream.stream_names();
        let mut found = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(|e| e.to_string())?;
            let Some(stream) = stream_of_log(&name) else {
                continue;
            };
            let info = self
                .jetstream
                .get_stream(&name)
                .await
                .map_err(|e| e.to_string())?;
            self.known.lock().expect("bus lock").insert(stream.clone());
            self.follow(&stream);
            found.push((stream, info.cached_info().state.last_sequence));
        }
        Ok(found)
    }

    /// Follows the logs other nodes make: announced by JetStream's advisories, and
    /// listed every [`DISCOVERY_INTERVAL`] (advisories are not kept while the broker
    /// is away).
    async fn discover(self: Arc<Self>) {
        let mut advisories = match self.client.subscribe(CREATED_ADVISORIES).await {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "no stream advisories: new logs are found by listing");
                None
            }
        };
        let mut listing = tokio::time::interval(DISCOVERY_INTERVAL);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = listing.tick() => {
                    if self.is_connected() {
                        if let Err(e) = self.follow_existing().await {
                            debug!(error = %e, "listing logs failed");
                        }
                    }
                }
                Some(advisory) = async { advisories.as_mut()?.next().await } => {
                    let created = advisory.subject.as_str().rsplit('.').next().unwrap_or("");
                    if created.starts_with(LOG_NAME_PREFIX) {
                        if let Some(stream) = stream_of_log(created) {
                            self.follow(&stream);
                        }
                    }
                }
            }
        }
    }

    /// Reads the log of `stream` in order until shutdown, starting again at the next
    /// entry it has not read whenever reading fails (the broker away, a server of
    /// the cluster gone); from the log's replay point when the log was made anew.
    async fn follow_log(self: Arc<Self>, stream: String) {
        let mut next = None;
        while !self.shutdown.is_cancelled() {
            match self.read_log(&stream, &mut next).await {
                Ok(()) => break,
                Err(e) => {
                    debug!(error = %e, stream, "reading the log failed; reading again");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(RETRY_PAUSE) => {}
                    }
                }
            }
        }
    }

    /// One pass of [`Bus::follow_log`]: `next` is the (epoch, seq) to read next.
    async fn read_log(&self, stream: &str, next: &mut Option<(String, u64)>) -> Result<(), String> {
        let mut log = self
            .jetstream
            .get_stream(log_name(stream))
            .await
            .map_err(|e| e.to_string())?;
        let info = log.info().await.map_err(|e| e.to_string())?;
        let epoch = epoch_of(info.created.unix_timestamp_nanos());
        let start = match next {
            Some((e, seq)) if *e == epoch => *seq,
            _ => replay_from(
                info.state.first_sequence,
                info.state.last_sequence,
                self.history,
                self.keyframe_interval,
            ),
        };
        if next.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let opened = FromLog::Opened {
                stream: stream.to_owned(),
                epoch: epoch.clone(),
            };
            if self.deliver.send(opened).await.is_err() {
                return Ok(()); // the hub is gone
            }
            *next = Some((epoch.clone(), start));
        }
        // A push consumer: the broker sends each entry as it is stored (with flow
        // control). The client makes the consumer again after a gap or a reconnect;
        // after two missed idle heartbeats (a broker server gone with it, about 10 s)
        // it reports an error, and `follow_log` makes a new one. The client's own
        // remaking can hang: a consumer placed on a broker server that just died
        // (before the cluster noticed) never starts, and the client retries it
        // quietly forever. So when no entry came for `STALL_CHECK` while the log
        // holds entries past the next one, this pass ends and a new consumer is made.
        let consumer = log
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        loop {
            let message = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(()),
                m = tokio::time::timeout(STALL_CHECK, messages.next()) => match m {
                    Ok(Some(m)) => m.map_err(|e| e.to_string())?,
                    Ok(None) => return Err("the log's consumer ended".to_owned()),
                    Err(_) => {
                        let wanted = next.as_ref().map_or(start, |(_, seq)| *seq);
                        let last = log.info().await.map_err(|e| e.to_string())?.state.last_sequence;
                        if last >= wanted {
                            return Err(format!(
                                "the log's consumer stalled: no entry for {STALL_CHECK:?} while the log holds {wanted}..={last}"
                            ));
                        }
                        continue;
                    }
                },
            };
            let seq = message.info().map_err(|e| e.to_string())?.stream_sequence;
            *next = Some((epoch.clone(), seq + 1));
            let state = match decode_entry(&message.payload) {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, stream, seq, "undecodable log entry skipped");
                    self.metrics.bus_dropped(BusDrop::Undecodable);
                    continue;
                }
            };
            let entry = FromLog::Entry(Logged {
                stream: stream.to_owned(),
                epoch: epoch.clone(),
                seq,
                state,
            });
            if self.deliver.send(entry).await.is_err() {
                return Ok(()); // the hub is gone
            }
        }
    }
}
