//! How states reach every node. With no broker configured, there is no bus: the hub
//! hands each sequenced state straight to its stream (the embedded default). With
//! `PCC_NATS_URL`, every node also publishes what it sequences on NATS and applies
//! what the others publish, so all nodes hold the same seqs and views.
//!
//! Ordering and failure (see also `docs/scale-out.md`):
//! - The node that accepts a state assigns its seq and view under the stream's lock,
//!   applies it locally, and queues it, in that order, for publishing on
//!   `phasecast.v1.stream.<name>` as a protobuf `StreamUpdate`. One queue per node,
//!   one publishing task: NATS keeps a publisher's order, so every node sees the
//!   states of one producer in seq order.
//! - A node applies a received update only when its seq is above the newest it has
//!   (duplicates and late arrivals are dropped and counted). After a gap (a broker
//!   outage, a node that just started) the next update is a keyframe on that node:
//!   its subscribers get a full frame and are right again.
//! - The broker being unreachable is not fatal: the client reconnects by itself;
//!   the node keeps serving its own producers and subscribers; updates that cannot
//!   be queued are dropped and counted, and the other nodes heal with a keyframe.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    codec::{self, pb},
    fanout::Hub,
    metrics::{BusDrop, Metrics},
    model::State,
    stream::Sequenced,
};

/// Subject prefix of stream updates; the stream name follows.
pub const SUBJECT_PREFIX: &str = "phasecast.v1.stream.";

/// Settings for the NATS bus.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// NATS server URL(s), comma-separated (`nats://127.0.0.1:4222`).
    pub url: String,
    /// This node's id, carried in every update it publishes.
    pub node_id: String,
    /// Updates waiting to be published; past it they are dropped (and counted).
    pub queue: usize,
}

/// The sending half: what the hub holds to publish what this node sequences.
#[derive(Debug, Clone)]
pub struct Bus {
    outbound: mpsc::Sender<(String, Sequenced)>,
    metrics: Arc<Metrics>,
}

impl Bus {
    /// Queues `update` of `stream` for publishing. Never waits: when the queue is
    /// full (the broker is away), the update is dropped and counted.
    pub fn forward(&self, stream: &str, update: &Sequenced) {
        if self
            .outbound
            .try_send((stream.to_owned(), update.clone()))
            .is_err()
        {
            self.metrics.bus_dropped(BusDrop::QueueFull);
        }
    }
}

/// Encodes an update for the bus.
pub fn encode_update(update: &Sequenced, origin: &str) -> Bytes {
    let view = &update.view;
    pb::StreamUpdate {
        seq: update.seq,
        view: Some(pb::PccState {
            step: view.step,
            phases: view.phases.clone(),
            spins: view.spins.iter().map(|s| i32::from(*s)).collect(),
            energy: view.energy,
            timestamp: view.timestamp,
        }),
        keyframe: update.keyframe,
        origin: origin.to_owned(),
    }
    .encode_to_vec()
    .into()
}

/// Decodes an update from the bus: the update and its origin node.
///
/// # Errors
/// Bytes that are not a `StreamUpdate` with a valid view.
pub fn decode_update(bytes: &[u8]) -> Result<(Sequenced, String), String> {
    let message = pb::StreamUpdate::decode(bytes).map_err(|e| e.to_string())?;
    let view = message.view.ok_or("update without a view")?;
    let state: State = codec::decode_state(codec::Encoding::Protobuf, &view.encode_to_vec())
        .map_err(|e| e.to_string())?;
    state
        .validate(&crate::model::Limits {
            max_oscillators: usize::MAX,
        })
        .map_err(|e| e.to_string())?;
    Ok((
        Sequenced {
            seq: message.seq,
            view: state,
            keyframe: message.keyframe,
        },
        message.origin,
    ))
}

/// Connects to NATS (retrying in the background until the broker answers) and
/// spawns the publishing and receiving tasks on `tracker`. Returns the handle the
/// hub publishes through.
///
/// # Errors
/// An invalid URL.
pub async fn spawn_nats(
    config: BusConfig,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> Result<Bus, async_nats::ConnectError> {
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
        .connect(config.url.as_str())
        .await?;
    let (outbound, mut queue) = mpsc::channel::<(String, Sequenced)>(config.queue.max(1));

    let publisher = client.clone();
    let origin = config.node_id.clone();
    let publish_metrics = metrics.clone();
    let stop = shutdown.clone();
    tracker.spawn(async move {
        loop {
            let (stream, update) = tokio::select! {
                _ = stop.cancelled() => break,
                next = queue.recv() => match next {
                    Some(n) => n,
                    None => break,
                },
            };
            let subject = format!("{SUBJECT_PREFIX}{stream}");
            match publisher
                .publish(subject, encode_update(&update, &origin))
                .await
            {
                Ok(()) => publish_metrics.bus_published(),
                Err(e) => {
                    debug!(error = %e, "bus publish failed");
                    publish_metrics.bus_dropped(BusDrop::PublishFailed);
                }
            }
        }
        let _ = publisher.flush().await;
    });

    let node_id = config.node_id.clone();
    let receive_metrics = metrics.clone();
    let subscriber = client.clone();
    tracker.spawn(async move {
        let mut subscription = match subscriber.subscribe(format!("{SUBJECT_PREFIX}>")).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "bus subscribe failed: this node will not receive other nodes' states");
                return;
            }
        };
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = subscription.next() => match m {
                    Some(m) => m,
                    None => break,
                },
            };
            let Some(stream) = message.subject.as_str().strip_prefix(SUBJECT_PREFIX) else {
                continue;
            };
            let (update, origin) = match decode_update(&message.payload) {
                Ok(u) => u,
                Err(e) => {
                    warn!(error = %e, stream, "undecodable bus update dropped");
                    receive_metrics.bus_dropped(BusDrop::Undecodable);
                    continue;
                }
            };
            if origin == node_id {
                continue; // applied when it was sequenced here
            }
            receive_metrics.bus_received();
            match hub.stream_or_create(stream) {
                Ok(s) => {
                    if !s.apply(update, &receive_metrics) {
                        receive_metrics.bus_dropped(BusDrop::Stale);
                    }
                }
                Err(e) => {
                    warn!(error = %e, stream, "bus update for a stream this node cannot hold");
                    receive_metrics.bus_dropped(BusDrop::StreamLimit);
                }
            }
        }
        let _ = subscription.unsubscribe().await;
    });
    info!(url = %config.url, node = %config.node_id, "bus: NATS");
    Ok(Bus { outbound, metrics })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_round_trip_and_bad_ones_are_refused() {
        let update = Sequenced {
            seq: 42,
            view: State {
                step: 7,
                phases: vec![0.5, -1.25],
                spins: vec![1, -1],
                energy: 3.0,
                timestamp: Some(1.5),
            },
            keyframe: true,
        };
        let bytes = encode_update(&update, "node-a");
        assert_eq!(decode_update(&bytes), Ok((update, "node-a".to_owned())));
        assert!(decode_update(b"\xff\xff").is_err());
        let no_view = pb::StreamUpdate {
            seq: 1,
            ..Default::default()
        }
        .encode_to_vec();
        assert!(decode_update(&no_view).is_err());
    }

    /// The fuzzing seed is a valid update, so the fuzzer starts from the real shape.
    #[test]
    fn fuzz_seed_is_a_valid_update() {
        let seed = include_bytes!("../fuzz/seeds/bus_update/update.pb");
        let (update, origin) = decode_update(seed).expect("seed decodes");
        assert_eq!(
            (update.seq, update.view.step, origin.as_str()),
            (42, 7, "node-a")
        );
        assert_eq!(update.view.spins, vec![1, -1, 1, 1]);
        assert!(update.keyframe);
    }
}
