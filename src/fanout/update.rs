//! One accepted state as every subscriber's session sees it: an [`Update`], shared
//! (`Arc`) by all of them, which encodes the frames they need on first use and caches
//! them, so subscribers in step share one encoding per format.
//!
//! This is also the one place that decides whether a delta is worth sending
//! ([`Update::frame_for`]): per encoding, a delta goes out only when it is smaller than
//! the full frame.

use std::{
    sync::{Mutex, OnceLock},
    time::Instant,
};

use axum::extract::ws::{Message, Utf8Bytes};
use bytes::Bytes;

use crate::{
    codec::{self, Encoding, FrameKind},
    delta::{self, Delta},
    metrics::Metrics,
    stream::Sequenced,
};

/// A frame ready to write: the WebSocket message (text for JSON, binary for
/// protobuf; cloning shares the bytes), its size and its kind.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The message.
    pub message: Message,
    /// Its payload size in bytes.
    pub len: usize,
    /// Full or delta.
    pub kind: FrameKind,
}

impl Encoded {
    /// Wraps encoded bytes as the message their encoding travels in: the one place
    /// that maps an encoding to a WebSocket message type on the server.
    fn new(encoding: Encoding, kind: FrameKind, bytes: Bytes, metrics: &Metrics) -> Encoded {
        let len = bytes.len();
        metrics.frame_encoded(encoding, kind, len);
        Encoded {
            message: message(encoding, bytes),
            len,
            kind,
        }
    }
}

/// Encoded bytes as the WebSocket message their encoding travels in: text for JSON,
/// binary for protobuf. Text is validated once here, then shared.
pub fn message(encoding: Encoding, bytes: Bytes) -> Message {
    if encoding.is_text() {
        Message::Text(Utf8Bytes::try_from(bytes).expect("the JSON encoder writes UTF-8"))
    } else {
        Message::Binary(bytes)
    }
}

/// At most this many catch-up deltas are cached per update; past it they are encoded
/// per subscriber.
const CATCH_UP_CACHE: usize = 8;

/// One accepted state, shared by every subscriber.
#[derive(Debug)]
pub struct Update {
    /// Seq of this state.
    pub seq: u64,
    /// The view subscribers in step hold at this seq.
    pub view: crate::model::State,
    /// Full frames only at this seq (a scheduled keyframe, a shape change, or a gap
    /// before it on this node).
    pub keyframe: bool,
    /// When the state was accepted (for the broadcast latency).
    pub accepted_at: Instant,
    /// The delta from the previous seq's view, for subscribers in step; `None` at a
    /// keyframe.
    step_delta: Option<Delta>,
    quantum_exp: Option<i32>,
    full: [OnceLock<Encoded>; 2],
    /// The frame for subscribers in step, per encoding: the delta, or the full frame
    /// where that is not bigger.
    in_step: [OnceLock<Encoded>; 2],
    /// Frames for subscribers that skipped frames, by (base seq, encoding). Bounded.
    catch_up: Mutex<Vec<(u64, Encoding, Encoded)>>,
}

impl Update {
    /// The update for `s`, following `prev` (the update before it on this node, if
    /// any). Without a `prev` one seq before and of the same shape, it is a keyframe.
    pub fn new(s: Sequenced, prev: Option<&Update>, quantum_exp: Option<i32>) -> Update {
        let step_delta = match prev {
            Some(p) if !s.keyframe && p.seq + 1 == s.seq && p.view.same_shape(&s.view) => {
                Some(delta::diff(&p.view, p.seq, &s.view, s.seq, quantum_exp))
            }
            _ => None,
        };
        Update {
            seq: s.seq,
            keyframe: s.keyframe || step_delta.is_none(),
            view: s.view,
            accepted_at: Instant::now(),
            step_delta,
            quantum_exp,
            full: Default::default(),
            in_step: Default::default(),
            catch_up: Mutex::new(Vec::new()),
        }
    }

    /// The full frame of this state.
    pub fn full(&self, encoding: Encoding, metrics: &Metrics) -> Encoded {
        self.full[encoding.index()]
            .get_or_init(|| {
                let bytes = codec::encode_full(encoding, self.seq, &self.view);
                Encoded::new(encoding, FrameKind::Full, bytes, metrics)
            })
            .clone()
    }

    /// The frame that brings a subscriber holding `held` (the update it was last sent,
    /// if any) to this state: the in-step delta, a catch-up delta from `held`, or the
    /// full frame, whichever is right and smallest.
    pub fn frame_for(
        &self,
        encoding: Encoding,
        held: Option<&Update>,
        metrics: &Metrics,
    ) -> Encoded {
        let full = || self.full(encoding, metrics);
        let Some(held) = held else { return full() };
        if self.keyframe || held.seq >= self.seq || !held.view.same_shape(&self.view) {
            return full();
        }
        if held.seq + 1 == self.seq {
            if let Some(d) = &self.step_delta {
                return self.in_step[encoding.index()]
                    .get_or_init(|| self.smaller_of(encoding, d, metrics))
                    .clone();
            }
        }
        let mut cache = self.catch_up.lock().expect("catch-up cache poisoned");
        if let Some((_, _, frame)) = cache
            .iter()
            .find(|(base, e, _)| *base == held.seq && *e == encoding)
        {
            return frame.clone();
        }
        let d = delta::diff(&held.view, held.seq, &self.view, self.seq, self.quantum_exp);
        let frame = self.smaller_of(encoding, &d, metrics);
        if cache.len() < CATCH_UP_CACHE {
            cache.push((held.seq, encoding, frame.clone()));
        }
        frame
    }

    /// Whether a delta is worth sending, decided here only: the delta `d` encoded, or
    /// the full frame when that is not bigger in this encoding. Either leaves the
    /// subscriber holding this update's view.
    fn smaller_of(&self, encoding: Encoding, d: &Delta, metrics: &Metrics) -> Encoded {
        let bytes = codec::encode_delta(encoding, d, &self.view);
        // A delta that changes at most half the phases is always the smaller one;
        // past that, compare (JSON keys make a dense delta bigger than the full frame).
        if d.phases.len() * 2 > self.view.len() {
            let full = self.full(encoding, metrics);
            if bytes.len() >= full.len {
                return full;
            }
        }
        Encoded::new(encoding, FrameKind::Delta, bytes, metrics)
    }
}
