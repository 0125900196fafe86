//! The [`Hub`]: every stream of this node by name, the limit on streams, and the entry
//! points the transport uses to publish states and to subscribe. When nodes share a
//! broker, the hub is given the [`Bus`] it forwards what it sequences to, and applies
//! what other nodes sequenced ([`Hub::apply_remote`]).
//!
//! Each stream is a [`Channel`] (`fanout/`): its sequencing, history and broadcast.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use tracing::warn;

use crate::{
    bus::{Bus, Inbound},
    config::StreamConfig,
    fanout::Channel,
    metrics::{BusDrop, Metrics},
    model::State,
};

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
}

/// What publishing a state did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The seq the state got.
    pub seq: u64,
    /// Subscribers of the stream at that moment.
    pub subscribers: usize,
}

/// All streams of this node.
#[derive(Debug)]
pub struct Hub {
    config: StreamConfig,
    outbox_frames: usize,
    streams: RwLock<HashMap<String, Arc<Channel>>>,
    metrics: Arc<Metrics>,
    /// Where sequenced states also go when several nodes share a broker.
    bus: Option<Bus>,
}

impl Hub {
    /// A hub with the default stream already created; with a `bus`, what this node
    /// sequences is also forwarded to the other nodes.
    pub fn new(
        config: StreamConfig,
        outbox_frames: usize,
        metrics: Arc<Metrics>,
        bus: Option<Bus>,
    ) -> Hub {
        let hub = Hub {
            config,
            outbox_frames,
            streams: RwLock::new(HashMap::new()),
            metrics,
            bus,
        };
        hub.stream_or_create(DEFAULT_STREAM)
            .expect("the default stream fits any stream limit >= 1");
        hub
    }

    /// The metrics every stream and session records to.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The stream called `name`, if it exists.
    pub fn stream(&self, name: &str) -> Option<Arc<Channel>> {
        self.streams
            .read()
            .expect("stream map poisoned")
            .get(name)
            .cloned()
    }

    /// The stream called `name`, created if needed.
    ///
    /// # Errors
    /// An invalid name, or the stream limit.
    pub fn stream_or_create(&self, name: &str) -> Result<Arc<Channel>, HubError> {
        if let Some(s) = self.stream(name) {
            return Ok(s);
        }
        validate_stream_name(name)?;
        let mut streams = self.streams.write().expect("stream map poisoned");
        if let Some(s) = streams.get(name) {
            return Ok(s.clone());
        }
        if streams.len() >= self.config.max_streams {
            return Err(HubError::TooManyStreams(self.config.max_streams));
        }
        let stream = Arc::new(Channel::new(
            name.to_owned(),
            &self.config,
            self.outbox_frames,
        ));
        streams.insert(name.to_owned(), stream.clone());
        self.metrics.stream_created();
        Ok(stream)
    }

    /// Publishes `state` (already validated) on the stream `name`.
    ///
    /// # Errors
    /// An invalid stream name, or the stream limit.
    pub fn publish(&self, name: &str, state: State) -> Result<Published, HubError> {
        let stream = self.stream_or_create(name)?;
        let seq = stream.publish_and(state, &self.metrics, |sequenced| {
            if let Some(bus) = &self.bus {
                bus.forward(name, sequenced);
            }
        });
        Ok(Published {
            seq,
            subscribers: stream.subscribers(),
        })
    }

    /// Applies what other nodes sequenced, as it arrives from the bus, until the bus
    /// closes.
    pub async fn apply_remote(&self, mut inbound: Inbound) {
        while let Some((name, update)) = inbound.recv().await {
            self.metrics.bus_received();
            match self.stream_or_create(&name) {
                Ok(s) => {
                    if !s.apply(update, &self.metrics) {
                        self.metrics.bus_dropped(BusDrop::Stale);
                    }
                }
                Err(e) => {
                    warn!(error = %e, stream = %name, "bus update for a stream this node cannot hold");
                    self.metrics.bus_dropped(BusDrop::StreamLimit);
                }
            }
        }
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
        let config = StreamConfig {
            tolerance: Tolerance::LOSSLESS,
            keyframe_interval: 10,
            history: 8,
            max_streams,
        };
        let metrics = Metrics::new(false, tokio_util::task::TaskTracker::new()).unwrap();
        Hub::new(config, 8, Arc::new(metrics), None)
    }

    fn state() -> State {
        State {
            step: 1,
            phases: vec![0.5],
            spins: vec![],
            energy: 0.0,
            timestamp: None,
        }
    }

    #[test]
    fn streams_are_created_by_publishing_up_to_the_limit() {
        let h = hub(2);
        assert!(h.stream(DEFAULT_STREAM).is_some());
        assert_eq!(h.publish("lab-1", state()).unwrap().seq, 1);
        assert_eq!(h.publish("lab-1", state()).unwrap().seq, 2);
        assert_eq!(
            h.publish("lab-2", state()),
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
