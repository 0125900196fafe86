//! One stream's fan-out: under one short lock, its [`Sequencer`] orders each state and
//! the resulting [`Update`] joins a bounded history, which is both what resuming
//! subscribers resume from and what every subscriber's [`Feed`](super::Feed) reads
//! from: a subscriber is woken with the newest seq ([`watch`]) and takes the updates
//! after its cursor from the history. Publishing never waits on a subscriber, and the
//! history is the one place that keeps updates alive, so what it drops is freed.
//!
//! The history keeps each state in its compact form (seq and view). Only the newest
//! updates, at most as many as the outbox and within the stream's frame cache in bytes,
//! keep their encoded frames: this is the window a lagging subscriber replays frame by
//! frame; past it a subscriber skips ahead by one catch-up delta from what it holds,
//! encoded for it. So a retained state costs its view, not every encoding ever made
//! of it. Every view and frame is charged to the stream's memory [`Account`]; under
//! memory pressure the hub asks the stream to [`Channel::shed`] its oldest states.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed},
        Arc, Mutex,
    },
};

use tokio::sync::watch;

use super::{Held, Update, View};
use crate::{
    codec::Encoding,
    config::StreamConfig,
    memory::{self, Account, Budget, Charge},
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

/// Where a reconnecting subscriber says it is: the seq of the state it holds and the
/// epoch of the stream it got it from (`?resume=SEQ&epoch=EPOCH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// Seq of the state held.
    pub seq: u64,
    /// The stream's epoch when that state was received. Without one (a client from
    /// before epochs) the seq cannot be placed: the resume is a miss.
    pub epoch: Option<String>,
}

/// One named stream's sequencing, history and broadcast.
#[derive(Debug)]
pub struct Channel {
    name: String,
    /// Changes whenever this stream's seqs could start again (a new process on a
    /// single node, a log made anew on a broker): a seq is only meaningful with it.
    epoch: Arc<str>,
    history_len: usize,
    /// How many of the newest updates keep their frames (the outbox): a subscriber
    /// that falls further behind skips ahead (latest wins).
    window: usize,
    /// Bytes of frames the window may keep past its two newest updates.
    frame_cache: usize,
    /// What this stream's views and frames are charged to.
    account: Arc<Account>,
    /// Sequencing state and history; held briefly per state, never across I/O.
    inner: Mutex<Inner>,
    /// The newest seq, watched by every subscriber's feed.
    head: watch::Sender<u64>,
    subscribers: AtomicUsize,
    /// Replaced by a stream of another epoch: its subscribers are sent away.
    retired: AtomicBool,
    /// Size of the last full frame sent, per encoding: what a delta saves against.
    full_len: [AtomicUsize; 2],
}

#[derive(Debug)]
struct Inner {
    sequencer: Sequencer,
    /// The sequencer's copy of the newest view.
    sequencer_charge: Charge,
    /// Oldest first; the newest entries, at most `window`, also hold their update.
    history: VecDeque<Entry>,
}

impl Inner {
    /// The retained entry at `seq`. Seqs rise but may skip (a log entry this node
    /// could not take), so it is looked up, not computed.
    fn find(&self, seq: u64) -> Option<&Entry> {
        let i = self
            .history
            .binary_search_by_key(&seq, |e| e.held.seq)
            .ok()?;
        self.history.get(i)
    }
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
    /// Tells the newest seq as it moves; what follows `latest` is taken with
    /// [`Channel::since`].
    pub head: watch::Receiver<u64>,
}

/// Updates after a subscriber's cursor, as [`Channel::since`] found them.
#[derive(Debug, Default)]
pub struct Since {
    /// Updates still in the window, oldest first, at most the number asked for.
    pub updates: Vec<Arc<Update>>,
    /// States after the cursor that left the window (or the history) before the
    /// subscriber took them.
    pub lagged: u64,
}

impl Channel {
    /// A new, empty stream charging `budget`. `outbox_frames` bounds how far a
    /// subscriber may lag.
    pub fn new(
        name: String,
        epoch: &str,
        config: &StreamConfig,
        outbox_frames: usize,
        budget: &Arc<Budget>,
    ) -> Channel {
        let account = budget.account(&name);
        Channel {
            name,
            epoch: epoch.into(),
            history_len: config.history.max(1),
            window: outbox_frames.max(1),
            frame_cache: config.frame_cache_bytes,
            inner: Mutex::new(Inner {
                sequencer: Sequencer::new(config),
                sequencer_charge: account.charge(0),
                history: VecDeque::new(),
            }),
            account,
            head: watch::channel(0).0,
            subscribers: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
            full_len: Default::default(),
        }
    }

    /// What this stream's memory is charged to.
    pub fn account(&self) -> &Arc<Account> {
        &self.account
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream's epoch: full frames carry it, resumes must match it.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Sequences `state` and applies it: the path from producer to subscribers on a
    /// single node. Returns the seq. Never waits on a subscriber.
    pub fn publish(&self, state: State, metrics: &Metrics) -> u64 {
        let mut inner = self.lock();
        let sequenced = inner.sequencer.sequence(state);
        let seq = sequenced.seq;
        self.push(&mut inner, sequenced, metrics);
        seq
    }

    /// Applies `state` at the seq a shared log gave it (`bus/`). Seqs at or below
    /// the newest are ignored (a log read again after an error); returns whether it
    /// was applied. Never waits on a subscriber.
    pub fn follow(&self, seq: u64, state: State, metrics: &Metrics) -> bool {
        let mut inner = self.lock();
        if seq <= inner.sequencer.seq() {
            return false;
        }
        let sequenced = inner.sequencer.follow(seq, state);
        self.push(&mut inner, sequenced, metrics);
        true
    }

    /// Tells the newest seq as it moves.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Ends the stream for its subscribers: its log was made anew (a new epoch), and
    /// they reconnect to the stream that replaces it. Their feeds end at once.
    pub fn retire(&self) {
        self.retired.store(true, Relaxed);
        self.head.send_modify(|_| {});
    }

    /// Whether [`Channel::retire`] was called.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Relaxed)
    }

    fn push(&self, inner: &mut Inner, sequenced: Sequenced, metrics: &Metrics) {
        let quantum_exp = inner.sequencer.tolerance().quantum_exp();
        inner.sequencer_charge.clear();
        inner
            .sequencer_charge
            .grow(memory::state_bytes(&sequenced.view));
        let prev = inner.history.back().and_then(|e| e.update.as_deref());
        let update = Arc::new(Update::new(
            sequenced,
            prev,
            &self.epoch,
            quantum_exp,
            &self.account,
        ));
        let seq = update.seq;
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
            update: Some(update),
        });
        self.bound_frames(&mut inner.history);
        self.head.send_replace(seq);
    }

    /// Releases the frames of updates in the window past the frame cache (the two
    /// newest always keep theirs): those updates leave the window.
    fn bound_frames(&self, history: &mut VecDeque<Entry>) {
        let mut kept = 0;
        for (age, entry) in history.iter_mut().rev().enumerate() {
            let Some(update) = &entry.update else { break };
            kept += update.cached_bytes();
            if age >= 2 && kept > self.frame_cache {
                update.release();
                entry.update = None;
            }
        }
    }

    /// Frees memory under pressure: every update but the newest leaves the window
    /// (its frames released), then the oldest states leave the history until about
    /// `bytes` were given back or only the newest is left. Returns the bytes given
    /// back and the states dropped from the history.
    pub fn shed(&self, bytes: usize) -> (usize, usize) {
        let before = self.account.used();
        let mut inner = self.lock();
        let newest = inner.history.len().saturating_sub(1);
        for entry in inner.history.range_mut(..newest) {
            if let Some(update) = entry.update.take() {
                update.release();
            }
        }
        let mut dropped = 0;
        while inner.history.len() > 1 && before.saturating_sub(self.account.used()) < bytes {
            inner.history.pop_front();
            dropped += 1;
        }
        (before.saturating_sub(self.account.used()), dropped)
    }

    /// Bytes a state like `state` is expected to add to this stream: its view and,
    /// from what the newest update has encoded, its frames (three times the view for
    /// a stream's first state).
    pub fn cost_of(&self, state: &State) -> usize {
        let view = memory::state_bytes(state);
        let frames = self.latest().map_or(3 * view, |u| u.cached_bytes());
        view + frames
    }

    /// Bytes of the newest state and its frames: what a same-sized next state
    /// replaces once it is in.
    pub fn newest_bytes(&self) -> usize {
        self.latest()
            .map_or(0, |u| memory::state_bytes(&u.view) + u.cached_bytes())
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
    /// `resume` names one still in the history, of this epoch), and a receiver for
    /// what follows. Pair with [`Channel::leave`].
    pub fn join(&self, resume: Option<&Resume>) -> Joined {
        let inner = self.lock();
        // Under the lock: the head seen is `latest`'s.
        let mut head = self.head.subscribe();
        head.mark_unchanged();
        let latest = inner.history.back().and_then(|e| e.update.clone());
        let resume_from = resume.and_then(|r| {
            if r.epoch.as_deref() != Some(&*self.epoch) {
                return None; // a seq of another (or an unknown) numbering
            }
            inner.find(r.seq).map(|e| e.held.clone())
        });
        self.subscribers.fetch_add(1, Relaxed);
        Joined {
            latest,
            resume_from,
            head,
        }
    }

    /// The updates after seq `cursor` still in the window, at most `max` (oldest
    /// first), and how many after it are no longer there.
    pub fn since(&self, cursor: u64, max: usize) -> Since {
        let inner = self.lock();
        let start = inner.history.partition_point(|e| e.held.seq <= cursor);
        let mut since = Since::default();
        // States between the cursor and the oldest retained one left the history. (A
        // cursor of 0 joined an empty stream: whatever came first is no gap.)
        if let (Some(front), true) = (inner.history.get(start), cursor > 0) {
            since.lagged = front.held.seq.saturating_sub(cursor + 1);
        }
        for entry in inner.history.range(start..) {
            match &entry.update {
                Some(u) if since.updates.len() < max => since.updates.push(u.clone()),
                Some(_) => break,
                None => since.lagged += 1,
            }
        }
        since
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
    pub fn view(&self, seq: u64) -> Option<Arc<View>> {
        self.lock().find(seq).map(|e| e.held.view.clone())
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
