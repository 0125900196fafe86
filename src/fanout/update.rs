//! One accepted state as every subscriber's session sees it: an [`Update`], shared
//! (`Arc`) by all of them, which encodes the frames they need on first use and caches
//! them, so subscribers in step share one encoding per [`Form`] (format and fields).
//!
//! This is also the one place that decides whether a delta is worth sending
//! ([`Update::frame_for`]): per encoding, a delta goes out only when it is smaller than
//! the full frame.

use std::{
    ops::Deref,
    sync::{Arc, Mutex, OnceLock},
    time::Instant,
};

use bytes::Bytes;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::{
    codec::{self, Encoding, FrameKind, Parts},
    delta::{self, Delta},
    memory::{self, Account, Charge},
    metrics::Metrics,
    model::State,
    projection::Projection,
    stream::Sequenced,
    summary::{Envelope, Summary},
};

/// What a cohort of subscribers shares one encoding of: the format and the parts of
/// the state (`?fields=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Form {
    /// The encoding.
    pub encoding: Encoding,
    /// The parts of the state.
    pub projection: Projection,
}

impl Form {
    /// The default parts in `encoding`: the frame every subscriber got before fields.
    pub fn whole(encoding: Encoding) -> Form {
        Form {
            encoding,
            projection: Projection::DEFAULT,
        }
    }
}

/// The summary of one state (computed once, shared by every class's update at its
/// seq), charged to its stream's memory account while anything holds it.
#[derive(Debug)]
pub struct StateSummary {
    summary: Summary,
    _charge: Charge,
}

impl StateSummary {
    /// The summary of `state` with `bins` histogram bins, charged to `account`.
    pub fn of(state: &State, bins: usize, account: &Arc<Account>) -> StateSummary {
        let summary = Summary::of(state, bins);
        let charge = account.charge(std::mem::size_of::<StateSummary>() + 4 * bins);
        StateSummary {
            summary,
            _charge: charge,
        }
    }
}

impl Deref for StateSummary {
    type Target = Summary;

    fn deref(&self) -> &Summary {
        &self.summary
    }
}

/// The state subscribers hold at one seq, charged to its stream's memory account for
/// as long as anything (the history, a subscriber, the next update) holds it.
#[derive(Debug)]
pub struct View {
    state: State,
    _charge: Charge,
}

impl View {
    /// `state` as a view charged to `account`.
    pub fn new(state: State, account: &Arc<Account>) -> View {
        let charge = account.charge(memory::state_bytes(&state));
        View {
            state,
            _charge: charge,
        }
    }
}

impl Deref for View {
    type Target = State;

    fn deref(&self) -> &State {
        &self.state
    }
}

/// What a subscriber holds: the seq of its state and the view at that seq (shared,
/// never copied). Enough to build the frame that brings it to any newer state, without
/// keeping the frames encoded for that older state alive.
#[derive(Debug, Clone)]
pub struct Held {
    /// The seq.
    pub seq: u64,
    /// The view subscribers held at that seq.
    pub view: Arc<View>,
}

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
    /// This frame with `envelope` added, for one subscriber (the shared bytes are
    /// copied once, with the envelope after them).
    pub fn with_envelope(&self, encoding: Encoding, envelope: &Envelope) -> Encoded {
        let bytes = match &self.message {
            Message::Text(text) => codec::with_envelope(encoding, text.as_bytes(), envelope),
            Message::Binary(bytes) => codec::with_envelope(encoding, bytes, envelope),
            _ => unreachable!("frames are text or binary messages"),
        };
        Encoded {
            len: bytes.len(),
            message: message(encoding, bytes),
            kind: self.kind,
        }
    }

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

/// The frames an update has encoded so far, charged to the stream's memory account.
/// Keyed by form: a handful are in use at once, so they are looked up in order.
#[derive(Debug)]
struct Frames {
    full: Vec<(Form, Encoded)>,
    /// The frame for subscribers in step, per form: the delta, or the full frame where
    /// that is not bigger.
    in_step: Vec<(Form, Encoded)>,
    /// Frames for subscribers that skipped frames, by (base seq, form). Bounded.
    catch_up: Vec<(u64, Form, Encoded)>,
    /// Released to bound memory: frames are still made, but no longer kept.
    released: bool,
    /// The bytes of the distinct frames kept (a full frame in two slots counts once).
    charge: Charge,
}

impl Frames {
    fn new(account: &Arc<Account>) -> Frames {
        Frames {
            full: Vec::new(),
            in_step: Vec::new(),
            catch_up: Vec::new(),
            released: false,
            charge: account.charge(0),
        }
    }

    /// Keeps `frame` in `slot` unless released; a delta is charged (a full frame in a
    /// delta's slot is charged where it is kept as the full frame).
    fn keep_delta(&mut self, frame: &Encoded, slot: impl FnOnce(&mut Frames, Encoded)) {
        if self.released {
            return;
        }
        if frame.kind == FrameKind::Delta {
            self.charge.grow(frame.len);
        }
        slot(self, frame.clone());
    }
}

/// One accepted state, shared by every subscriber.
#[derive(Debug)]
pub struct Update {
    /// Seq of this state.
    pub seq: u64,
    /// The view subscribers in step hold at this seq.
    pub view: Arc<View>,
    /// Full frames only at this seq (a scheduled keyframe, a shape change, or a gap
    /// before it on this node).
    pub keyframe: bool,
    /// When the state was accepted (for the broadcast latency).
    pub accepted_at: Instant,
    /// The previous seq's view, for the in-step delta; `None` at a keyframe. (Only the
    /// view: the delta is made when a subscriber in step first needs it.)
    prev: Option<Held>,
    /// The stream's epoch, which full frames carry.
    epoch: Arc<str>,
    quantum_exp: Option<i32>,
    /// The state's summary, made while the stream has subscribers that take it (or
    /// when the first of them joins).
    summary: OnceLock<Arc<StateSummary>>,
    frames: Mutex<Frames>,
}

impl Update {
    /// The update for `s`, following `prev` (the update before it on this node, if
    /// any), on a stream of `epoch`. Without a `prev` one seq before and of the same
    /// shape, it is a keyframe. Its view and frames are charged to `account`.
    pub fn new(
        s: Sequenced,
        prev: Option<&Update>,
        epoch: &Arc<str>,
        quantum_exp: Option<i32>,
        summary: Option<Arc<StateSummary>>,
        account: &Arc<Account>,
    ) -> Update {
        let prev = match prev {
            Some(p) if !s.keyframe && p.seq + 1 == s.seq && p.view.same_shape(&s.view) => {
                Some(p.held())
            }
            _ => None,
        };
        Update {
            seq: s.seq,
            keyframe: s.keyframe || prev.is_none(),
            view: Arc::new(View::new(s.view, account)),
            accepted_at: Instant::now(),
            prev,
            epoch: epoch.clone(),
            quantum_exp,
            summary: summary.map(OnceLock::from).unwrap_or_default(),
            frames: Mutex::new(Frames::new(account)),
        }
    }

    /// The state's summary, if made.
    pub fn summary(&self) -> Option<&Arc<StateSummary>> {
        self.summary.get()
    }

    /// The state's summary, made with `make` if it was not yet.
    pub fn summary_or(&self, make: impl FnOnce() -> Arc<StateSummary>) -> &Arc<StateSummary> {
        self.summary.get_or_init(make)
    }

    /// What frames of `form` carry besides the state.
    fn parts(&self, form: Form) -> Parts<'_> {
        Parts {
            projection: form.projection,
            summary: self
                .summary
                .get()
                .filter(|_| form.projection.summary())
                .map(|s| &***s),
        }
    }

    /// What a subscriber sent this update holds.
    pub fn held(&self) -> Held {
        Held {
            seq: self.seq,
            view: self.view.clone(),
        }
    }

    fn frames(&self) -> std::sync::MutexGuard<'_, Frames> {
        self.frames.lock().expect("frame cache poisoned")
    }

    /// Bytes of the frames this update keeps.
    pub fn cached_bytes(&self) -> usize {
        self.frames().charge.bytes()
    }

    /// Drops the frames kept and keeps none from now on: the update has fallen out of
    /// the window where subscribers in step share them. A subscriber still reading it
    /// gets its frame encoded for it alone.
    pub fn release(&self) {
        let mut frames = self.frames();
        frames.full = Vec::new();
        frames.in_step = Vec::new();
        frames.catch_up = Vec::new();
        frames.released = true;
        frames.charge.clear();
    }

    /// The full frame of this state in `form`.
    pub fn full(&self, form: Form, metrics: &Metrics) -> Encoded {
        let mut frames = self.frames();
        self.full_locked(&mut frames, form, metrics)
    }

    fn full_locked(&self, frames: &mut Frames, form: Form, metrics: &Metrics) -> Encoded {
        if let Some((_, f)) = frames.full.iter().find(|(k, _)| *k == form) {
            return f.clone();
        }
        let bytes = codec::encode_full_parts(
            form.encoding,
            self.seq,
            &self.epoch,
            &self.view,
            self.parts(form),
        );
        let frame = Encoded::new(form.encoding, FrameKind::Full, bytes, metrics);
        if !frames.released {
            frames.charge.grow(frame.len);
            frames.full.push((form, frame.clone()));
        }
        frame
    }

    /// The frame that brings a subscriber holding `held` (the state it was last sent,
    /// if any) to this state in `form`: the in-step delta, a catch-up delta from
    /// `held`, or the full frame, whichever is right and smallest. Frames of a form
    /// without phases and spins are always full: each stands alone.
    pub fn frame_for(&self, form: Form, held: Option<&Held>, metrics: &Metrics) -> Encoded {
        let mut frames = self.frames();
        let Some(held) = held.filter(|_| form.projection.has_body()) else {
            return self.full_locked(&mut frames, form, metrics);
        };
        if self.keyframe || held.seq >= self.seq || !held.view.same_shape(&self.view) {
            return self.full_locked(&mut frames, form, metrics);
        }
        let in_step = self.prev.as_ref().is_some_and(|p| p.seq == held.seq);
        if in_step {
            if let Some((_, f)) = frames.in_step.iter().find(|(k, _)| *k == form) {
                return f.clone();
            }
        } else if let Some((_, _, f)) = frames
            .catch_up
            .iter()
            .find(|(base, k, _)| *base == held.seq && *k == form)
        {
            return f.clone();
        }
        let d = delta::diff(&held.view, held.seq, &self.view, self.seq, self.quantum_exp)
            .project(form.projection, &self.view);
        let frame = self.smaller_of(&mut frames, form, &d, metrics);
        if in_step {
            frames.keep_delta(&frame, |f, frame| f.in_step.push((form, frame)));
        } else if frames.catch_up.len() < CATCH_UP_CACHE {
            frames.keep_delta(&frame, |f, frame| {
                f.catch_up.push((held.seq, form, frame));
            });
        }
        frame
    }

    /// Whether a delta is worth sending, decided here only: the delta `d` encoded, or
    /// the full frame when that is not bigger in this encoding. Either leaves the
    /// subscriber holding this update's view.
    fn smaller_of(&self, frames: &mut Frames, form: Form, d: &Delta, metrics: &Metrics) -> Encoded {
        let bytes = codec::encode_delta_parts(form.encoding, d, &self.view, self.parts(form));
        // A delta that changes at most half the phases is always the smaller one;
        // past that, compare (JSON keys make a dense delta bigger than the full frame).
        if d.phases.len() * 2 > self.view.len() {
            let full = self.full_locked(frames, form, metrics);
            if bytes.len() >= full.len {
                return full;
            }
        }
        Encoded::new(form.encoding, FrameKind::Delta, bytes, metrics)
    }
}
