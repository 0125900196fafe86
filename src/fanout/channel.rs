//! One stream's fan-out: under one short lock, its [`Sequencer`] orders each state and
//! the resulting [`Update`] joins a bounded history (for resuming subscribers) and the
//! broadcast ring every subscriber's [`Feed`](super::Feed) reads from. Publishing never
//! waits on a subscriber.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc, Mutex,
    },
};

use tokio::sync::broadcast;

use super::Update;
use crate::{
    codec::Encoding,
    config::StreamConfig,
    metrics::Metrics,
    model::State,
    stream::{Sequenced, Sequencer},
};

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
    history: VecDeque<Arc<Update>>,
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

impl Channel {
    /// A new, empty stream. `outbox_frames` bounds how far a subscriber may lag.
    pub fn new(name: String, config: &StreamConfig, outbox_frames: usize) -> Channel {
        let (updates, _) = broadcast::channel(outbox_frames.max(1));
        Channel {
            name,
            history_len: config.history.max(1),
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
        let update = Arc::new(Update::new(
            sequenced,
            inner.history.back().map(|p| p.as_ref()),
            quantum_exp,
        ));
        if update.keyframe {
            metrics.keyframe();
        }
        if inner.history.len() >= self.history_len {
            inner.history.pop_front();
        }
        inner.history.push_back(update.clone());
        // No receivers is fine: nobody is subscribed.
        let _ = self.updates.send(update);
    }

    /// Joins the stream: the newest update, the update to resume from (when
    /// `resume` names one still in the history), and a receiver for what follows.
    /// Pair with [`Channel::leave`].
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
        self.lock()
            .history
            .back()
            .map_or(Head::default(), |u| Head {
                seq: u.seq,
                step: u.view.step,
                oscillators: u.view.len(),
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

    /// Every update in the history, oldest first (for tests and tools).
    pub fn history(&self) -> Vec<Arc<Update>> {
        self.lock().history.iter().cloned().collect()
    }
}
