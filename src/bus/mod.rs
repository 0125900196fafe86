//! How states reach every node. With no broker configured there is no bus: the hub
//! hands each sequenced state straight to its stream (the embedded default). With
//! `PCC_NATS_URL`, the hub is given a [`Bus`]: every state this node sequences is
//! forwarded to the other nodes, and what they sequenced arrives as [`Inbound`] for the
//! hub to apply. The broker client itself is in [`nats`].
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

pub mod nats;

use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;
use tokio::sync::mpsc;

use crate::{
    codec::pb,
    memory::{self, Account, Charge, Fraction},
    metrics::{BusDrop, Metrics},
    model::{Limits, State},
    stream::Sequenced,
};

/// Subject prefix of stream updates; the stream name follows.
pub const SUBJECT_PREFIX: &str = "phasecast.v1.stream.";

/// What other nodes sequenced, as (stream name, update), in the order received.
pub type Inbound = mpsc::Receiver<(String, Sequenced)>;

/// An update waiting for the broker client, charged to its stream's memory account
/// until it is published.
#[derive(Debug)]
pub struct Outbound {
    /// The stream's name.
    pub stream: String,
    /// The update.
    pub update: Sequenced,
    _charge: Charge,
}

/// The sending half: what the hub holds to forward what this node sequences.
#[derive(Debug, Clone)]
pub struct Bus {
    outbound: mpsc::Sender<Outbound>,
    metrics: Arc<Metrics>,
}

impl Bus {
    /// A bus whose updates wait in a queue of `queue` for the broker client.
    pub fn new(queue: usize, metrics: Arc<Metrics>) -> (Bus, mpsc::Receiver<Outbound>) {
        let (outbound, queued) = mpsc::channel(queue.max(1));
        (Bus { outbound, metrics }, queued)
    }

    /// Queues `update` of `stream` for publishing, charged to `account`. Never
    /// waits: when the queue is full (the broker is away) or the memory budget has no
    /// room for it, the update is dropped and counted.
    pub fn forward(&self, stream: &str, update: &Sequenced, account: &Arc<Account>) {
        let bytes = memory::state_bytes(&update.view);
        if !account.budget().fits(bytes, Fraction::ALL) {
            self.metrics.bus_dropped(BusDrop::MemoryLimit);
            return;
        }
        let queued = Outbound {
            stream: stream.to_owned(),
            update: update.clone(),
            _charge: account.charge(bytes),
        };
        if self.outbound.try_send(queued).is_err() {
            self.metrics.bus_dropped(BusDrop::QueueFull);
        }
    }
}

/// Encodes an update for the bus.
pub fn encode_update(update: &Sequenced, origin: &str) -> Bytes {
    pb::StreamUpdate {
        seq: update.seq,
        view: Some(pb::PccState::from(&update.view)),
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
    let state = State::try_from(view).map_err(|e| e.to_string())?;
    state
        .validate(&Limits {
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
        let seed = include_bytes!("../../fuzz/seeds/bus_update/update.pb");
        let (update, origin) = decode_update(seed).expect("seed decodes");
        assert_eq!(
            (update.seq, update.view.step, origin.as_str()),
            (42, 7, "node-a")
        );
        assert_eq!(update.view.spins, vec![1, -1, 1, 1]);
        assert!(update.keyframe);
    }
}
