//! One stream: its seq counter, the chain of views subscribers hold, the keyframe
//! schedule, a bounded history for resuming subscribers, and the frames each update
//! encodes (once per encoding, shared by every subscriber in step).
//!
//! Sequencing and applying are split so that a bus can sit between them: the node
//! that accepts a state [`Stream::sequence`]s it (assigns the seq, derives the view,
//! decides whether it is a keyframe); every node then [`Stream::apply`]s the
//! [`Sequenced`] result. On a single node both happen under one lock in
//! [`Stream::publish`].

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc, Mutex, OnceLock,
    },
    time::Instant,
};

use axum::extract::ws::{Message, Utf8Bytes};
use bytes::Bytes;
use tokio::sync::broadcast;

use crate::{
    codec::{self, Encoding},
    config::StreamConfig,
    delta::{self, Delta},
    metrics::{FrameKind, Metrics},
    model::State,
};

/// A state with its place in the stream: what travels from the sequencer to every
/// node's fan-out.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequenced {
    /// The seq assigned by the accepting node.
    pub seq: u64,
    /// The view subscribers in step hold at this seq (within ε of the producer's state).
    pub view: State,
    /// Whether this seq is a keyframe: every subscriber gets a full frame.
    pub keyframe: bool,
}

/// One accepted state as the fan-out sees it, shared (`Arc`) by every subscriber.
/// Encodings are made on first use and cached, so subscribers in step share bytes.
#[derive(Debug)]
pub struct Update {
    /// Seq of this state.
    pub seq: u64,
    /// The view subscribers in step hold at this seq.
    pub view: State,
    /// Full frames only at this seq.
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
    fn new(encoding: Encoding, kind: FrameKind, bytes: Bytes, metrics: &Metrics) -> Encoded {
        let len = bytes.len();
        metrics.frame_encoded(encoding, kind, len);
        let message = if encoding.is_text() {
            // Validated once here, then shared by every subscriber.
            Message::Text(Utf8Bytes::try_from(bytes).expect("the JSON encoder writes UTF-8"))
        } else {
            Message::Binary(bytes)
        };
        Encoded { message, len, kind }
    }
}

/// At most this many catch-up deltas are cached per update; past it they are encoded
/// per subscriber.
const CATCH_UP_CACHE: usize = 8;

impl Update {
    fn new(s: Sequenced, prev: Option<&Update>, quantum_exp: Option<i32>) -> Update {
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
    /// if any) to this state.
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

    /// The delta `d` encoded, or the full frame when that is not bigger in this
    /// encoding. Either leaves the subscriber holding this update's view.
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

/// Seq and shape of a stream's newest state, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Newest seq (0 before the first state).
    pub seq: u64,
    /// Its producer step.
    pub step: u64,
    /// Its number of oscillators.
    pub oscillators: usize,
}

/// One named stream.
#[derive(Debug)]
pub struct Stream {
    name: String,
    config: StreamConfig,
    /// Sequencing state and history; held briefly per state, never across I/O.
    inner: Mutex<Inner>,
    /// Every update, to every subscriber's receiver. Its capacity is the outbox: a
    /// subscriber that falls further behind skips ahead (latest wins).
    updates: broadcast::Sender<Arc<Update>>,
    subscribers: AtomicUsize,
    /// Size of the last full frame encoded, per encoding: what a delta saves against.
    full_len: [AtomicUsize; 2],
}

#[derive(Debug, Default)]
struct Inner {
    history: VecDeque<Arc<Update>>,
    since_keyframe: u64,
}

/// What a subscriber gets when it joins a stream.
#[derive(Debug)]
pub struct Joined {
    /// The newest update, if the stream has one.
    pub latest: Option<Arc<Update>>,
    /// The update the subscriber asked to resume from, if still in the history.
    pub resume_from: Option<Arc<Update>>,
    /// Receives every update after `latest`.
    pub updates: broadcast::Receiver<Arc<Update>>,
}

impl Stream {
    /// A new, empty stream. `outbox_frames` bounds how far a subscriber may lag.
    pub fn new(name: String, config: StreamConfig, outbox_frames: usize) -> Stream {
        let (updates, _) = broadcast::channel(outbox_frames.max(1));
        Stream {
            name,
            config,
            inner: Mutex::new(Inner::default()),
            updates,
            subscribers: AtomicUsize::new(0),
            full_len: Default::default(),
        }
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sequences `state` and applies it: the path from producer to subscribers.
    /// Returns the seq. Never waits on a subscriber.
    pub fn publish(&self, state: State, metrics: &Metrics) -> u64 {
        self.publish_and(state, metrics, |_| {})
    }

    /// Like [`Stream::publish`], and hands the sequenced state to `forward` (the bus)
    /// under the same lock, so states leave this node in seq order.
    pub fn publish_and(
        &self,
        state: State,
        metrics: &Metrics,
        forward: impl FnOnce(&Sequenced),
    ) -> u64 {
        let mut inner = self.lock();
        let sequenced = self.sequence_locked(&inner, state);
        let seq = sequenced.seq;
        forward(&sequenced);
        self.apply_locked(&mut inner, sequenced, metrics);
        seq
    }

    /// Assigns the next seq to `state` and derives the view subscribers will hold.
    pub fn sequence(&self, state: State) -> Sequenced {
        let inner = self.lock();
        self.sequence_locked(&inner, state)
    }

    fn sequence_locked(&self, inner: &Inner, state: State) -> Sequenced {
        let prev = inner.history.back();
        let seq = prev.map_or(1, |p| p.seq + 1);
        let Some(prev) = prev.filter(|p| p.view.same_shape(&state)) else {
            return Sequenced {
                seq,
                view: state,
                keyframe: true,
            };
        };
        if inner.since_keyframe + 1 >= self.config.keyframe_interval {
            return Sequenced {
                seq,
                view: state,
                keyframe: true,
            };
        }
        let view = delta::advance(&prev.view, &state, &self.config.tolerance);
        let d = delta::diff(
            &prev.view,
            prev.seq,
            &view,
            seq,
            self.config.tolerance.quantum_exp(),
        );
        let (full_len, delta_len) = codec::protobuf_sizes(seq, &d, &view);
        if delta_len >= full_len {
            // A delta would not save anything: send the exact state instead.
            return Sequenced {
                seq,
                view: state,
                keyframe: true,
            };
        }
        Sequenced {
            seq,
            view,
            keyframe: false,
        }
    }

    /// Adds a sequenced state to the history and hands it to every subscriber.
    /// States at or below the newest seq are ignored (duplicates, late arrivals);
    /// returns whether it was applied.
    pub fn apply(&self, sequenced: Sequenced, metrics: &Metrics) -> bool {
        let mut inner = self.lock();
        self.apply_locked(&mut inner, sequenced, metrics)
    }

    fn apply_locked(&self, inner: &mut Inner, sequenced: Sequenced, metrics: &Metrics) -> bool {
        let prev = inner.history.back();
        if prev.is_some_and(|p| p.seq >= sequenced.seq) {
            return false;
        }
        let update = Arc::new(Update::new(
            sequenced,
            prev.map(|p| p.as_ref()),
            self.config.tolerance.quantum_exp(),
        ));
        if update.keyframe {
            inner.since_keyframe = 0;
            metrics.keyframe();
        } else {
            inner.since_keyframe += 1;
        }
        if inner.history.len() >= self.config.history {
            inner.history.pop_front();
        }
        inner.history.push_back(update.clone());
        // No receivers is fine: nobody is subscribed.
        let _ = self.updates.send(update);
        true
    }

    /// Joins the stream: the newest update, the update to resume from (when
    /// `resume` names one still in the history), and a receiver for what follows.
    pub fn join(&self, resume: Option<u64>) -> Joined {
        let inner = self.lock();
        // Subscribing under the lock: no update can fall between `latest` and the receiver.
        let updates = self.updates.subscribe();
        let latest = inner.history.back().cloned();
        let resume_from = resume.and_then(|seq| {
            let first = inner.history.front()?.seq;
            let i = usize::try_from(seq.checked_sub(first)?).ok()?;
            inner.history.get(i).cloned()
        });
        self.subscribers.fetch_add(1, Relaxed);
        Joined {
            latest,
            resume_from,
            updates,
        }
    }

    /// A subscriber left.
    pub fn leave(&self) {
        self.subscribers.fetch_sub(1, Relaxed);
    }

    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Relaxed)
    }

    /// The newest update, if any.
    pub fn latest(&self) -> Option<Arc<Update>> {
        self.lock().history.back().cloned()
    }

    /// Seq, step and size of the newest state.
    pub fn head(&self) -> Head {
        let inner = self.lock();
        inner.history.back().map_or(
            Head {
                seq: 0,
                step: 0,
                oscillators: 0,
            },
            |u| Head {
                seq: u.seq,
                step: u.view.step,
                oscillators: u.view.len(),
            },
        )
    }

    /// Records the size of a full frame just sent, and returns the last known full
    /// size for `encoding` (what a delta is measured against).
    pub fn full_len(&self, encoding: Encoding, sent_full: Option<usize>) -> usize {
        let slot = &self.full_len[encoding.index()];
        match sent_full {
            Some(n) => {
                slot.store(n, Relaxed);
                n
            }
            None => slot.load(Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("stream lock poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{codec::Frame, delta::Tolerance};

    fn config(eps: f64, keyframe_interval: u64, history: usize) -> StreamConfig {
        StreamConfig {
            tolerance: Tolerance::new(eps).unwrap(),
            keyframe_interval,
            history,
            max_streams: 8,
        }
    }

    /// A state in which the first eight phases move every step.
    fn state(step: u64, n: usize) -> State {
        State {
            step,
            phases: (0..n)
                .map(|i| i as f64 + if i < 8 { step as f64 * 0.01 } else { 0.0 })
                .collect(),
            spins: vec![1; n],
            energy: step as f64,
            timestamp: None,
        }
    }

    fn metrics() -> Metrics {
        Metrics::new(false).unwrap()
    }

    fn apply_frame(held: &mut Option<State>, frame: &Encoded, e: Encoding) {
        let bytes = frame.message.clone().into_data();
        match codec::decode_frame(e, &bytes).unwrap() {
            Frame::Full { state, .. } => *held = Some(state),
            Frame::Delta(d) => delta::apply(held.as_mut().unwrap(), &d).unwrap(),
        }
    }

    #[test]
    fn keyframes_follow_the_schedule_and_shape_changes() {
        let m = metrics();
        let s = Stream::new("t".into(), config(0.0, 4, 16), 8);
        let mut keyframes = vec![];
        for step in 1..=10 {
            let n = if step == 6 { 12 } else { 64 };
            let seq = s.publish(state(step, n), &m);
            let j = s.join(None);
            let latest = j.latest.unwrap();
            assert_eq!(latest.seq, seq);
            if latest.keyframe {
                keyframes.push(seq);
            }
            s.leave();
        }
        // 1: first; 5: interval; 6: shape change; 7: shape change back; 11 would be next.
        assert_eq!(keyframes, vec![1, 5, 6, 7]);
    }

    #[test]
    fn in_step_and_catch_up_frames_rebuild_the_view() {
        let m = metrics();
        let s = Stream::new("t".into(), config(1e-3, 1000, 16), 64);
        s.publish(state(0, 64), &m);
        let mut j = s.join(None);
        let first = j.latest.clone().unwrap();
        for step in 1..=20 {
            s.publish(state(step, 64), &m);
        }
        for e in Encoding::ALL {
            // One subscriber takes every frame; one takes every fifth.
            let mut every = None;
            let mut fifth = None;
            apply_frame(&mut every, &first.full(e, &m), e);
            apply_frame(&mut fifth, &first.full(e, &m), e);
            let mut held_every = first.clone();
            let mut held_fifth = first.clone();
            let mut rx = s.updates.subscribe();
            drop(rx.try_recv());
            let history: Vec<_> = s.lock().history.iter().cloned().collect();
            for u in history.iter().skip(1) {
                let b = u.frame_for(e, Some(&held_every), &m);
                assert_eq!(b.kind, FrameKind::Delta);
                apply_frame(&mut every, &b, e);
                assert_eq!(every.as_ref().unwrap(), &u.view);
                held_every = u.clone();
                if u.seq % 5 == 0 {
                    let b = u.frame_for(e, Some(&held_fifth), &m);
                    apply_frame(&mut fifth, &b, e);
                    assert_eq!(fifth.as_ref().unwrap(), &u.view);
                    held_fifth = u.clone();
                }
            }
        }
        assert!(j.updates.try_recv().is_ok());
    }

    /// Subscribers in step share one encoding per format: a thousand of them get the
    /// same bytes, not a thousand encodings.
    #[test]
    fn subscribers_in_step_share_one_encoding_per_format() {
        let m = metrics();
        let s = Stream::new("t".into(), config(1e-3, 100, 8), 8);
        s.publish(state(1, 64), &m);
        let prev = s.join(None).latest.unwrap();
        s.publish(state(2, 64), &m);
        let next = s.join(None).latest.unwrap();
        for e in Encoding::ALL {
            let frames: Vec<_> = (0..1000)
                .map(|_| next.frame_for(e, Some(&prev), &m))
                .collect();
            let first = frames[0].message.clone().into_data();
            assert_eq!(frames[0].kind, FrameKind::Delta);
            for f in &frames {
                assert_eq!(
                    f.message.clone().into_data().as_ptr(),
                    first.as_ptr(),
                    "shared, not re-encoded"
                );
            }
            // Full frames are shared too.
            let a = next.full(e, &m);
            let b = next.full(e, &m);
            assert_eq!(
                a.message.into_data().as_ptr(),
                b.message.into_data().as_ptr()
            );
        }
        // Catch-up deltas from the same base are cached and shared.
        s.publish(state(3, 64), &m);
        let third = s.join(None).latest.unwrap();
        for e in Encoding::ALL {
            let a = third.frame_for(e, Some(&prev), &m);
            let b = third.frame_for(e, Some(&prev), &m);
            assert_eq!(a.kind, FrameKind::Delta);
            assert_eq!(
                a.message.into_data().as_ptr(),
                b.message.into_data().as_ptr()
            );
        }
    }

    #[test]
    fn join_finds_resume_points_only_in_the_history() {
        let m = metrics();
        let s = Stream::new("t".into(), config(0.0, 100, 4), 8);
        for step in 1..=10 {
            s.publish(state(step, 8), &m);
        }
        assert_eq!(s.join(Some(7)).resume_from.unwrap().seq, 7);
        assert_eq!(s.join(Some(10)).resume_from.unwrap().seq, 10);
        assert!(s.join(Some(6)).resume_from.is_none());
        assert!(s.join(Some(11)).resume_from.is_none());
        assert_eq!(s.head().seq, 10);
    }

    #[test]
    fn apply_ignores_duplicates_and_late_arrivals() {
        let m = metrics();
        let s = Stream::new("t".into(), config(0.0, 100, 8), 8);
        let a = s.sequence(state(1, 4));
        assert!(s.apply(a.clone(), &m));
        assert!(!s.apply(a, &m));
        let b = s.sequence(state(2, 4));
        assert_eq!(b.seq, 2);
        assert!(s.apply(b, &m));
        assert_eq!(s.head().seq, 2);
    }
}
