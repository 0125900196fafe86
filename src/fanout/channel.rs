//! One stream's fan-out: under one short lock, its [`Sequencer`] orders each state and
//! the resulting [`Update`] joins a bounded history (for resuming subscribers) and the
//! broadcast ring every subscriber's [`Feed`](super::Feed) reads from. Publishing never
//! waits on a subscriber.
//!
//! The history keeps each state in its compact form (seq and view). Only the newest
//! updates, as many as the broadcast ring holds, keep their encoded frames: older ones
//! serve only as the base of a catch-up delta, which is encoded on the newest update
//! when a subscriber resumes. So a retained state costs its view, not every encoding
//! ever made of it.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc, Mutex,
    },
};

use tokio::sync::broadcast;

use super::{Held, Update};
use crate::{
    codec::Encoding,
    config::StreamConfig,
    metrics::Metrics,
    model::State,
    stream::{Sequenced, Sequencer},
};

/// Bytes of encoded frames a stream keeps for its newest updates, past the two newest:
/// older updates in the window release theirs (subscribers still reading them get
/// frames encoded for them alone). Large states then cost a few frames, not a ring of
/// them.
const FRAME_CACHE_BYTES: usize = 16 << 20;

/// Seq and shape of a stream's newest state, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    /// Newest seq (0 before the first state).
    pub seq: u64,
    /// Its producer step.
    pub step: u64,
    /// Its number of oscillators.
    pub oscillators: usize,
}

/// One named stream's sequencing, history and broadcast.
#[derive(Debug)]
pub struct Channel {
    name: String,
    history_len: usize,
    /// How many of the newest updates keep their frames: the broadcast ring's size.
    window: usize,
    /// Sequencing state and history; held briefly per state, never across I/O.
    inner: Mutex<Inner>,
    /// Every update, to every subscriber's receiver. Its capacity is the outbox: a
    /// subscriber that falls further behind skips ahead (latest wins).
    updates: broadcast::Sender<Arc<Update>>,
    subscribers: AtomicUsize,
    /// Size of the last full frame sent, per encoding: what a delta saves against.
    full_len: [AtomicUsize; 2],
}

#[derive(Debug)]
struct Inner {
    sequencer: Sequencer,
    /// Oldest first; the newest `window` entries also hold their update.
    history: VecDeque<Entry>,
}

/// One retained state.
#[derive(Debug)]
struct Entry {
    held: Held,
    /// The update with its encoded frames, while it is among the newest `window`.
    update: Option<Arc<Update>>,
}

/// What a subscriber gets when it joins a stream.
#[derive(Debug)]
pub struct Joined {
    /// The newest update, if the stream has one.
    pub latest: Option<Arc<Update>>,
    /// The state the subscriber asked to resume from, if still in the history.
    pub resume_from: Option<Held>,
    /// Receives every update after `latest`.
    pub updates: broadcast::Receiver<Arc<Update>>,
}

impl Channel {
    /// A new, empty stream. `outbox_frames` bounds how far a subscriber may lag.
    pub fn new(name: String, config: &StreamConfig, outbox_frames: usize) -> Channel {
        let (updates, _) = broadcast::channel(outbox_frames.max(1));
        Channel {
            name,
            history_len: config.history.max(1),
            window: outbox_frames.max(1),
            inner: Mutex::new(Inner {
                sequencer: Sequencer::new(config),
                history: VecDeque::new(),
            }),
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

    /// Like [`Channel::publish`], and hands the sequenced state to `forward` (the bus)
    /// under the same lock, so states leave this node in seq order.
    pub fn publish_and(
        &self,
        state: State,
        metrics: &Metrics,
        forward: impl FnOnce(&Sequenced),
    ) -> u64 {
        let mut inner = self.lock();
        let sequenced = inner.sequencer.sequence(state);
        let seq = sequenced.seq;
        forward(&sequenced);
        self.push(&mut inner, sequenced, metrics);
        seq
    }

    /// Applies a state another node sequenced. States at or below the newest seq are
    /// ignored (duplicates, late arrivals); returns whether it was applied.
    pub fn apply(&self, sequenced: Sequenced, metrics: &Metrics) -> bool {
        let mut inner = self.lock();
        if !inner.sequencer.accept(&sequenced) {
            return false;
        }
        self.push(&mut inner, sequenced, metrics);
        true
    }

    fn push(&self, inner: &mut Inner, sequenced: Sequenced, metrics: &Metrics) {
        let quantum_exp = inner.sequencer.tolerance().quantum_exp();
        let prev = inner.history.back().and_then(|e| e.update.as_deref());
        let update = Arc::new(Update::new(sequenced, prev, quantum_exp));
        if update.keyframe {
            metrics.keyframe();
        }
        if inner.history.len() >= self.history_len {
            inner.history.pop_front();
        }
        // The update that just left the window keeps only its view.
        if inner.history.len() >= self.window {
            let i = inner.history.len() - self.window;
            if let Some(old) = inner.history[i].update.take() {
                old.release();
            }
        }
        inner.history.push_back(Entry {
            held: update.held(),
            update: Some(update.clone()),
        });
        Self::bound_frames(&mut inner.history);
        // No receivers is fine: nobody is subscribed.
        let _ = self.updates.send(update);
    }

    /// Releases the frames of updates in the window past [`FRAME_CACHE_BYTES`] (the
    /// two newest always keep theirs).
    fn bound_frames(history: &mut VecDeque<Entry>) {
        let mut kept = 0;
        for (age, entry) in history.iter_mut().rev().enumerate() {
            let Some(update) = &entry.update else { break };
            kept += update.cached_bytes();
            if age >= 2 && kept > FRAME_CACHE_BYTES {
                update.release();
                entry.update = None;
            }
        }
    }

    /// Bytes of encoded frames the stream keeps.
    pub fn cached_bytes(&self) -> usize {
        self.lock()
            .history
            .iter()
            .filter_map(|e| e.update.as_ref())
            .map(|u| u.cached_bytes())
            .sum()
    }

    /// Joins the stream: the newest update, the update to resume from (when
    /// `resume` names one still in the history), and a receiver for what follows.
    /// Pair with [`Channel::leave`].
    pub fn join(&self, resume: Option<u64>) -> Joined {
        let inner = self.lock();
        // Subscribing under the lock: no update can fall between `latest` and the receiver.
        let updates = self.updates.subscribe();
        let latest = inner.history.back().and_then(|e| e.update.clone());
        let resume_from = resume.and_then(|seq| {
            let first = inner.history.front()?.held.seq;
            let i = usize::try_from(seq.checked_sub(first)?).ok()?;
            inner.history.get(i).map(|e| e.held.clone())
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
        self.lock().history.back().and_then(|e| e.update.clone())
    }

    /// The view at `seq`, while it is in the history.
    pub fn view(&self, seq: u64) -> Option<Arc<crate::model::State>> {
        let inner = self.lock();
        let first = inner.history.front()?.held.seq;
        let i = usize::try_from(seq.checked_sub(first)?).ok()?;
        inner.history.get(i).map(|e| e.held.view.clone())
    }

    /// How many retained states still hold their encoded frames (at most the ring's
    /// size) and how many are kept in all.
    pub fn retained(&self) -> (usize, usize) {
        let inner = self.lock();
        let with_frames = inner.history.iter().filter(|e| e.update.is_some()).count();
        (with_frames, inner.history.len())
    }

    /// Seq, step and size of the newest state.
    pub fn head(&self) -> Head {
        self.lock()
            .history
            .back()
            .map_or(Head::default(), |e| Head {
                seq: e.held.seq,
                step: e.held.view.step,
                oscillators: e.held.view.len(),
            })
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
